"""Crystal tower: CGCNN (official), a composition MLP (baseline) and their fusion.

CGCNN follows Toyota/clasp ``models/cgcnn.py`` (itself Xie & Grossman's CGCNN): a linear atom
embedding 92 -> 64 with no activation, ``n_conv`` gated convolutions over the 12 padded
neighbour slots of every atom, and a mean pool over the atoms of each crystal.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch_geometric.data import Batch
from torch_geometric.nn import global_mean_pool

from matminer_clasp.atom_features import MAX_Z
from matminer_clasp.config import ClaspConfig
from matminer_clasp.graph import gaussian_centres
from matminer_clasp.model.equivalent_atoms import equivalent_atoms
from matminer_clasp.model.heads import CrystalHead

#: Work the members of an ensemble share within one forward pass (see ``CGCNN.forward``).
Shared = dict[tuple, Any]


#: Smallest normal float32; values below it are subnormal.
_FLOAT32_TINY = torch.finfo(torch.float32).tiny


class GaussianExpansion(nn.Module):
    """Gaussian expansion ``exp(-(d - mu_k)^2 / step^2)`` (official ``GaussianDistance``)."""

    def __init__(self, config: ClaspConfig) -> None:
        super().__init__()
        centres = torch.tensor(gaussian_centres(config), dtype=torch.float32)
        self.register_buffer("centres", centres, persistent=False)
        self.inv_var = 1.0 / config.gaussian_step**2

    def forward(self, dist: torch.Tensor) -> torch.Tensor:
        """Map ``(...,)`` distances to ``(..., n_centres)`` features."""
        out = torch.exp(-((dist.unsqueeze(-1) - self.centres) ** 2) * self.inv_var)
        # exp underflows to subnormal floats about 1.9-2.0 A from a centre (4 % of the entries);
        # they vanish in any float32 sum they enter, but make the matrix products that take them
        # several times slower on CPUs (no flush-to-zero), so they are set to 0
        return out.masked_fill(out < _FLOAT32_TINY, 0.0)


class ConvLayer(nn.Module):
    """One CGCNN gated convolution over a fixed number of neighbour slots per atom."""

    def __init__(self, atom_fea_len: int, nbr_fea_len: int) -> None:
        super().__init__()
        self.atom_fea_len = atom_fea_len
        self.fc_full = nn.Linear(2 * atom_fea_len + nbr_fea_len, 2 * atom_fea_len)
        self.bn1 = nn.BatchNorm1d(2 * atom_fea_len)
        self.bn2 = nn.BatchNorm1d(atom_fea_len)

    def forward(
        self, h: torch.Tensor, nbr_idx: torch.Tensor, nbr_fea: torch.Tensor
    ) -> torch.Tensor:
        """Update atom features (the training path; :meth:`infer` is its fast eval twin).

        Parameters
        ----------
        h
            ``(n_atoms, atom_fea_len)`` atom features.
        nbr_idx
            ``(n_atoms, M)`` neighbour indices into ``h``.
        nbr_fea
            ``(n_atoms, M, nbr_fea_len)`` expanded edge features.
        """
        n, m = nbr_idx.shape
        # fc_full(cat[h_i, h_j, e_ij]) split by input block: the atom terms are computed once per
        # atom instead of once per edge, and the (n, m, 2A + F) concatenation is never built.
        a = self.atom_fea_len
        weight, bias = self.fc_full.weight, self.fc_full.bias
        centre = nn.functional.linear(h, weight[:, :a], bias)  # (n, 2A)
        neighbour = nn.functional.linear(h, weight[:, a : 2 * a])  # (n, 2A)
        edge = nn.functional.linear(nbr_fea, weight[:, 2 * a :])  # (n, m, 2A)
        z = edge + neighbour[nbr_idx] + centre.unsqueeze(1)
        gated = self.bn1(z.view(n * m, -1)).view(n, m, -1)
        filt, core = gated.chunk(2, dim=2)
        summed = (torch.sigmoid(filt) * nn.functional.softplus(core)).sum(dim=1)
        return nn.functional.softplus(h + self.bn2(summed))

    def infer(
        self,
        h: torch.Tensor,
        nbr_idx: torch.Tensor,
        dist_fea: torch.Tensor,
        dist_idx: torch.Tensor,
    ) -> torch.Tensor:
        """:meth:`forward` in eval mode without autograd: the same function, far less work.

        The edge features are a function of the distance alone, and a crystal's symmetry makes
        most of its distances equal: they come as the expansion of each *distinct* distance
        (``dist_fea``, ``(n_distinct, F)``) and every edge's row in it (``dist_idx``, ``(n,
        M)``), so the edge block of ``fc_full`` runs once per distinct distance (about 20x fewer
        rows on AMCSD) and each edge gathers its row. Eval-mode batch norm is a per-channel
        affine map, so ``bn1`` is folded into ``fc_full`` and ``bn2`` into one ``addcmul``; every
        atom's update depends only on its own row, so the per-edge work runs over blocks of
        :data:`ATOM_BLOCK` atoms whose ``(block, M, 2A)`` temporaries stay in cache, updated in
        place. Equal to :meth:`forward` up to float rounding.
        """
        n, m = nbr_idx.shape
        a = self.atom_fea_len
        scale1, shift1 = _folded(self.bn1)
        scale2, shift2 = _folded(self.bn2)
        weight = self.fc_full.weight * scale1.unsqueeze(1)
        bias = self.fc_full.bias * scale1 + shift1
        centre = nn.functional.linear(h, weight[:, :a], bias)
        neighbour = nn.functional.linear(h, weight[:, a : 2 * a])
        edge = nn.functional.linear(dist_fea, weight[:, 2 * a :])  # (n_distinct, 2A)
        summed = torch.empty(n, a, dtype=h.dtype, device=h.device)
        for r0 in range(0, n, ATOM_BLOCK):
            r1 = min(r0 + ATOM_BLOCK, n)
            # index_select on flat indices: about 3x faster than advanced indexing on CPUs
            z = edge.index_select(0, dist_idx[r0:r1].reshape(-1)).view(r1 - r0, m, 2 * a)
            z += neighbour.index_select(0, nbr_idx[r0:r1].reshape(-1)).view(r1 - r0, m, 2 * a)
            z += centre[r0:r1].unsqueeze(1)
            filt, core = z.chunk(2, dim=2)
            gate = torch.sigmoid(filt).mul_(nn.functional.softplus(core))
            torch.sum(gate, dim=1, out=summed[r0:r1])
        return nn.functional.softplus(torch.addcmul(shift2, summed, scale2).add_(h))


#: Atoms per block in :meth:`ConvLayer._inference` (``(256, 12, 128)`` float32 is 1.5 MiB).
ATOM_BLOCK = 256


def _folded(bn: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scale, shift)`` with ``bn(x) == x * scale + shift`` in eval mode."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


class CGCNN(nn.Module):
    """CGCNN body: atom embedding, gated convolutions, mean pooling -> ``(B, atom_fea_len)``."""

    def __init__(self, config: ClaspConfig) -> None:
        super().__init__()
        self.max_num_nbr = config.max_num_nbr
        self.expansion = GaussianExpansion(config)
        self.embedding = nn.Linear(config.orig_atom_fea_len, config.atom_fea_len)
        self.convs = nn.ModuleList(
            ConvLayer(config.atom_fea_len, config.nbr_fea_len) for _ in range(config.n_conv)
        )

    def forward(self, batch: Batch, shared: Shared | None = None) -> torch.Tensor:
        """Pool the convolved atom features of each crystal in ``batch``.

        ``shared`` (from :class:`~matminer_clasp.model.ensemble.EnsembleCrystalTower`) keeps the
        batch's distance expansion for the next member with the same settings. In eval mode
        without autograd the layers take the fast path (:meth:`ConvLayer.infer`).
        """
        n_atoms = batch.x.shape[0]
        nbr_idx = batch.edge_index[1].view(n_atoms, self.max_num_nbr)
        if not self.training and not torch.is_grad_enabled():
            h = self._infer_atoms(batch, nbr_idx, shared)
        else:
            nbr_fea = self.expansion(batch.edge_dist.view(n_atoms, self.max_num_nbr))
            h = self.embedding(batch.x)
            for conv in self.convs:
                h = conv(h, nbr_idx, nbr_fea)
        return global_mean_pool(h, batch.batch, size=batch.num_graphs)

    def _infer_atoms(
        self, batch: Batch, nbr_idx: torch.Tensor, shared: Shared | None
    ) -> torch.Tensor:
        """Final ``(n_atoms, atom_fea_len)`` features; each class of equivalent atoms runs once.

        See :mod:`matminer_clasp.model.equivalent_atoms`: the layers run on one representative
        per class, with its neighbours mapped to their classes, and every atom takes its class's
        result. Equal to convolving every atom up to float rounding.
        """
        dist_fea, dist_idx = self._distinct_expansion(batch, shared)
        key = ("equivalent_atoms", self.max_num_nbr)
        if shared is not None and key in shared:
            found = shared[key]
        else:
            found = equivalent_atoms(batch.x, nbr_idx, dist_idx)
            if shared is not None:
                shared[key] = found
        if found is None:  # not verified: every atom is its own class
            h = self.embedding(batch.x)
            for conv in self.convs:
                h = conv.infer(h, nbr_idx, dist_fea, dist_idx)
            return h
        reps, classes = found
        h = self.embedding(batch.x.index_select(0, reps))
        rep_nbr = classes[nbr_idx.index_select(0, reps)]
        rep_dist = dist_idx.index_select(0, reps)
        for conv in self.convs:
            h = conv.infer(h, rep_nbr, dist_fea, rep_dist)
        return h.index_select(0, classes)

    def _distinct_expansion(
        self, batch: Batch, shared: Shared | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Expansion of the batch's distinct distances, and each edge's row in it ``(n, M)``."""
        key = ("distinct_expansion", self.max_num_nbr, self.expansion.inv_var,
               self.expansion.centres.shape)
        found = shared.get(key) if shared is not None else None
        if found is None:
            distinct, index = torch.unique(batch.edge_dist, return_inverse=True)
            found = (self.expansion(distinct), index.view(-1, self.max_num_nbr))
            if shared is not None:
                shared[key] = found
        return found


