"""The state of a running search service: :class:`SearchService`.

Built once at start-up from an :class:`~matminer_clasp.index.EmbeddingIndex` and a model name:
the text half of the model (``get_text_model``: no torch_geometric or pymatgen), the corpus as
float32 in memory (fp16 matrix products are slow in numpy), the metadata as JSON-safe records,
2-D map coordinates (``matminer_clasp.plot.reduce_to_2d``), a :class:`~.batcher.QueryBatcher`
for queries and a :class:`~.cifs.CifSource` for CIFs. Requests then only embed their text.
"""

from __future__ import annotations

import functools
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from matminer_clasp.index import EmbeddingIndex, model_name
from matminer_clasp.serve.batcher import QueryBatcher
from matminer_clasp.serve.cifs import CifSource

#: Columns never sent with results (CIF text and the server's file paths stay behind
#: ``/api/structure/{id}``).
HIDDEN_COLUMNS = ("cif", "structure", "path")
#: Corpora up to this size are searched as a float32 copy in RAM; larger ones as stored (mmap).
IN_MEMORY_BYTES = 2 * 1024**3
#: Most rows a 2-D map is fitted on (PCA is then applied to all rows).
MAP_FIT_ROWS = 50000


@dataclass(frozen=True)
class ServeLimits:
    """Limits on what one request may ask for (checked by the API, 4xx beyond them)."""

    max_k: int = 100
    max_query_length: int = 500
    max_queries: int = 64
    max_labels: int = 32
    max_page: int = 1000


