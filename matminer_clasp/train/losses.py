"""Contrastive losses between crystal and text embeddings.

All losses take L2-normalised ``crystal`` and ``text`` embeddings of shape ``(B, dim)`` (row ``i``
of each is a pair) and an optional ``caption_ids`` ``(B,)`` integer tensor.

Duplicate captions (an improvement over the official code)
----------------------------------------------------------
The official CLaSP loss (Toyota/clasp ``losses/clip_loss.py: cosface_loss``; fact sheet 5.1)
uses ``labels = arange(B)``: when two crystals of one batch share a caption (common: one paper
reports several structures, and its title is the caption), each is pushed *away* from the
other's identical caption. Here ``caption_ids[i]`` names the distinct caption of pair ``i``;
every pair ``(i, j)`` with ``caption_ids[i] == caption_ids[j]`` is a positive. The softmax losses
then use a multi-positive target: row ``i`` puts probability ``1 / n_i`` on each of its ``n_i``
positives, the row loss is the cross-entropy against that soft target minus its entropy
``log n_i`` (i.e. a KL divergence: same gradients, 0 at the optimum, and so directly comparable
with the single-positive loss), and CosFace subtracts its margin from every positive logit.
Without ``caption_ids`` (or when all captions in the batch differ) every loss reduces exactly to
its single-positive form.

Every loss also says how it turns a cosine into a logit, ``scale * cos + bias``
(``logit_scale_and_bias()``); the trainer stores these numbers with the saved model
(``ClaspConfig.logit_scale`` / ``logit_bias``) so that zero-shot probabilities use the scale the
model was trained with.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["CosFaceLoss", "InfoNCELoss", "SigLIPLoss", "make_loss", "positive_mask", "LOSSES"]


def positive_mask(
    batch_size: int, caption_ids: torch.Tensor | None, device: torch.device | None = None
) -> torch.Tensor:
    """Return the boolean ``(B, B)`` matrix of positive (text, crystal) pairs.

    Parameters
    ----------
    batch_size
        ``B``.
    caption_ids
        ``(B,)`` integer ids of the distinct caption of each pair, or ``None`` for the identity.
    device
        Device of the mask when ``caption_ids`` is ``None``.
    """
    if caption_ids is None:
        return torch.eye(batch_size, dtype=torch.bool, device=device)
    caption_ids = torch.as_tensor(caption_ids, device=device)
    if caption_ids.shape != (batch_size,):
        raise ValueError(
            f"caption_ids must have shape ({batch_size},) to match the embeddings, got "
            f"{tuple(caption_ids.shape)}"
        )
    return caption_ids.unsqueeze(0) == caption_ids.unsqueeze(1)


def _check(crystal: torch.Tensor, text: torch.Tensor) -> None:
    if crystal.ndim != 2 or text.ndim != 2 or crystal.shape != text.shape:
        raise ValueError(
            "crystal and text embeddings must both be (B, dim) with the same shape; got "
            f"{tuple(crystal.shape)} and {tuple(text.shape)}"
        )
    if crystal.shape[0] < 2:
        raise ValueError("a contrastive loss needs at least 2 pairs in the batch")


def _soft_cross_entropy(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Mean over rows of ``KL(target || softmax(logits))``, target uniform on the positives.

    This is the cross-entropy against the soft target minus the target's entropy
    ``log n_i`` (a constant), so it has the gradients of the soft cross-entropy, is 0 at the
    optimum, and equals the ordinary cross-entropy for rows with a single positive.
    """
    target = positives.to(logits.dtype)
    n_pos = target.sum(dim=1)
    target = target / n_pos.unsqueeze(1)
    cross_entropy = -(target * F.log_softmax(logits, dim=1)).sum(dim=1)
    return (cross_entropy - torch.log(n_pos)).mean()