class CompositionEncoder(nn.Module):
    """Fractional element vector (index = Z) through a two-layer MLP."""

    def __init__(self, config: ClaspConfig) -> None:
        super().__init__()
        hidden = config.composition_hidden_dim
        self.mlp = nn.Sequential(
            nn.Linear(MAX_Z + 1, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()
        )

    def forward(self, batch: Batch) -> torch.Tensor:
        """Encode ``batch.comp`` (``(B, 101)``)."""
        return self.mlp(batch.comp)


class CrystalTower(nn.Module):
    """Crystal encoder + projection head, producing unnormalised ``(B, embedding_dim)`` vectors.

    ``config.crystal_encoder`` picks the body (``cgcnn``, ``composition`` or both, concatenated);
    ``config.use_spacegroup`` appends a learned 32-d space-group embedding;
    ``config.graph_dropout`` drops whole CGCNN vectors of a fused tower during training.
    """

    SPACEGROUP_DIM = 32

    def __init__(self, config: ClaspConfig) -> None:
        super().__init__()
        width = 0
        self.cgcnn = CGCNN(config) if "cgcnn" in config.crystal_encoder else None
        if self.cgcnn is not None:
            width += config.atom_fea_len
        self.composition = (
            CompositionEncoder(config) if "composition" in config.crystal_encoder else None
        )
        if self.composition is not None:
            width += config.composition_hidden_dim
        self.spacegroup = nn.Embedding(231, self.SPACEGROUP_DIM) if config.use_spacegroup else None
        if self.spacegroup is not None:
            width += self.SPACEGROUP_DIM
        fused = self.cgcnn is not None and width > config.atom_fea_len
        self.graph_dropout = float(config.graph_dropout) if fused else 0.0
        self.head = CrystalHead(width, config.embedding_dim, config.crystal_head_layers,
                                config.crystal_hidden_dim)

    def forward(self, batch: Batch, shared: Shared | None = None) -> torch.Tensor:
        """Embed a batch of crystal graphs (``shared``: work other towers may reuse)."""
        parts = []
        if self.cgcnn is not None:
            graph = self.cgcnn(batch, shared)
            if self.training and self.graph_dropout > 0:
                p = self.graph_dropout
                keep = torch.rand(graph.shape[0], 1, device=graph.device) >= p
                graph = graph * keep.to(graph.dtype) / (1.0 - p)
            parts.append(graph)
        if self.composition is not None:
            parts.append(self.composition(batch))
        if self.spacegroup is not None:
            parts.append(self.spacegroup(batch.spacegroup))
        pooled = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        return self.head(pooled)