def json_safe(value: Any) -> Any:
    """A metadata value as JSON can carry it: NaN / inf / NA -> ``None``, numpy -> Python."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, (list, tuple, np.ndarray)):
        return [json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return str(value)


class SearchService:
    """An index and a model, loaded once, answering queries from many threads.

    Parameters
    ----------
    index
        The corpus.
    model
        Model for query texts: ``None`` (the index's model, else the bundled default), a folder
        / Hub id, or a loaded model.
    limits
        Request limits.
    map_method
        ``"pca"`` (default, fast), ``"umap"``, ``"tsne"`` or ``None`` (no embedding map).
    map_points
        Most background points sent to the page (a fixed random sample above it; hits always
        carry their own coordinates).
    structures, recursive, amcsd_db
        Where CIFs come from, see :class:`~matminer_clasp.serve.cifs.CifSource`.
    max_batch
        Most query texts embedded in one forward pass.
    threads
        Torch and BLAS threads for the whole process (``torch.set_num_threads`` and
        ``threadpoolctl``; default: the libraries' own). On a machine shared with other busy
        processes, 1 avoids spinning threads that can make a query 2-40x slower.
    """

    def __init__(
        self,
        index: EmbeddingIndex,
        model: Any = None,
        limits: ServeLimits | None = None,
        map_method: str | None = "pca",
        map_points: int = 20000,
        structures: str | os.PathLike[str] | None = None,
        recursive: bool = False,
        amcsd_db: str | os.PathLike[str] | None = None,
        max_batch: int = 64,
        threads: int | None = None,
    ) -> None:
        from matminer_clasp.model.registry import get_text_model

        if threads is not None:  # process-wide: the service owns its process
            import torch
            from threadpoolctl import threadpool_limits

            torch.set_num_threads(int(threads))
            threadpool_limits(limits=int(threads))  # BLAS threads spin between matrix products
        if len(index) == 0:
            raise ValueError("the index is empty")
        self.limits = limits or ServeLimits()
        model = index.model if model is None else model
        self.model_name = model_name(model)
        self.model_hash = index.model_hash
        self.text_model = get_text_model(model)
        if self.text_model.config.embedding_dim != index.dim:
            raise ValueError(
                f"the model embeds texts in {self.text_model.config.embedding_dim} dimensions but "
                f"the index holds {index.dim}-d embeddings: pass the model that built the index"
            )
        emb = index.embeddings
        if len(emb) * index.dim * 4 <= IN_MEMORY_BYTES:  # fp16 products are slow in numpy
            emb = np.ascontiguousarray(emb, dtype=np.float32)
        self.index = EmbeddingIndex(
            emb, index.metadata, model=model, dtype=str(emb.dtype), _normalized=True
        )
        meta = index.metadata
        self.ids = [str(i) for i in meta["id"]]
        self.row_of = {rid: i for i, rid in enumerate(self.ids)}
        if len(self.row_of) != len(self.ids):
            raise ValueError("the index's ids are not unique once written as text")
        #: shown metadata columns (id first), as arrays read row by row for answers
        self.columns = {str(c): meta[c].to_numpy() for c in meta.columns
                        if c not in HIDDEN_COLUMNS and c != "id"}
        self.xy = _map_coordinates(emb, map_method, threads) if map_method else None
        self.map_method = map_method
        self.map_sample = _sample(len(emb), map_points)
        self.cifs = CifSource(meta, structures, recursive, amcsd_db)
        self.model_lock = threading.Lock()
        self.batcher = QueryBatcher(self._encode, self.index.topk, self.model_lock, max_batch)
        self._classifiers: OrderedDict[tuple, Any] = OrderedDict()
        self._classifiers_lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.ids)

    def close(self) -> None:
        """Stop the query worker."""
        self.batcher.close()

    # -------------------------------------------------------------- queries
    def _encode(self, texts: list[str]) -> np.ndarray:
        return self.text_model.encode_texts(texts, show_progress_bar=False)

    def record(self, row: int) -> dict[str, Any]:
        """The metadata of one row, JSON-safe (``id`` first)."""
        rec = {"id": self.ids[row]}
        rec.update((name, json_safe(col[row])) for name, col in self.columns.items())
        return rec

    def hits(self, scores: np.ndarray, positions: np.ndarray) -> list[dict[str, Any]]:
        """Ranked result rows (``rank``, ``id``, ``score``, metadata, ``row``, map ``x``/``y``)."""
        out = []
        for rank, (score, pos) in enumerate(zip(scores, positions), start=1):
            meta = self.record(int(pos))
            rec = {"rank": rank, "id": meta.pop("id"), "score": round(float(score), 6)}
            rec.update(meta)
            rec["row"] = int(pos)
            if self.xy is not None:
                rec["x"], rec["y"] = float(self.xy[pos, 0]), float(self.xy[pos, 1])
            out.append(rec)
        return out

    def search(self, queries: Sequence[str], k: int) -> list[list[dict[str, Any]]]:
        """Blocking search of several queries (each gets its top ``k``)."""
        scores, pos = self.batcher.search(list(queries), k)
        return [self.hits(s, p) for s, p in zip(scores, pos)]

    # -------------------------------------------------------------- zero-shot labels
    def classifier(self, labels: Sequence[str], binary: bool = False) -> Any:
        """A fitted :class:`~matminer_clasp.zeroshot.ZeroShotClassifier` (cached per labels)."""
        from matminer_clasp.zeroshot import ZeroShotClassifier

        labels = list(labels)
        key = (tuple(labels), binary)
        with self._classifiers_lock:
            if key in self._classifiers:
                self._classifiers.move_to_end(key)
                return self._classifiers[key]
        clf = ZeroShotClassifier(labels[0] if binary else list(labels), model=self.text_model,
                                 binary=binary)
        with self.model_lock:
            clf.fit()
        with self._classifiers_lock:
            self._classifiers[key] = clf
            while len(self._classifiers) > 32:
                self._classifiers.popitem(last=False)
        return clf

    def classify(self, labels: Sequence[str], rows: Sequence[int],
                 binary: bool = False) -> tuple[list[str], list[dict[str, Any]]]:
        """Zero-shot labels of the structures at ``rows`` from their stored embeddings.

        Returns the class names (binary: ``["not X", "X"]``) and one record per row: ``id``,
        ``formula``, ``label`` and ``probabilities`` (class name -> probability).
        """
        clf = self.classifier(labels, binary)
        rows = list(rows)
        classes = [f"not {labels[0]}", labels[0]] if binary else [str(c) for c in clf.classes_]
        if not rows:
            return classes, []
        proba = clf.predict_proba(np.asarray(self.index.embeddings[rows]))
        pred = np.asarray(classes, dtype=object)[np.argmax(proba, axis=1)]
        out = []
        for row, label, p in zip(rows, pred, proba):
            formula = self.columns.get("formula")
            rec = {"id": self.ids[row],
                   "formula": None if formula is None else json_safe(formula[row]),
                   "label": json_safe(label),
                   "probabilities": {str(c): round(float(v), 6) for c, v in zip(classes, p)}}
            out.append(rec)
        return classes, out

    # -------------------------------------------------------------- map
    @functools.cached_property
    def _map_payload(self) -> dict[str, Any]:
        """:meth:`map_payload`, built on first use (the map never changes)."""
        if self.xy is None:
            return {"method": None, "n": len(self), "x": [], "y": [], "row": []}
        rows = self.map_sample
        return {
            "method": self.map_method,
            "n": len(self),
            "x": np.round(self.xy[rows, 0], 4).tolist(),
            "y": np.round(self.xy[rows, 1], 4).tolist(),
            "row": rows.tolist(),
        }

    def map_payload(self) -> dict[str, Any]:
        """Background points of the embedding map (``x``, ``y``, ``row``), or an empty map."""
        return self._map_payload


def _map_coordinates(emb: np.ndarray, method: str, threads: int | None = None) -> np.ndarray:
    """2-D coordinates scaled into ``[0, 1]``.

    ``"pca"``: :func:`pca_2d` (the axes of ``plot.reduce_to_2d(method="pca")`` without importing
    scikit-learn, whose import alone took longer than the rest of start-up). UMAP and t-SNE go
    through :func:`matminer_clasp.plot.reduce_to_2d`, for corpora up to :data:`MAP_FIT_ROWS`.
    """
    from threadpoolctl import threadpool_limits

    n = len(emb)
    if method != "pca" and n > MAP_FIT_ROWS:
        raise ValueError(f"--map {method} on {n} structures would take hours: use --map pca "
                         f"(or none) for indexes over {MAP_FIT_ROWS} structures")
    with threadpool_limits(threads):
        if n < 3:
            xy = np.zeros((n, 2))
        elif method == "pca":
            xy = pca_2d(emb)
        else:
            from matminer_clasp.plot import reduce_to_2d

            xy = reduce_to_2d(np.asarray(emb, dtype=np.float32), method)
    xy = np.asarray(xy, dtype=np.float64)
    lo, hi = xy.min(axis=0), xy.max(axis=0)
    return (xy - lo) / np.where(hi > lo, hi - lo, 1.0)


def pca_2d(emb: np.ndarray, fit_rows: int | None = None, chunk: int = 65536) -> np.ndarray:
    """Project rows onto the first two principal axes (numpy only).

    The axes are the top eigenvectors of the covariance of at most ``fit_rows`` (default
    :data:`MAP_FIT_ROWS`) rows, each signed so that its largest entry is positive; all rows
    are then projected ``chunk`` at a time, so a memory-mapped corpus is never widened whole.
    Equal to scikit-learn's PCA up to the sign of each axis.
    """
    n = len(emb)
    sample = np.asarray(emb[_sample(n, fit_rows or MAP_FIT_ROWS)], dtype=np.float32)
    mean = sample.mean(axis=0)
    centred = sample - mean
    cov = (centred.T @ centred).astype(np.float64) / max(1, len(sample) - 1)
    _, vecs = np.linalg.eigh(cov)  # ascending eigenvalues
    axes = vecs[:, ::-1][:, :2].T
    axes *= np.sign(axes[np.arange(2), np.abs(axes).argmax(axis=1)])[:, None]
    axes = axes.astype(np.float32)
    return np.concatenate([
        (np.asarray(emb[i : i + chunk], dtype=np.float32) - mean) @ axes.T
        for i in range(0, n, chunk)
    ])


def _sample(n: int, size: int) -> np.ndarray:
    if n <= size:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, size, replace=False))
