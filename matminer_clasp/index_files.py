"""Reading an index folder from disk without trusting it: :func:`read_index_folder`.

An index folder (``index.json`` + ``embeddings.npy`` + ``metadata.parquet``, written by
:meth:`EmbeddingIndex.save <matminer_clasp.EmbeddingIndex.save>`) is checked on every load:

- each file is present and readable (an empty or truncated ``embeddings.npy`` names the file
  instead of raising a bare ``EOFError``);
- ``index.json`` is an object with an integer ``count`` and ``dim`` and a known ``dtype``, and
  the array and the table have the shape it announces;
- every embedding row is finite and of unit norm (within :data:`NORM_TOLERANCE`): a NaN, all-zero
  or rescaled row would rank first or never, silently. When ``index.json`` holds the CRC-32 of the
  array written by ``save`` (``embeddings_crc32``) and the file still matches it, the rows are
  exactly those that were checked when the index was built and the row check is skipped; a
  file that no longer matches is refused even when its rows look sound.

A bad row raises :class:`~matminer_clasp.errors.IndexLoadError` naming the file and the rows'
ids; ``repair=True`` (CLI ``--repair``) drops non-finite and all-zero rows (listing them in the
index's ``skipped``) and re-normalises the others, in memory. Loading the shipped 9k x 768
float16 AMCSD index costs about 30 ms for the checksum (100 ms for the row check without one).
"""

from __future__ import annotations

import json
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from matminer_clasp.errors import IndexLoadError

#: Largest ``| ||row|| - 1 |`` accepted (float16 rounding of a unit vector stays below 1e-3).
NORM_TOLERANCE = 1e-2

_DTYPES = ("float32", "float16")
_REBUILD = "rebuild it with `matminer-clasp index` (or --rebuild for --amcsd)"


class MissingIndexFileError(IndexLoadError, FileNotFoundError):
    """A file of the index folder does not exist."""


def _read_info(folder: Path) -> dict[str, Any]:
    path = folder / "index.json"
    if not path.is_file():
        raise MissingIndexFileError(f"{folder} is not an embedding index (no index.json)")
    try:
        info = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IndexLoadError(f"{path} is unreadable ({exc}); {_REBUILD}") from exc
    if not isinstance(info, dict):
        raise IndexLoadError(f"{path} must hold a JSON object; {_REBUILD}")
    problems = []
    for key in ("count", "dim"):
        value = info.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            problems.append(f"{key!r} must be a non-negative integer, got {value!r}")
    if info.get("dtype") not in _DTYPES:
        problems.append(f"'dtype' must be one of {_DTYPES}, got {info.get('dtype')!r}")
    skipped = info.get("skipped", [])
    if not isinstance(skipped, list) or not all(
        isinstance(x, list) and len(x) == 2 for x in skipped
    ):
        problems.append("'skipped' must be a list of [id, reason] pairs")
    if problems:
        raise IndexLoadError(f"{path}: " + "; ".join(problems) + f"; {_REBUILD}")
    return info


def _read_embeddings(folder: Path, info: dict[str, Any], mmap: bool) -> np.ndarray:
    path = folder / "embeddings.npy"
    if not path.is_file():
        raise MissingIndexFileError(f"{path} not found; {_REBUILD}")
    try:
        emb = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except (EOFError, ValueError, OSError) as exc:
        what = "empty" if path.stat().st_size == 0 else "truncated or not a .npy file"
        raise IndexLoadError(f"{path} is {what} ({exc}); {_REBUILD}") from exc
    if emb.ndim != 2 or emb.shape != (info["count"], info["dim"]):
        raise IndexLoadError(
            f"{path} has shape {emb.shape}, index.json says {info['count']} x {info['dim']}; "
            f"{_REBUILD}"
        )
    if emb.dtype != np.dtype(info["dtype"]):
        raise IndexLoadError(
            f"{path} holds {emb.dtype}, index.json says {info['dtype']}; {_REBUILD}"
        )
    return emb


def _read_metadata(folder: Path, count: int) -> Any:
    import pandas as pd

    path = folder / "metadata.parquet"
    if not path.is_file():
        raise MissingIndexFileError(f"{path} not found; {_REBUILD}")
    try:
        meta = pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many types on a damaged file
        raise IndexLoadError(f"{path} is unreadable ({type(exc).__name__}: {exc}); "
                             f"{_REBUILD}") from exc
    if len(meta) != count:
        raise IndexLoadError(f"{path} has {len(meta)} rows, index.json says {count}; {_REBUILD}")
    return meta


