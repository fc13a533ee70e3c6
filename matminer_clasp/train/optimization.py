"""Optimisation settings of a run: what trains, AdamW parameter groups, the lr schedule, precision.

The learning rate of every optimizer step is a pure function of the global step
(:func:`lr_factor`), set on the optimizer before the step; no scheduler object carries state, so
a resumed run recomputes exactly the rates of the uninterrupted one from its step count.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch
from torch import nn

from matminer_clasp.model.io import TEXT_ENCODER_PREFIX

if TYPE_CHECKING:
    from matminer_clasp.model.clasp import ClaspModel
    from matminer_clasp.train.config import TrainConfig

__all__ = ["lr_factor", "build_optimizer", "optimizer_for", "unfreeze_text_encoder",
           "autocast_dtype"]


def lr_factor(step: int, total: int, warmup: int, schedule: str, min_ratio: float = 0.0) -> float:
    """Multiplier of the peak lr for optimizer step ``step`` (0-based) of ``total``.

    Parameters
    ----------
    step, total
        The step about to be taken (0 for the first) and the number of steps of the run.
    warmup
        Linear warm-up steps: step ``k < warmup`` uses ``(k + 1) / warmup``, so the first step
        already moves the weights and step ``warmup - 1`` reaches the peak.
    schedule
        ``"cosine"`` or ``"linear"`` decay from the peak to ``min_ratio`` over the remaining
        steps, or ``"constant"``.
    min_ratio
        Final multiplier of the decaying schedules.

    Notes
    -----
    After the warm-up this is exactly ``transformers``' ``get_cosine_schedule_with_warmup``
    (``get_cosine_with_min_lr_schedule_with_warmup`` with ``min_lr_rate``) and
    ``get_linear_schedule_with_warmup`` (which has no ``min_lr_rate``). It is not replaced by
    them because their warm-up is ``k / warmup``: the first optimizer step runs at lr 0 (a
    wasted step) and every warm-up step is one step behind, so the runs that trained the bundled
    model (``warmup_ratio: 0.05``) would not be reproduced. ``tests/train/test_trainer.py``
    checks both facts against ``transformers``.
    """
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    shape = 0.5 * (1.0 + math.cos(math.pi * progress)) if schedule == "cosine" else 1.0 - progress
    return min_ratio + (1.0 - min_ratio) * shape


def build_optimizer(
    params: Iterable[nn.Parameter], loss_params: Iterable[nn.Parameter], lr: float,
    weight_decay: float, text_params: Iterable[nn.Parameter] = (), text_lr: float | None = None,
) -> torch.optim.AdamW:
    """AdamW over the model's trainable ``params`` and, without weight decay, the loss's own.

    The learnable temperature / bias of a loss (InfoNCE, SigLIP) is a scalar on a log or logit
    scale; decaying it towards 0 would pull the scale towards 1, so it is in a group of its own.
    ``text_params`` (a text encoder being tuned) get a group at their own peak rate ``text_lr``.
    Every group records its peak rate as ``base_lr`` (see :func:`peak_rates`).
    """
    groups = [{"params": list(params), "weight_decay": weight_decay, "base_lr": lr}]
    loss_params = list(loss_params)
    if loss_params:
        groups.append({"params": loss_params, "weight_decay": 0.0, "base_lr": lr})
    text_params = list(text_params)
    if text_params:
        if text_lr is None:
            raise ValueError("text_params need their own learning rate (text_lr)")
        groups.append({"params": text_params, "weight_decay": weight_decay,
                       "base_lr": float(text_lr)})
    return torch.optim.AdamW(groups, lr=lr)


def unfreeze_text_encoder(model: ClaspModel) -> None:
    """Let the text encoder train in this run (``TrainConfig.text_lr``); saved models carry it.

    Its weights can no longer come from the installed package, so the config switches to
    ``text_weights="checkpoint"``. ``freeze_text`` stays as it was: it is what a later run
    from the saved model does without ``text_lr`` (and ensemble members must agree on it).
    """
    model.config.text_weights = "checkpoint"
    model.text_tower.bert.requires_grad_(True)


def optimizer_for(model: ClaspModel, cfg: TrainConfig, loss: nn.Module,
                  extra: nn.Module | None = None) -> tuple[torch.optim.AdamW, list[nn.Parameter]]:
    """The AdamW of a run and the parameters whose gradients it applies.

    Parameters named by ``cfg.freeze`` prefixes are frozen here. The rest of the model's
    trainable parameters, and those of ``extra`` (a distillation head), train at ``cfg.lr``;
    with ``cfg.text_lr`` the text encoder's train at that rate instead (without it, an encoder
    left trainable by ``freeze_text: false`` trains at ``cfg.lr`` like the rest); ``loss``'s own
    at ``cfg.lr`` without weight decay (:func:`build_optimizer`).

    Returns
    -------
    (torch.optim.AdamW, list of torch.nn.Parameter)
        The optimizer, and every parameter it updates except the loss's.
    """
    for name, param in model.named_parameters():
        if any(name.startswith(prefix) for prefix in cfg.freeze):
            param.requires_grad_(False)
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    own_rate = cfg.text_lr is not None
    text = [p for n, p in trainable if own_rate and n.startswith(TEXT_ENCODER_PREFIX)]
    other = [p for n, p in trainable if not (own_rate and n.startswith(TEXT_ENCODER_PREFIX))]
    if extra is not None:
        other += list(extra.parameters())
    optimizer = build_optimizer(other, loss.parameters(), cfg.learning_rate, cfg.weight_decay,
                                text, cfg.text_lr)
    return optimizer, other + text


def peak_rates(optimizer: torch.optim.Optimizer) -> list[float]:
    """The peak rate of each group of an optimizer from :func:`build_optimizer`.

    Read them before a checkpoint's state is loaded: the groups of older checkpoints do not
    carry ``base_lr``, and the rates belong to the config, not to the checkpoint.
    """
    return [float(group["base_lr"]) for group in optimizer.param_groups]


def scheduled_lr(optimizer: torch.optim.Optimizer, peaks: list[float], factor: float) -> None:
    """Set each group's rate to its peak rate times the schedule's ``factor``."""
    for group, peak in zip(optimizer.param_groups, peaks, strict=True):
        group["lr"] = peak * factor


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of a ``TrainConfig.precision`` on ``device`` (``None``: fp32).

    ``"auto"`` is bf16 on CUDA devices that support it, fp16 (with loss scaling) on older ones,
    and fp32 elsewhere.
    """
    if precision == "fp32":
        return None
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if precision == "bf16" else torch.float16