def _symmetric_ce(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
    """Average of the text->crystal (rows) and crystal->text (columns) cross-entropies."""
    return 0.5 * (
        _soft_cross_entropy(logits, positives) + _soft_cross_entropy(logits.t(), positives.t())
    )


class CosFaceLoss(nn.Module):
    """Symmetric large-margin cosine (CosFace) CLIP loss, the official CLaSP loss.

    ``logits = s * (T @ C.T - m * P)`` with ``P`` the positive mask (the identity when no caption
    ids are given, as in the official code), then cross-entropy over rows (text -> crystal) and
    over columns (crystal -> text), averaged (fact sheet 5.1).

    Parameters
    ----------
    s
        Fixed scale (pretraining ``configs/training.yaml``: 3.0).
    m
        Cosine margin subtracted from positive logits (pretraining: 0.5).
    """

    def __init__(self, s: float = 3.0, m: float = 0.5) -> None:
        super().__init__()
        if s <= 0:
            raise ValueError(f"CosFace scale s must be positive, got {s}")
        self.s = float(s)
        self.m = float(m)

    def forward(
        self, crystal: torch.Tensor, text: torch.Tensor, caption_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Return the scalar loss of a batch of paired embeddings."""
        _check(crystal, text)
        pos = positive_mask(len(text), caption_ids, text.device)
        cos = text @ crystal.t()
        logits = self.s * (cos - self.m * pos.to(cos.dtype))
        return _symmetric_ce(logits, pos)

    def logit_scale_and_bias(self) -> tuple[float, float | None]:
        """The fixed scale ``s`` and no bias (the margin is a training device: not stored).

        At inference there is no positive to subtract the margin from, so the logits of the
        loss's softmax are ``s * cos``.
        """
        return self.s, None

    def extra_repr(self) -> str:  # noqa: D102
        return f"s={self.s}, m={self.m}"


class InfoNCELoss(nn.Module):
    """CLIP's symmetric InfoNCE loss with a learnable temperature.

    ``logits = exp(logit_scale) * T @ C.T``, ``logit_scale`` initialised to ``log(1 / 0.07)`` and
    the scale clamped to at most ``max_scale`` (100), as in CLIP.
    """

    def __init__(self, init_temperature: float = 0.07, max_scale: float = 100.0) -> None:
        super().__init__()
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / init_temperature)))
        self.max_scale = float(max_scale)

    def forward(
        self, crystal: torch.Tensor, text: torch.Tensor, caption_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Return the scalar loss of a batch of paired embeddings."""
        _check(crystal, text)
        pos = positive_mask(len(text), caption_ids, text.device)
        return _symmetric_ce(self._scale() * (text @ crystal.t()), pos)

    def _scale(self) -> torch.Tensor:
        return self.logit_scale.exp().clamp(max=self.max_scale)

    def logit_scale_and_bias(self) -> tuple[float, float | None]:
        """The learned ``exp(logit_scale)``, clamped to ``max_scale`` as in training; no bias."""
        return float(self._scale().detach()), None


class SigLIPLoss(nn.Module):
    """Sigmoid pairwise loss (SigLIP, Zhai et al. 2023) with learnable scale and bias.

    ``loss = -sum_ij log sigmoid(z_ij * (exp(t) * t_i.c_j + b)) / B`` with ``z_ij = +1`` for
    positives and ``-1`` otherwise; ``t`` initialised to ``log 10`` and ``b`` to ``-10``. It has no
    softmax, so duplicate captions simply become extra positive pairs; it is symmetric in texts
    and crystals by construction.
    """

    def __init__(self, init_scale: float = 10.0, init_bias: float = -10.0) -> None:
        super().__init__()
        self.logit_scale = nn.Parameter(torch.tensor(math.log(init_scale)))
        self.logit_bias = nn.Parameter(torch.tensor(float(init_bias)))

    def forward(
        self, crystal: torch.Tensor, text: torch.Tensor, caption_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Return the scalar loss of a batch of paired embeddings."""
        _check(crystal, text)
        pos = positive_mask(len(text), caption_ids, text.device)
        logits = self.logit_scale.exp() * (text @ crystal.t()) + self.logit_bias
        signs = pos.to(logits.dtype) * 2 - 1
        return -F.logsigmoid(signs * logits).sum() / len(text)

    def logit_scale_and_bias(self) -> tuple[float, float | None]:
        """The learned scale ``exp(logit_scale)`` and bias ``logit_bias``."""
        return float(self.logit_scale.detach().exp()), float(self.logit_bias.detach())


LOSSES: dict[str, Callable[..., nn.Module]] = {
    "cosface": CosFaceLoss,
    "infonce": InfoNCELoss,
    "clip": InfoNCELoss,
    "siglip": SigLIPLoss,
}


def make_loss(name: str, **kwargs: float) -> nn.Module:
    """Build a loss by name: ``"cosface"`` (official), ``"infonce"`` / ``"clip"`` or ``"siglip"``.

    Keyword arguments go to the loss class (``s``, ``m`` for CosFace; ``init_temperature``,
    ``max_scale`` for InfoNCE; ``init_scale``, ``init_bias`` for SigLIP).

    Raises
    ------
    ValueError
        For an unknown name or an argument the loss does not take.
    """
    key = name.lower().replace("-", "").replace("_", "")
    if key not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; choose one of {sorted(LOSSES)}")
    cls = LOSSES[key]
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ValueError(f"bad arguments {sorted(kwargs)} for loss {name!r}: {exc}") from exc
