"""Ranking metrics of the evaluation: ROC-AUC / AP with bootstrap intervals, retrieval recall.

Bootstrap intervals are percentile intervals over resamples of the items with replacement; every
concept uses the same resamples, so the interval of the mean over concepts is valid, and the
per-resample means are kept so that two models evaluated with the same seed can be compared by
a paired bootstrap. Random baselines: ROC-AUC 0.5, AP = prevalence, structure->text
recall@k = k / n_distinct, text->structure recall@k = mean over captions of
``1 - C(n - r, k) / C(n, k)`` (``r`` structures share the caption).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

__all__ = ["ranking_metrics", "keyword_block", "retrieval_recall", "retrieval_ranks"]


def ranking_metrics(
    scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """ROC-AUC and average precision, optionally for many weightings of the items at once.

    Parameters
    ----------
    scores, labels
        ``(n,)`` scores (higher = more positive) and boolean labels.
    weights
        ``(R, n)`` non-negative item weights (bootstrap counts), or ``None`` for unit weights.

    Returns
    -------
    (auc, ap)
        Arrays of shape ``(R,)`` (``(1,)`` without weights); NaN where a weighting has no
        positive or no negative. Ties are handled as scikit-learn does (AUC counts a tie as
        half; AP steps at each distinct score), so unit weights reproduce ``roc_auc_score``
        and ``average_precision_score``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    weights = np.ones((1, len(scores))) if weights is None else np.atleast_2d(weights)
    order = np.argsort(-scores, kind="stable")
    s, y, w = scores[order], labels[order], weights[:, order].astype(np.float64)
    starts = np.r_[0, np.flatnonzero(np.diff(s) != 0) + 1]
    pos = np.add.reduceat(w * y, starts, axis=1)
    neg = np.add.reduceat(w * ~y, starts, axis=1)
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
    tp, fp = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
    below = n_neg[:, None] - fp
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (pos * (below + 0.5 * neg)).sum(axis=1) / (n_pos * n_neg)
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1e-300), 0.0)
        ap = (pos * precision).sum(axis=1) / n_pos
    bad = (n_pos == 0) | (n_neg == 0)
    auc[bad] = np.nan
    ap[n_pos == 0] = np.nan
    return auc, ap


def _bootstrap_weights(
    n: int, n_resamples: int, rng: np.random.Generator, chunk: int
) -> Iterator[np.ndarray]:
    """Yield ``(r, n)`` count matrices of resamples with replacement, ``chunk`` at a time."""
    done = 0
    while done < n_resamples:
        r = min(chunk, n_resamples - done)
        idx = rng.integers(0, n, size=(r, n)) + (np.arange(r) * n)[:, None]
        yield np.bincount(idx.ravel(), minlength=r * n).reshape(r, n)
        done += r


def _interval(values: np.ndarray) -> list[float] | None:
    """The 95% percentile interval of the finite ``values`` (``None`` if there are none)."""
    values = values[np.isfinite(values)]
    if not len(values):
        return None
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


