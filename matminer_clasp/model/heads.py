"""Projection heads that map each tower's pooled vector into the shared space.

The two official heads differ in layer order (Toyota/clasp ``models/cgcnn.py`` and
``models/text_encoder.py``), and the order matters for loading official weights:

* crystal: ``Linear -> BN -> ReLU``, then blocks of ``Linear -> ReLU -> BN``, then ``Linear``;
* text: blocks of ``Linear -> BN -> ReLU``, then ``Linear``.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from matminer_clasp.config import ClaspConfig


class _Block(nn.Module):
    """``Linear`` + ``BatchNorm1d`` with a ReLU either between them or after both."""

    def __init__(self, in_dim: int, out_dim: int, relu_before_norm: bool) -> None:
        super().__init__()
        self.lin = nn.Linear(in_dim, out_dim)
        self.bn = nn.BatchNorm1d(out_dim)
        self.relu_before_norm = relu_before_norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.lin(x)
        if self.relu_before_norm:
            return self.bn(torch.relu(x))
        return torch.relu(self.bn(x))


class CrystalHead(nn.Module):
    """Official crystal head: ``proj->bn->relu``, ``n_blocks`` x ``lin->relu->bn``, ``out``.

    The hidden width is ``dim`` (official) unless ``hidden_dim`` is given.
    """

    def __init__(self, in_dim: int, dim: int, n_blocks: int, hidden_dim: int | None = None) -> None:
        super().__init__()
        hidden = hidden_dim or dim
        self.proj = nn.Linear(in_dim, hidden)
        self.bn = nn.BatchNorm1d(hidden)
        self.blocks = nn.ModuleList(
            _Block(hidden, hidden, relu_before_norm=True) for _ in range(n_blocks)
        )
        self.out = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Project pooled crystal vectors ``(B, in_dim)`` to ``(B, dim)``."""
        x = torch.relu(self.bn(self.proj(x)))
        for block in self.blocks:
            x = block(x)
        return self.out(x)


class TextHead(nn.Module):
    """Official text MLP: ``n_layers - 1`` x ``lin -> bn -> relu``, then ``out``."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, n_layers: int) -> None:
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (n_layers - 1)
        self.blocks = nn.ModuleList(
            _Block(a, b, relu_before_norm=False) for a, b in zip(dims[:-1], dims[1:])
        )
        self.out = nn.Linear(dims[-1], out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Project pooled text vectors ``(B, in_dim)`` to ``(B, out_dim)``."""
        for block in self.blocks:
            x = block(x)
        return self.out(x)


def concat_unit(parts: list[torch.Tensor], eps: float) -> torch.Tensor:
    """Concatenate L2-normalised parts, scaled so that the result is a unit vector.

    How an ensemble's members form one embedding (see :mod:`matminer_clasp.model.ensemble`).
    """
    unit = [nn.functional.normalize(p, p=2, dim=1, eps=eps) for p in parts]
    return torch.cat(unit, dim=1) / math.sqrt(len(unit))


class EnsembleTextHead(nn.Module):
    """One :class:`TextHead` per ensemble member over the shared pooled text features."""

    def __init__(self, in_dim: int, config: ClaspConfig) -> None:
        super().__init__()
        self.eps = config.normalize_eps
        self.members = nn.ModuleList(
            TextHead(in_dim, c.text_hidden_dim, c.embedding_dim, c.text_head_layers)
            for c in config.member_configs()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Project pooled text features ``(B, in_dim)`` (output already unit-norm)."""
        return concat_unit([member(x) for member in self.members], self.eps)
