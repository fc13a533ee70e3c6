"""Top-k search backends over unit-norm embeddings: exact numpy, or a ``faiss`` index.

:class:`~matminer_clasp.index.EmbeddingIndex` owns the embeddings and metadata and picks a
backend; the functions here only see arrays. :func:`exact_topk` streams the corpus in chunks (a
memory-mapped corpus never has to fit in RAM) and breaks ties towards the lower row;
:func:`faiss_search` builds a flat, HNSW or IVF faiss index on first use and keeps it in a cache
the caller owns. Scores are inner products, which are cosines for unit vectors.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: Kinds of faiss index :func:`faiss_search` can build.
FAISS_KINDS = ("flat", "hnsw", "ivf")

#: IVF lists probed per query by default. Chosen on real embeddings (the bundled model's AMCSD
#: embeddings grown to 1M, ``benchmarks/bench_screen.py``): at the default ``nlist`` (about
#: ``4 sqrt(n)``, 4,096 there) nprobe 32 is the smallest setting whose recall@10 for *text*
#: queries, which sit across the modality gap from every structure, reaches 0.99 (0.992; 0.983
#: at 16, 0.956 at 8), at a p50 of 3.6 ms on 2 loaded cores. Structure queries reach 1.000 at 8.
DEFAULT_NPROBE = 32

#: faiss's k-means wants at least this many training points per IVF list.
_POINTS_PER_LIST = 39


def exact_topk(
    corpus: np.ndarray, q: np.ndarray, k: int, chunk_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by inner product, streaming the corpus in chunks; ties go to the lower row."""
    best_s = np.full((len(q), 0), -np.inf, np.float32)
    best_p = np.empty((len(q), 0), np.int64)
    for start in range(0, len(corpus), chunk_size):
        sims = _block_scores(q, corpus[start : start + chunk_size])  # (n_queries, chunk)
        kk = min(k, sims.shape[1])
        part = np.argpartition(-sims, kk - 1, axis=1)[:, :kk] if kk < sims.shape[1] else (
            np.broadcast_to(np.arange(sims.shape[1]), sims.shape)
        )
        best_s = np.concatenate([best_s, np.take_along_axis(sims, part, 1)], axis=1)
        best_p = np.concatenate([best_p, part + start], axis=1)
        best_s, best_p = _sort_rows(best_s, best_p, k)
    return best_s, best_p


_FP16_ROWS = 2048  # float16 rows widened at a time, so the float32 copy stays in cache


def _block_scores(q: np.ndarray, block: np.ndarray) -> np.ndarray:
    """``q @ block.T`` in float32.

    float16 blocks are widened to float32 ``_FP16_ROWS`` rows at a time with torch's vectorised
    cast: numpy's float16 cast is ~10x slower than the product itself (measured in
    ``benchmarks/bench_screen.py``). The widening is exact, so the scores are unchanged.
    """
    if block.dtype == np.float32:
        return q @ block.T
    if block.dtype != np.float16:
        return q @ np.asarray(block, dtype=np.float32).T
    import torch

    sims = np.empty((len(q), len(block)), np.float32)
    for s in range(0, len(block), _FP16_ROWS):
        half = np.array(block[s : s + _FP16_ROWS], dtype=np.float16)  # writable copy (memmaps)
        sims[:, s : s + _FP16_ROWS] = q @ torch.from_numpy(half).float().numpy().T
    return sims


def _sort_rows(s: np.ndarray, p: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((p, -s), axis=-1) if s.size else np.empty(s.shape, np.int64)
    order = order[:, :k]
    return np.take_along_axis(s, order, 1), np.take_along_axis(p, order, 1)


def _import_faiss() -> Any:
    try:
        import faiss
    except ImportError as exc:
        raise ImportError(
            "backend='faiss' needs the faiss library: pip install faiss-cpu "
            "(or matminer-clasp[faiss]); backend='numpy' searches exactly without it"
        ) from exc
    return faiss


def faiss_search(
    embeddings: np.ndarray,
    fp16: bool,
    cache: dict[tuple, Any],
    q: np.ndarray,
    k: int,
    kind: str,
    options: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray]:
    """Search with a faiss index built (once per kind and options) over ``embeddings``.

    Inner product on unit vectors is the cosine. With ``fp16`` the faiss index stores vectors with
    faiss's fp16 scalar quantizer. Built indexes are kept in ``cache`` (the caller empties it when
    the embeddings change).
    """
    faiss = _import_faiss()
    if kind not in FAISS_KINDS:
        raise ValueError(f"faiss_index must be one of {FAISS_KINDS}, got {kind!r}")
    opts = dict(options)
    ef_search = int(opts.pop("ef_search", 128))
    nprobe = int(opts.pop("nprobe", DEFAULT_NPROBE))
    key = (kind, tuple(sorted(opts.items())))
    fidx = cache.get(key)
    if fidx is None:
        fidx = _build_faiss(faiss, embeddings, fp16, kind, opts)
        cache[key] = fidx
    if kind == "hnsw":
        fidx.hnsw.efSearch = max(ef_search, k)
    elif kind == "ivf":
        fidx.nprobe = nprobe
    scores, pos = fidx.search(np.ascontiguousarray(q, dtype=np.float32), k)
    return scores.astype(np.float32), pos.astype(np.int64)


def _build_faiss(
    faiss: Any, embeddings: np.ndarray, fp16: bool, kind: str, opts: dict[str, Any]
) -> Any:
    n, dim = embeddings.shape
    ip = faiss.METRIC_INNER_PRODUCT
    unknown = set(opts) - {"hnsw_m", "ef_construction", "nlist"}
    if unknown:
        raise TypeError(f"unknown faiss options: {sorted(unknown)}")
    if kind == "flat":
        fidx = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16, ip) if fp16 else (
            faiss.IndexFlatIP(dim)
        )
    elif kind == "hnsw":
        m = int(opts.get("hnsw_m", 32))
        if fp16:
            fidx = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_fp16, m, ip)
        else:
            fidx = faiss.IndexHNSWFlat(dim, m, ip)
        fidx.hnsw.efConstruction = int(opts.get("ef_construction", 200))
    else:
        nlist = int(opts.get("nlist", max(1, min(4 * int(np.sqrt(n)), n // _POINTS_PER_LIST))))
        quantizer = faiss.IndexFlatIP(dim)
        if fp16:
            fidx = faiss.IndexIVFScalarQuantizer(
                quantizer, dim, nlist, faiss.ScalarQuantizer.QT_fp16, ip
            )
        else:
            fidx = faiss.IndexIVFFlat(quantizer, dim, nlist, ip)
    chunk = 65536
    # IVF training sample: 100k rows, or more when the lists need more (faiss warns and
    # clusters poorly below 39 points a list: 160k rows for 4,096 lists)
    n_train = max(100_000, _POINTS_PER_LIST * getattr(fidx, "nlist", 0))
    for start in range(0, n, chunk):
        block = np.ascontiguousarray(embeddings[start : start + chunk], dtype=np.float32)
        if not fidx.is_trained:
            fidx.train(block if n <= chunk else _sample(embeddings, n_train))
        fidx.add(block)
    return fidx


def _sample(embeddings: np.ndarray, n: int) -> np.ndarray:
    """``n`` rows drawn without replacement (seed 0), in row order, as float32 (IVF training)."""
    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(len(embeddings), size=min(n, len(embeddings)), replace=False))
    return np.ascontiguousarray(embeddings[rows], dtype=np.float32)