def keyword_block(
    scores: dict[str, np.ndarray], labels: dict[str, np.ndarray], n_boot: int, seed: int
) -> dict[str, Any]:
    """Point estimates and bootstrap intervals per concept and for the mean over concepts.

    Parameters
    ----------
    scores, labels
        ``concept -> (n,)`` scores and boolean positives of the same ``n`` items.
    n_boot, seed
        Number of bootstrap resamples (0: no intervals) and their seed; the same resamples are
        used for every concept.

    Returns
    -------
    dict
        ``{"concepts": {concept: {"n_positive", "prevalence", "roc_auc", "roc_auc_ci95", "ap",
        "ap_ci95"}}, "mean": {...}}``; the mean covers the concepts whose ROC-AUC is defined
        and, with resamples, keeps the per-resample means (``roc_auc_boot``, ``ap_boot``).
    """
    names = list(scores)
    n = len(next(iter(scores.values()))) if names else 0
    point = {k: ranking_metrics(scores[k], labels[k]) for k in names}
    boot_auc = np.full((n_boot, len(names)), np.nan)
    boot_ap = np.full((n_boot, len(names)), np.nan)
    if n_boot and n:
        rng = np.random.default_rng(seed)
        row = 0
        for w in _bootstrap_weights(n, n_boot, rng, chunk=max(1, min(200, 2_000_000 // n))):
            for j, k in enumerate(names):
                auc, ap = ranking_metrics(scores[k], labels[k], w)
                boot_auc[row : row + len(w), j], boot_ap[row : row + len(w), j] = auc, ap
            row += len(w)

    per = {}
    for j, k in enumerate(names):
        auc, ap = float(point[k][0][0]), float(point[k][1][0])
        per[k] = {
            "n_positive": int(labels[k].sum()),
            "prevalence": float(labels[k].mean()) if n else math.nan,
            "roc_auc": auc, "roc_auc_ci95": _interval(boot_auc[:, j]),
            "ap": ap, "ap_ci95": _interval(boot_ap[:, j]),
        }
    usable = [j for j, k in enumerate(names) if np.isfinite(per[k]["roc_auc"])]
    with warnings.catch_warnings():  # nanmean of resamples where no concept is defined
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = {
            "n_concepts": len(usable),
            "roc_auc": float(np.mean([per[names[j]]["roc_auc"] for j in usable]))
            if usable else math.nan,
            "roc_auc_ci95": _interval(np.nanmean(boot_auc[:, usable], axis=1)) if usable else None,
            "ap": float(np.mean([per[names[j]]["ap"] for j in usable])) if usable else math.nan,
            "ap_ci95": _interval(np.nanmean(boot_ap[:, usable], axis=1)) if usable else None,
            "random_ap": float(np.mean([per[names[j]]["prevalence"] for j in usable]))
            if usable else math.nan,
        }
        if usable and n_boot:  # per-resample means: same seed and n give the same resamples,
            # so two models' lists pair up for a paired bootstrap of their difference
            mean["roc_auc_boot"] = np.round(np.nanmean(boot_auc[:, usable], axis=1), 6).tolist()
            mean["ap_boot"] = np.round(np.nanmean(boot_ap[:, usable], axis=1), 6).tolist()
    return {"concepts": per, "mean": mean}


def retrieval_recall(
    structure_emb: np.ndarray,
    caption_emb: np.ndarray,
    caption_of_structure: np.ndarray,
    ks: Sequence[int] = (1, 5, 10),
    chunk: int = 1024,
) -> dict[str, dict[str, float]]:
    """Text->structure and structure->text recall@k with duplicate captions.

    Parameters
    ----------
    structure_emb
        ``(n, d)`` unit vectors.
    caption_emb
        ``(m, d)`` unit vectors of the distinct captions.
    caption_of_structure
        ``(n,)`` index into ``caption_emb`` of each structure's caption.
    ks
        Cut-offs.
    chunk
        Queries per block of the similarity matrix (bounds memory).

    Returns
    -------
    dict
        ``{"text_to_structure": {"recall@k": ..., "random@k": ..., "n_queries": m'},
        "structure_to_text": {...}}`` where a text query counts as a hit when any structure
        with its caption is in the top ``k`` (ties broken in the query's favour), and ``m'`` is
        the number of distinct captions that occur.
    """
    cap = np.asarray(caption_of_structure, dtype=np.int64)
    ranks = retrieval_ranks(structure_emb, caption_emb, cap, chunk)
    return recall_from_ranks(*ranks, cap, len(caption_emb), ks)


def recall_from_ranks(
    s2t_rank: np.ndarray,
    queries: np.ndarray,
    t2s_rank: np.ndarray,
    caption_of_structure: np.ndarray,
    n_captions: int,
    ks: Sequence[int] = (1, 5, 10),
) -> dict[str, dict[str, float]]:
    """:func:`retrieval_recall` from the ranks of :func:`retrieval_ranks` (computed once)."""
    cap = np.asarray(caption_of_structure, dtype=np.int64)
    n, m = len(s2t_rank), int(n_captions)
    ks = [int(k) for k in ks]
    sizes = np.bincount(cap, minlength=m)[queries]
    out = {"text_to_structure": {"n_queries": int(len(queries))},
           "structure_to_text": {"n_queries": int(n), "n_candidates": int(m)}}
    for k in ks:
        out["text_to_structure"][f"recall@{k}"] = float(np.mean(t2s_rank < k)) if n else math.nan
        out["text_to_structure"][f"random@{k}"] = float(np.mean([_p_any(n, r, k) for r in sizes]))
        out["structure_to_text"][f"recall@{k}"] = float(np.mean(s2t_rank < k)) if n else math.nan
        out["structure_to_text"][f"random@{k}"] = min(1.0, k / m) if m else math.nan
    return out


def retrieval_ranks(
    structure_emb: np.ndarray,
    caption_emb: np.ndarray,
    caption_of_structure: np.ndarray,
    chunk: int = 1024,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ranks behind :func:`retrieval_recall` (0 = first; a hit at k is ``rank < k``).

    Returns
    -------
    (s2t_rank, queries, t2s_rank)
        ``(n,)`` rank of each structure's own caption among the distinct captions; ``(m',)``
        indices of the captions that occur (the text queries); ``(m',)`` rank of the best
        structure with the query's caption among the other structures (ties in its favour).
    """
    s = np.asarray(structure_emb, dtype=np.float32)
    t = np.asarray(caption_emb, dtype=np.float32)
    cap = np.asarray(caption_of_structure, dtype=np.int64)
    n = len(s)
    s2t_rank = np.empty(n, dtype=np.int64)
    for start in range(0, n, chunk):
        sim = s[start : start + chunk] @ t.T
        true = sim[np.arange(len(sim)), cap[start : start + chunk]]
        s2t_rank[start : start + chunk] = (sim > true[:, None]).sum(axis=1)
    queries = np.unique(cap)
    t2s_rank = np.empty(len(queries), dtype=np.int64)
    for start in range(0, len(queries), chunk):
        q = queries[start : start + chunk]
        sim = t[q] @ s.T
        relevant = cap[None, :] == q[:, None]
        best = np.where(relevant, sim, -np.inf).max(axis=1)
        t2s_rank[start : start + chunk] = ((sim > best[:, None]) & ~relevant).sum(axis=1)
    return s2t_rank, queries, t2s_rank


def _p_any(n: int, r: int, k: int) -> float:
    """Probability that a random ranking of ``n`` items puts one of ``r`` targets in the top k."""
    if k >= n - r + 1:
        return 1.0
    miss = 1.0
    for i in range(k):
        miss *= (n - r - i) / (n - i)
    return 1.0 - miss