def row_norms(emb: np.ndarray, chunk_size: int = 65536) -> np.ndarray:
    """L2 norm of each row in float32, read in chunks (so a memory-mapped index stays on disk).

    Non-finite rows get a non-finite norm.
    """
    out = np.empty(len(emb), dtype=np.float32)
    for start in range(0, len(emb), chunk_size):
        block = np.asarray(emb[start : start + chunk_size], dtype=np.float32)
        with np.errstate(over="ignore", invalid="ignore"):
            out[start : start + len(block)] = np.sqrt(np.einsum("ij,ij->i", block, block))
    return out


def bad_rows(norms: np.ndarray) -> dict[str, np.ndarray]:
    """Positions of non-finite, all-zero and non-unit rows, by kind."""
    finite = np.isfinite(norms)
    zero = finite & (norms == 0)
    off = finite & ~zero & (np.abs(norms - 1) > NORM_TOLERANCE)
    return {"non-finite": np.flatnonzero(~finite), "all-zero": np.flatnonzero(zero),
            "not unit-norm": np.flatnonzero(off)}


def _describe(bad: dict[str, np.ndarray], ids: Any, norms: np.ndarray) -> str:
    parts = []
    for kind, rows in bad.items():
        if len(rows):
            names = [str(ids[i]) for i in rows[:5]]
            more = f" and {len(rows) - 5} more" if len(rows) > 5 else ""
            extra = f" (norms up to {np.max(norms[rows]):.3g})" if kind == "not unit-norm" else ""
            parts.append(f"{len(rows)} {kind} rows{extra}: ids {names}{more}")
    return "; ".join(parts)


def read_index_folder(
    folder: str | Path, mmap: bool = True, repair: bool = False
) -> tuple[dict[str, Any], np.ndarray, Any]:
    """``(info, embeddings, metadata)`` of an index folder, each checked (see the module doc).

    Parameters
    ----------
    folder
        The index folder.
    mmap
        Memory-map ``embeddings.npy`` (read-only).
    repair
        Drop non-finite and all-zero rows (added to ``info["skipped"]``) and re-normalise
        non-unit rows in memory, with a warning, instead of raising.

    Raises
    ------
    IndexLoadError
        Naming the file and, for bad vectors, the ids of the bad rows.
    """
    folder = Path(folder)
    info = _read_info(folder)
    emb = _read_embeddings(folder, info, mmap)
    meta = _read_metadata(folder, info["count"])
    stored = info.get("embeddings_crc32")
    if isinstance(stored, int) and zlib.crc32(np.ascontiguousarray(emb)) == stored:
        return info, emb, meta  # byte for byte what save() wrote from checked rows
    norms = row_norms(emb)
    bad = bad_rows(norms)
    if not any(len(rows) for rows in bad.values()):
        if stored is not None:
            message = (f"{folder / 'embeddings.npy'} does not match the checksum in index.json "
                       "(changed after saving)")
            if not repair:
                raise IndexLoadError(f"{message}; {_REBUILD}, or load it with repair=True to "
                                     "accept it")
            warnings.warn(f"accepting {message}: its rows are finite unit vectors",
                          stacklevel=3)
        return info, emb, meta
    ids = meta["id"].to_numpy() if "id" in meta else np.arange(len(meta))
    message = f"{folder / 'embeddings.npy'}: {_describe(bad, ids, norms)}"
    if not repair:
        raise IndexLoadError(
            f"{message}; load it with repair=True (CLI --repair) to drop or re-normalise "
            f"those rows, or {_REBUILD}"
        )
    warnings.warn(f"repairing {message} in memory (save it to keep the repair)", stacklevel=3)
    drop = np.concatenate([bad["non-finite"], bad["all-zero"]])
    keep = np.setdiff1d(np.arange(len(emb)), drop)
    reasons = {int(i): "non-finite" for i in bad["non-finite"]}
    reasons.update({int(i): "all-zero" for i in bad["all-zero"]})
    fixed = np.asarray(emb[keep], dtype=np.float32) / norms[keep, None]
    info = {**info, "count": len(keep), "skipped": list(info.get("skipped", [])) + [
        [str(ids[i]), f"dropped by repair: its embedding was {reasons[int(i)]}"]
        for i in sorted(reasons)
    ]}
    return info, fixed.astype(info["dtype"]), meta.iloc[keep].reset_index(drop=True)


__all__ = ["NORM_TOLERANCE", "MissingIndexFileError", "bad_rows", "read_index_folder",
           "row_norms"]
