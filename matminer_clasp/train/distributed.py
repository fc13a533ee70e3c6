"""Multi-process helpers for ``torchrun``: process group, gathers with gradient, global BatchNorm.

A run started with ``torchrun --nproc_per_node N`` (any number of nodes) sets ``WORLD_SIZE``,
``RANK`` and ``LOCAL_RANK``; :func:`init_distributed` reads them. Each process embeds its shard of
every contrastive batch; :func:`gather_with_grad` concatenates the shards in rank order (the loss
sees the whole batch, as in the official ``all_gather``) and sends every rank's gradient back to
the rank that owns the rows. Gradients of the parameters are then averaged with
:func:`average_gradients`. Together with :class:`GlobalBatchNorm` this makes one step on ``N``
processes the same computation as one step of a single process on the concatenated batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

__all__ = [
    "DistInfo",
    "init_distributed",
    "gather_with_grad",
    "gather_no_grad",
    "average_gradients",
    "GlobalBatchNorm",
    "convert_batchnorm",
]


@dataclass(frozen=True)
class DistInfo:
    """World size, global rank and local rank of this process."""

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Whether this process writes files and logs (rank 0)."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """Whether more than one process takes part."""
        return self.world_size > 1


def init_distributed(device: str | None = None) -> tuple[DistInfo, torch.device]:
    """Join the process group described by ``torchrun``'s environment variables.

    Parameters
    ----------
    device
        Requested device type (``"cuda"``, ``"cpu"``) or ``None`` for CUDA when available.

    Returns
    -------
    (DistInfo, torch.device)
        With several processes on CUDA each uses ``cuda:LOCAL_RANK`` and the NCCL backend;
        on CPU the gloo backend.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
    want = torch.device(device) if device else None
    use_cuda = (want.type == "cuda") if want is not None else torch.cuda.is_available()
    if use_cuda:
        index = local_rank if world > 1 else (want.index if want is not None else None)
        dev = torch.device("cuda", index if index is not None else 0)
        torch.cuda.set_device(dev)
    else:
        dev = want or torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistInfo(world, rank, local_rank), dev


# Why these two autograd functions are not torch.distributed.nn.functional.all_gather /
# all_reduce: those compute the same thing (forward all-gather, backward sum of every rank's
# gradient of the local rows; all_reduce's gradient is all_reduce), but torch 2.13 deprecates
# the whole torch.distributed.nn.functional module (a FutureWarning on every call), and its
# named successor, torch.distributed._functional_collectives.all_gather_single, is private and
# missing from the older torch this package supports (>= 2.2). Each function below is two
# public collectives; tests/train/test_trainer.py::test_two_processes_match_one checks that N
# processes give the gradient of one process on the whole batch.
class _GatherWithGrad(torch.autograd.Function):
    """All-gather along dim 0; backward sums every rank's gradient and keeps the local rows."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # noqa: D102
        world, rank = dist.get_world_size(), dist.get_rank()
        parts = [torch.empty_like(tensor) for _ in range(world)]
        dist.all_gather(parts, tensor.contiguous())
        ctx.rows = (rank * tensor.shape[0], (rank + 1) * tensor.shape[0])
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start, stop = ctx.rows
        return grad[start:stop]


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from all ranks (rank order) keeping gradients to the local rows.

    Every rank must pass a tensor of the same shape. With one process the tensor is returned.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    return _GatherWithGrad.apply(tensor)


def gather_no_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` (same shape on every rank) from all ranks, without gradient."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


def average_gradients(parameters: list[nn.Parameter]) -> None:
    """Average the gradients of ``parameters`` over all ranks (one flat all-reduce)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    params = [p for p in parameters if p.requires_grad]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= dist.get_world_size()
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset : offset + n].view_as(p).clone()
        offset += n


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; the gradient of every rank's input is the sum of all ranks' gradients."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # noqa: D102
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # noqa: D102
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


def _all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    return _AllReduceSum.apply(tensor)


class GlobalBatchNorm(nn.BatchNorm1d):
    """``BatchNorm1d`` whose training statistics cover the rows of every rank (any backend).

    Differs from ``torch.nn.SyncBatchNorm`` only in also running on CPU/gloo; the state-dict keys
    are those of ``BatchNorm1d``, so saved models load into the plain module. Ranks may hold
    different numbers of rows (crystal graphs differ in size).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if not self.training or not dist.is_initialized() or dist.get_world_size() == 1:
            return super().forward(x)
        xf = x.float()
        count = _all_reduce_sum(torch.tensor([float(xf.shape[0])], device=x.device))
        mean = _all_reduce_sum(xf.sum(dim=0)) / count
        var = _all_reduce_sum(((xf - mean) ** 2).sum(dim=0)) / count
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = (
                    1.0 / float(self.num_batches_tracked)
                    if self.momentum is None
                    else self.momentum
                )
                n = count.item()
                unbiased = var * (n / max(n - 1.0, 1.0))
                self.running_mean.mul_(1 - momentum).add_(momentum * mean.to(self.running_mean))
                self.running_var.mul_(1 - momentum).add_(momentum * unbiased.to(self.running_var))
        out = (xf - mean) / torch.sqrt(var + self.eps)
        if self.affine:
            out = out * self.weight + self.bias
        return out.to(x.dtype)


def convert_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm1d`` inside ``module`` by :class:`GlobalBatchNorm`, in place."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm1d) and not isinstance(child, GlobalBatchNorm):
            new = GlobalBatchNorm(
                child.num_features, child.eps, child.momentum, child.affine,
                child.track_running_stats,
            ).to(device=child.weight.device if child.affine else None)
            new.load_state_dict(child.state_dict())
            new.train(child.training)
            setattr(module, name, new)
        else:
            convert_batchnorm(child)
    return module

