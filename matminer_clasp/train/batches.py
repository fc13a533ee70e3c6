"""Training batches: distinct-caption ids, the epoch order and the collation of graph batches.

The order of an epoch is a function of ``(seed, epoch)`` alone (:func:`epoch_order`), so a
resumed run sees the same batches as an uninterrupted one. Every pair is handed to the loader as
``(graph, caption id)`` (:class:`PairDataset`) and :func:`collate_pairs` turns a list of them into
a ``torch_geometric`` batch plus the caption ids that the losses use to find duplicate captions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch_geometric.data import Batch, Data

from matminer_clasp.train.captions import KEYWORD_SEPARATOR

__all__ = ["CaptionIndex", "PairDataset", "chemical_systems", "collate_pairs", "epoch_order"]


class CaptionIndex:
    """Distinct captions (first-appearance order) and the distinct id of every pair.

    Parameters
    ----------
    captions
        The caption of every pair.
    keyword_pairs
        Pairs whose keyword captions (``"kw1, kw2, ..."``) may be replaced by one of their
        keywords (:meth:`sampled_ids`, ``TrainConfig.keyword_sampling``): their single keywords
        join ``distinct`` after every caption, so their text features are computed once too.

    Attributes
    ----------
    distinct : list of str
        Each caption once, in order of first appearance, then the new single keywords.
    pair_ids : numpy.ndarray
        ``(n_pairs,)`` index into ``distinct`` of each pair's caption.
    """

    def __init__(self, captions: Sequence[str],
                 keyword_pairs: Sequence[int] | np.ndarray | None = None) -> None:
        ids: dict[str, int] = {}
        self.pair_ids = np.array([ids.setdefault(c, len(ids)) for c in captions], dtype=np.int64)
        self._keyword_pairs = np.asarray([] if keyword_pairs is None else keyword_pairs, np.int64)
        keyword_ids = [[ids.setdefault(k, len(ids)) for k in _keywords(captions[i])]
                       for i in self._keyword_pairs]
        self._n_keywords = np.array([len(k) for k in keyword_ids], dtype=np.int64)
        self._keyword_start = np.cumsum(self._n_keywords) - self._n_keywords
        self._keyword_ids = np.array([i for k in keyword_ids for i in k], dtype=np.int64)
        self.distinct = list(ids)

    def sampled_ids(self, probability: float, rng: np.random.Generator) -> np.ndarray:
        """Caption ids of one epoch: each keyword pair, with ``probability``, gets one keyword.

        The keyword is drawn uniformly from its caption's keywords; the other pairs (and every
        pair not in ``keyword_pairs``) keep their whole caption. ``rng`` fixes the draw.
        """
        ids = self.pair_ids.copy()
        if not len(self._keyword_pairs) or probability <= 0:
            return ids
        take = rng.random(len(self._keyword_pairs)) < probability
        pick = (rng.random(len(self._keyword_pairs)) * self._n_keywords).astype(np.int64)
        chosen = self._keyword_ids[self._keyword_start + np.minimum(pick, self._n_keywords - 1)]
        ids[self._keyword_pairs[take]] = chosen[take]
        return ids

    def epoch_ids(self, probability: float, seed: int, epoch: int) -> np.ndarray:
        """:meth:`sampled_ids` of one epoch, drawn from ``(seed, epoch)`` alone.

        The same on every process and after a resume; ``pair_ids`` itself when
        ``probability`` is 0.
        """
        if probability <= 0:
            return self.pair_ids
        return self.sampled_ids(probability, np.random.default_rng([seed, epoch]))


def _keywords(caption: str) -> list[str]:
    """The keywords of a keyword caption (the whole caption when it has one or none)."""
    parts = [k.strip() for k in caption.split(KEYWORD_SEPARATOR)]
    parts = [k for k in parts if k]
    return parts or [caption]


class PairDataset(torch.utils.data.Dataset):
    """``(graph, caption id)`` items of the pairs, for a ``DataLoader``.

    With ``with_index``, items are ``(graph, caption id, pair index)``: per-pair training
    targets (distillation, :mod:`.distill`) are looked up by the index.
    """

    def __init__(self, graphs: Sequence[Data], caption_ids: np.ndarray,
                 with_index: bool = False) -> None:
        self.graphs, self.caption_ids, self.with_index = graphs, caption_ids, with_index

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, i: int) -> tuple[Data, int] | tuple[Data, int, int]:
        if self.with_index:
            return self.graphs[i], int(self.caption_ids[i]), int(i)
        return self.graphs[i], int(self.caption_ids[i])


def collate_pairs(
    items: Sequence[tuple[Data, int]] | Sequence[tuple[Data, int, int]],
) -> tuple[Batch, torch.Tensor] | tuple[Batch, torch.Tensor, torch.Tensor]:
    """Collate ``(graph, caption index)`` items into ``(Batch, LongTensor of caption indices)``.

    Items of three (``PairDataset(..., with_index=True)``) add a third LongTensor, of the pair
    indices.
    """
    columns = list(zip(*items))
    out = (Batch.from_data_list(list(columns[0])), torch.tensor(columns[1], dtype=torch.long))
    if len(columns) == 3:
        return (*out, torch.tensor(columns[2], dtype=torch.long))
    return out


def epoch_order(
    train_indices: np.ndarray,
    seed: int,
    epoch: int,
    groups: np.ndarray | None = None,
    batch_size: int | None = None,
) -> np.ndarray:
    """The shuffled training order of ``epoch``: a function of (seed, epoch) only.

    Parameters
    ----------
    train_indices
        Indices of the training pairs.
    seed, epoch
        Together they fix the order.
    groups
        Optional group key of every pair (indexed like the pairs, not like ``train_indices``),
        e.g. its chemical system: whole groups, in random order and shuffled inside, fill
        consecutive batches of ``batch_size``, and the batches are then put in random order
        (hard negatives: ``TrainConfig.batch_grouping="chemsys"``).
    batch_size
        The (global) batch size; required with ``groups``.
    """
    rng = np.random.default_rng([int(seed), int(epoch)])
    order = np.asarray(train_indices)[rng.permutation(len(train_indices))]
    if groups is None:
        return order
    if not batch_size or batch_size < 1:
        raise ValueError("epoch_order: groups need a positive batch_size")
    keys = np.asarray(groups)[order]
    _, key_id = np.unique(keys, return_inverse=True)
    group_rank = rng.permutation(int(key_id.max()) + 1 if key_id.size else 0)[key_id]
    order = order[np.argsort(group_rank, kind="stable")]  # whole groups, members shuffled
    blocks = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    return np.concatenate([blocks[k] for k in rng.permutation(len(blocks))]) if blocks else order


def chemical_systems(graphs: Sequence[Data]) -> np.ndarray:
    """The chemical system (set of elements) of every graph, as an integer id per graph.

    Read from each graph's composition vector (``comp``, index = Z): graphs with the same
    elements, in any amounts, share an id.
    """
    ids: dict[bytes, int] = {}
    out = np.empty(len(graphs), dtype=np.int64)
    for i, graph in enumerate(graphs):
        key = np.flatnonzero(graph.comp.reshape(-1).numpy() > 0).astype(np.int16).tobytes()
        out[i] = ids.setdefault(key, len(ids))
    return out
