"""Ensembles in one space: several crystal towers and text heads, one embedding.

Member ``i`` of a ``K``-member ensemble has its own crystal tower and text head, trained as an
ordinary :class:`~matminer_clasp.ClaspModel` with ``embedding_dim = D / K``. The ensemble's
embedding is the concatenation of the members' unit vectors divided by ``sqrt(K)``: still a
``D``-dimensional unit vector, and the cosine of a structure and a text is the mean of the
members' cosines, so every downstream tool (featurizers, zero-shot, screening, indexes) sees one
ordinary model. Members share the frozen text encoder and the crystal graphs. The text side
(:class:`~matminer_clasp.model.heads.EnsembleTextHead`) lives with the other heads, so a text-only
model never imports the crystal towers.

:func:`merge_models` builds an ensemble from trained members.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from matminer_clasp.config import MEMBER_FIELDS, ClaspConfig
from matminer_clasp.model.crystal import CrystalTower
from matminer_clasp.model.heads import concat_unit

if TYPE_CHECKING:
    from torch_geometric.data import Batch

    from matminer_clasp.model.clasp import ClaspModel

#: Settings every member must share with the others (graph building and the text encoder).
SHARED_FIELDS = ("orig_atom_fea_len", "radius", "max_num_nbr", "gaussian_step", "cell",
                 "max_sites", "min_distance", "text_model", "text_weights", "text_pooling",
                 "max_length", "freeze_text", "embedding_dim", "normalize_eps")


class EnsembleCrystalTower(nn.Module):
    """One :class:`CrystalTower` per member; output: concatenated member unit vectors."""

    def __init__(self, config: ClaspConfig) -> None:
        super().__init__()
        self.eps = config.normalize_eps
        self.members = nn.ModuleList(CrystalTower(c) for c in config.member_configs())

    def forward(self, batch: Batch) -> torch.Tensor:
        """Embed a batch of crystal graphs (already unit-norm).

        The members share the batch's Gaussian distance expansion (computed once, not per
        member) when they do not train.
        """
        shared = None if torch.is_grad_enabled() else {}
        return concat_unit([member(batch, shared) for member in self.members], self.eps)


def merge_config(configs: Sequence[ClaspConfig]) -> ClaspConfig:
    """The ensemble config of single-model member configs (checked for compatibility)."""
    if len(configs) < 2:
        raise ValueError(f"an ensemble needs at least 2 members, got {len(configs)}")
    first = configs[0]
    for i, cfg in enumerate(configs):
        if cfg.members is not None:
            raise ValueError(f"member {i} is itself an ensemble; merge its members instead")
        for name in SHARED_FIELDS:
            if getattr(cfg, name) != getattr(first, name):
                raise ValueError(
                    f"member {i} has {name}={getattr(cfg, name)!r} but member 0 has "
                    f"{getattr(first, name)!r}; ensemble members must agree on {name}"
                )
    graph = any(c.uses_graph for c in configs)
    base = first.to_dict()
    base.update(
        crystal_encoder="cgcnn+composition" if graph else "composition",
        use_spacegroup=any(c.use_spacegroup for c in configs),
        graph_dropout=0.0,
        embedding_dim=first.embedding_dim * len(configs),
        members=[{name: getattr(c, name) for name in MEMBER_FIELDS} for c in configs],
        logit_scale=_mean_or_none([c.logit_scale for c in configs]),
        logit_bias=None,
    )
    if base["logit_scale"] is not None:
        base["logit_bias"] = _mean_or_none([c.logit_bias for c in configs])
    return ClaspConfig(**base)


def _mean_or_none(values: list[float | None]) -> float | None:
    """The mean of ``values``, or ``None`` when any is ``None``.

    The ensemble's cosine is the mean of the members' cosines; when the members share a scale
    ``s`` (and bias ``b``), ``s * mean(cos) + b`` is the mean of their logits; with different
    scales it is an approximation.
    """
    if any(v is None for v in values):
        return None
    return float(sum(values) / len(values))


def merge_models(models: Sequence[ClaspModel]) -> ClaspModel:
    """Build an ensemble :class:`~matminer_clasp.ClaspModel` from trained members.

    Parameters
    ----------
    models
        Two or more single models with the same text encoder (same weights), graph settings
        and ``embedding_dim``; the ensemble has ``len(models) * embedding_dim`` dimensions.

    Returns
    -------
    ClaspModel
        In eval mode; its cosines are the means of the members' cosines (up to float rounding).
        Its ``config.logit_scale`` (and ``logit_bias``) is the mean of the members' when every
        member has one, else ``None``.

    Examples
    --------
    >>> graph = ClaspModel.from_pretrained("runs/graph-384/best")  # doctest: +SKIP
    >>> comp = ClaspModel.from_pretrained("runs/comp-384/best")    # doctest: +SKIP
    >>> merge_models([graph, comp]).save_pretrained("ensemble")    # doctest: +SKIP
    """
    from matminer_clasp.model.clasp import ClaspModel

    config = merge_config([m.config for m in models])
    bert = models[0].text_tower.bert
    reference = bert.state_dict()
    for i, m in enumerate(models[1:], start=1):
        other = m.text_tower.bert.state_dict()
        if other.keys() != reference.keys() or any(
            not torch.equal(other[k].cpu(), reference[k].cpu()) for k in reference
        ):
            raise ValueError(
                f"member {i} has different text-encoder weights from member 0; ensemble members "
                "share one text encoder (train them with the encoder frozen, or all from one "
                "tuned encoder)"
            )
    merged = ClaspModel(config, text_encoder=bert, tokenizer=models[0].tokenizer)
    for slot, head, m in zip(merged.crystal_tower.members, merged.text_tower.head.members, models):
        slot.load_state_dict(m.crystal_tower.state_dict())
        head.load_state_dict(m.text_tower.head.state_dict())
    return merged.to(models[0].device).eval()
