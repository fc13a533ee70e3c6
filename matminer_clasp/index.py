"""The :class:`EmbeddingIndex` that text-to-structure screening searches.

One-call screening of a corpus is :func:`matminer_clasp.screening.screen`.

Follow a query: text -> ``ClaspModel.encode_texts`` -> cosine against the unit-norm structure
embeddings (exact chunked matrix products in numpy, or a ``faiss`` index when asked for) -> the
``top_k`` rows as a ``pandas.DataFrame`` (``id``, ``formula``, ``score``, ``rank``). Structures are
embedded once, by :meth:`EmbeddingIndex.build`, and stored on disk by :meth:`EmbeddingIndex.save`
as ``embeddings.npy`` (memory-mappable) + ``metadata.parquet`` + ``index.json``.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from matminer_clasp.inputs import (
    check_embeddings,
    numeric_2d,
    reduced_formula,
    split_inputs,
)
from matminer_clasp.model.registry import get_model, get_text_model
from matminer_clasp.search import exact_topk, faiss_search

INDEX_FORMAT_VERSION = 1
_DTYPES = ("float32", "float16")


def model_name(model: Any) -> str:
    """A printable name for a model argument (stored in ``index.json``)."""
    if model is None:
        return "bundled"
    if isinstance(model, (str, os.PathLike)):
        return os.fspath(model)
    return f"<{type(model).__name__} instance>"


# ---------------------------------------------------------------------- the index
class EmbeddingIndex:
    """Unit-norm structure embeddings plus their ids and metadata, searchable by text.

    Parameters
    ----------
    embeddings
        ``(n, dim)`` array; rows are L2-normalised on construction (a memory-mapped array from
        :meth:`load` is used as is).
    metadata
        One row per embedding; columns ``id`` and ``formula`` plus any extra ones (titles, ...).
        Default: ids ``0..n-1`` and empty formulas.
    model
        Model used to embed query texts: ``None`` (bundled default), a folder / Hub id or a
        :class:`ClaspModel`; loaded on the first text query.
    dtype
        Storage type, ``"float32"`` or ``"float16"`` (half the memory; cosines within ~1e-3).

    Examples
    --------
    >>> index = EmbeddingIndex.build(structures, ids=mp_ids)      # doctest: +SKIP
    >>> index.save("my-index")                                    # doctest: +SKIP
    >>> EmbeddingIndex.load("my-index").search("garnet", top_k=5)  # doctest: +SKIP
    """

    def __init__(
        self,
        embeddings: np.ndarray,
        metadata: pd.DataFrame | None = None,
        model: Any = None,
        dtype: str = "float32",
        _normalized: bool = False,
    ) -> None:
        if dtype not in _DTYPES:
            raise ValueError(f"dtype must be one of {_DTYPES}, got {dtype!r}")
        if not _normalized:
            embeddings = check_embeddings(numeric_2d(embeddings), None, "embeddings")
            embeddings = embeddings.astype(dtype, copy=False)
        n = len(embeddings)
        if metadata is None:
            metadata = pd.DataFrame({"id": np.arange(n), "formula": [""] * n})
        metadata = pd.DataFrame(metadata).reset_index(drop=True)
        if len(metadata) != n:
            raise ValueError(f"metadata has {len(metadata)} rows but there are {n} embeddings")
        if "id" not in metadata:
            metadata.insert(0, "id", np.arange(n))
        if "formula" not in metadata:
            metadata.insert(1, "formula", [""] * n)
        if metadata["id"].duplicated().any():
            dups = metadata["id"][metadata["id"].duplicated()].unique()[:5].tolist()
            raise ValueError(f"duplicate ids in the index: {dups}")
        self.embeddings = embeddings
        self.metadata = metadata
        self.model = model
        self.dtype = dtype
        self.skipped: list[tuple[Any, str]] = []
        #: Content hash of the model that embedded the structures, when known (``index.json``).
        self.model_hash: str | None = None
        self._faiss_cache: dict[tuple, Any] = {}

    # -------------------------------------------------------------- building
    @classmethod
    def build(
        cls,
        structures: Sequence[Any],
        ids: Sequence[Any] | None = None,
        metadata: pd.DataFrame | None = None,
        model: Any = None,
        batch_size: int = 64,
        show_progress_bar: bool = True,
        dtype: str = "float32",
        device: Any = None,
        errors: str = "skip",
    ) -> EmbeddingIndex:
        """Embed ``structures`` once and index them.

        Parameters
        ----------
        structures
            pymatgen structures (or their dicts, CIF texts or file paths).
        ids
            One id per structure (default ``0..n-1``); must be unique.
        metadata
            Extra columns, one row per structure (e.g. ``title``); ``formula`` is filled in from
            the structures unless given.
        model, batch_size, show_progress_bar, device
            As in :meth:`ClaspModel.encode_structures`.
        dtype
            ``"float32"`` or ``"float16"``.
        errors
            ``"skip"`` (default): leave out structures that cannot be embedded, listed in
            :attr:`skipped` as ``(id, reason)``; ``"raise"``: raise
            :class:`InvalidStructureError` naming the first one's id.
        """
        structures = list(structures)
        ids = list(range(len(structures))) if ids is None else list(ids)
        if len(ids) != len(structures):
            raise ValueError(f"got {len(ids)} ids for {len(structures)} structures")
        meta = _metadata_frame(structures, ids, metadata)
        if errors not in ("skip", "raise"):
            raise ValueError(f"errors={errors!r}; expected 'skip' or 'raise'")
        emb, report = get_model(model).encode_structures(
            structures, batch_size, show_progress_bar, device, errors=errors, ids=ids,
            return_report=True,
        )
        kept = report.kept
        index = cls(emb.astype(dtype), meta.iloc[kept], model=model, dtype=dtype, _normalized=True)
        index.skipped = report.skipped()
        return index

    def add(
        self,
        items: Any,
        ids: Sequence[Any] | None = None,
        metadata: pd.DataFrame | None = None,
        batch_size: int = 64,
        show_progress_bar: bool = False,
        device: Any = None,
    ) -> None:
        """Append structures (embedded with :attr:`model`) or precomputed embeddings.

        Existing rows are not re-embedded. Default ids continue after the largest integer id.
        A memory-mapped index is read into memory by this call; :meth:`save` it again to keep
        the change.
        """
        emb, structures = split_inputs(items)
        n_new = len(structures) if structures is not None else len(emb)
        if ids is None:
            existing = self.metadata["id"]
            if len(existing) and not pd.api.types.is_integer_dtype(existing):
                raise ValueError("the index has non-integer ids: pass ids= for the new entries")
            first = int(existing.max()) + 1 if len(existing) else 0
            ids = list(range(first, first + n_new))
        ids = list(ids)
        if len(ids) != n_new:
            raise ValueError(f"got {len(ids)} ids for {n_new} new entries")
        clash = set(ids) & set(self.metadata["id"])
        if clash:
            raise ValueError(f"ids already in the index: {sorted(map(str, clash))[:5]}")
        if structures is not None:
            emb = get_model(self.model).encode_structures(
                structures, batch_size, show_progress_bar, device, ids=ids
            )
            meta = _metadata_frame(structures, ids, metadata)
        else:
            meta = _metadata_frame(None, ids, metadata)
        emb = check_embeddings(emb, self.dim, "new embeddings").astype(self.dtype)
        self.embeddings = np.concatenate([np.asarray(self.embeddings), emb])
        self.metadata = pd.concat([self.metadata, meta], ignore_index=True)
        self._faiss_cache.clear()

    def remove(self, ids: Sequence[Any]) -> None:
        """Drop the entries with these ids (unknown ids raise ``KeyError``).

        The other rows keep their embeddings; a memory-mapped index is read into memory.
        """
        ids = list(ids)
        mask = self.metadata["id"].isin(ids).to_numpy()
        missing = set(ids) - set(self.metadata["id"][mask])
        if missing:
            raise KeyError(f"ids not in the index: {sorted(map(str, missing))[:5]}")
        self.embeddings = np.asarray(self.embeddings)[~mask]
        self.metadata = self.metadata[~mask].reset_index(drop=True)
        self._faiss_cache.clear()

    def __len__(self) -> int:
        return len(self.embeddings)

    @property
    def dim(self) -> int:
        """Embedding size."""
        return int(self.embeddings.shape[1])

    def __repr__(self) -> str:
        return f"EmbeddingIndex(n={len(self)}, dim={self.dim}, dtype={self.dtype!r})"

    # -------------------------------------------------------------- disk
    def save(self, folder: str | os.PathLike[str]) -> Path:
        """Write ``embeddings.npy``, ``metadata.parquet`` and ``index.json`` to ``folder``."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        emb = np.ascontiguousarray(self.embeddings, dtype=self.dtype)
        np.save(folder / "embeddings.npy", emb)
        meta = self.metadata.copy()
        for col in meta.columns:
            if meta[col].dtype == object and meta[col].map(type).nunique() > 1:
                meta[col] = meta[col].astype(str)  # parquet needs one type per column
        meta.to_parquet(folder / "metadata.parquet", index=False)
        info = {
            "format_version": INDEX_FORMAT_VERSION,
            "model": model_name(self.model),
            "dim": self.dim,
            "dtype": self.dtype,
            "count": len(self),
            "skipped": [[str(i), msg] for i, msg in self.skipped],
            "embeddings_crc32": zlib.crc32(emb),  # lets load() skip re-checking every row
        }
        if self.model_hash is not None:
            info["model_hash"] = self.model_hash
        (folder / "index.json").write_text(json.dumps(info, indent=2))
        return folder

    @classmethod
    def load(
        cls, folder: str | os.PathLike[str], mmap: bool = True, model: Any = None,
        repair: bool = False,
    ) -> EmbeddingIndex:
        """Read an index written by :meth:`save`, checking every file.

        Parameters
        ----------
        folder
            The index folder.
        mmap
            Memory-map ``embeddings.npy`` (read-only) instead of reading it into RAM, so corpora
            larger than memory can be searched.
        model
            Model for text queries; default: the one recorded in ``index.json``.
        repair
            Drop rows whose embedding is NaN / infinite / all zero (listed in :attr:`skipped`)
            and re-normalise rows that are not unit vectors, in memory, instead of raising.

        Raises
        ------
        IndexLoadError
            A file is missing, unreadable or of the wrong shape, or rows are not finite unit
            vectors; the message names the file (and the rows' ids). See
            :func:`matminer_clasp.index_files.read_index_folder`.
        """
        from matminer_clasp.index_files import read_index_folder

        info, emb, meta = read_index_folder(folder, mmap=mmap, repair=repair)
        if model is None and info.get("model") not in (None, "bundled") and not str(
            info["model"]
        ).startswith("<"):
            model = info["model"]
        index = cls(emb, meta, model=model, dtype=info["dtype"], _normalized=True)
        index.skipped = [tuple(x) for x in info.get("skipped", [])]
        index.model_hash = info.get("model_hash")
        return index

    # -------------------------------------------------------------- search
    def embed_queries(self, queries: Any) -> np.ndarray:
        """Texts -> unit-norm embeddings with :attr:`model`; arrays are validated and passed on."""
        if isinstance(queries, str) or _all_text(queries):
            texts = [queries] if isinstance(queries, str) else list(queries)
            clasp = get_text_model(self.model)
            if clasp.config.embedding_dim != self.dim:
                raise ValueError(
                    f"the query model embeds into {clasp.config.embedding_dim} dimensions but the "
                    f"index holds {self.dim}-d embeddings: pass the model that built the index"
                )
            return clasp.encode_texts(texts)
        arr = np.asarray(queries, dtype=np.float64)
        if arr.ndim == 1:
            arr = arr[None, :]
        return check_embeddings(numeric_2d(arr), self.dim, "query embeddings")

    def topk(
        self,
        query_embeddings: np.ndarray,
        top_k: int = 10,
        backend: str = "numpy",
        faiss_index: str = "flat",
        chunk_size: int = 65536,
        **faiss_options: Any,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(scores, positions)``, each ``(n_queries, k)``, best first (cosines).

        ``backend="numpy"`` is exact: the corpus is read in chunks of ``chunk_size`` rows, so a
        memory-mapped index never has to fit in RAM. ``backend="faiss"`` uses a ``faiss_index``
        of kind ``"flat"`` (exact), ``"hnsw"`` or ``"ivf"`` (approximate, for millions of rows),
        built on first use; ``faiss_options``: ``hnsw_m``, ``ef_construction``, ``ef_search``,
        ``nlist`` (IVF default about ``4 sqrt(n)``), ``nprobe`` (IVF default
        :data:`~matminer_clasp.search.DEFAULT_NPROBE`, 32, chosen on real embeddings).
        """
        if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
            raise ValueError(f"top_k must be a whole number of at least 1, got {top_k!r}")
        q = np.ascontiguousarray(query_embeddings, dtype=np.float32)
        k = min(int(top_k), len(self))
        if k < 1:
            return np.empty((len(q), 0), np.float32), np.empty((len(q), 0), np.int64)
        if backend == "faiss":
            fp16 = self.dtype == "float16"
            return faiss_search(
                self.embeddings, fp16, self._faiss_cache, q, k, faiss_index, faiss_options
            )
        if backend != "numpy":
            raise ValueError(f"backend must be 'numpy' or 'faiss', got {backend!r}")
        return exact_topk(self.embeddings, q, k, chunk_size)

    def search(
        self,
        queries: Any,
        top_k: int = 10,
        backend: str = "numpy",
        faiss_index: str = "flat",
        **faiss_options: Any,
    ) -> pd.DataFrame:
        """Rank the index against text queries (or query embeddings).

        Returns a DataFrame with ``id``, ``formula``, ``score`` (cosine), ``rank`` (1 = best) and
        any extra metadata columns, sorted by rank; with several queries a ``query`` column comes
        first and rows are grouped by query in input order.
        """
        emb = self.embed_queries(queries)
        scores, pos = self.topk(emb, top_k, backend, faiss_index, **faiss_options)
        labels = _query_labels(queries, len(emb))
        frames = []
        for i in range(len(emb)):
            rows = self.metadata.iloc[pos[i]].reset_index(drop=True)
            rows.insert(2, "score", scores[i].astype(np.float64))
            rows.insert(3, "rank", np.arange(1, len(rows) + 1))
            if labels is not None:
                rows.insert(0, "query", labels[i])
            frames.append(rows)
        return pd.concat(frames, ignore_index=True)


def _all_text(queries: Any) -> bool:
    return (
        isinstance(queries, Sequence)
        and not isinstance(queries, str)
        and len(queries) > 0
        and all(isinstance(q, str) for q in queries)
    )


def _query_labels(queries: Any, n: int) -> list | None:
    if isinstance(queries, str):
        return None
    if _all_text(queries):
        return list(queries)
    return None if np.asarray(queries).ndim == 1 else list(range(n))


def _metadata_frame(
    structures: Sequence[Any] | None, ids: list, metadata: pd.DataFrame | None
) -> pd.DataFrame:
    meta = pd.DataFrame(index=range(len(ids))) if metadata is None else pd.DataFrame(metadata)
    meta = meta.reset_index(drop=True)
    if len(meta) != len(ids):
        raise ValueError(f"metadata has {len(meta)} rows for {len(ids)} entries")
    meta = meta.drop(columns=[c for c in ("id", "structure") if c in meta.columns])
    if "formula" not in meta.columns:
        if structures is None:
            formulas = [""] * len(ids)
        else:
            formulas = [reduced_formula(s) for s in structures]
        meta.insert(0, "formula", formulas)
    meta.insert(0, "id", pd.Series(ids, dtype=object if _mixed(ids) else None))
    return meta


def _mixed(values: list) -> bool:
    return len({type(v) for v in values}) > 1
