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

__all__ = ["CaptionIndex", "PairDataset", "collate_pairs", "epoch_order"]


class CaptionIndex:
    """Distinct captions (first-appearance order) and the distinct id of every pair.

    Parameters
    ----------
    captions
        The caption of every pair.

    Attributes
    ----------
    distinct : list of str
        Each caption once, in order of first appearance.
    pair_ids : numpy.ndarray
        ``(n_pairs,)`` index into ``distinct`` of each pair's caption.
    """

    def __init__(self, captions: Sequence[str]) -> None:
        ids: dict[str, int] = {}
        self.pair_ids = np.array([ids.setdefault(c, len(ids)) for c in captions], dtype=np.int64)
        self.distinct = list(ids)


class PairDataset(torch.utils.data.Dataset):
    """``(graph, caption id)`` items of the pairs, for a ``DataLoader``."""

    def __init__(self, graphs: Sequence[Data], caption_ids: np.ndarray) -> None:
        self.graphs, self.caption_ids = graphs, caption_ids

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, i: int) -> tuple[Data, int]:
        return self.graphs[i], int(self.caption_ids[i])


def collate_pairs(items: Sequence[tuple[Data, int]]) -> tuple[Batch, torch.Tensor]:
    """Collate ``(graph, caption index)`` items into ``(Batch, LongTensor of caption indices)``."""
    graphs, caption_ids = zip(*items)
    return Batch.from_data_list(list(graphs)), torch.tensor(caption_ids, dtype=torch.long)


def epoch_order(train_indices: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """The shuffled training order of ``epoch``: a function of (seed, epoch) only."""
    rng = np.random.default_rng([int(seed), int(epoch)])
    return np.asarray(train_indices)[rng.permutation(len(train_indices))]
