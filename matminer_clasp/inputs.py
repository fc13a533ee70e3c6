"""What a user passed: structures, a Series / DataFrame of them, or precomputed embeddings.

Shared by :mod:`~matminer_clasp.zeroshot`, :mod:`~matminer_clasp.index`,
:mod:`~matminer_clasp.plot` and the CLI, so that every entry point accepts the same inputs:
:func:`split_inputs` tells structures from embeddings (a ``structure`` column, ``clasp_<i>``
columns written by ``ClaspFeaturizer``, or a 2-D array), :func:`check_embeddings` validates and
normalises embeddings. Structures themselves are embedded by ``ClaspModel.encode_structures``,
the one loop from inputs to vectors.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

#: Columns written by ``ClaspFeaturizer`` (``clasp_0`` ... ``clasp_767``).
CLASP_COLUMN = re.compile(r"clasp_\d+")


def is_structure(obj: Any) -> bool:
    """True for a pymatgen ``Structure`` / ``IStructure``.

    Without pymatgen imported no object can be one, so the check does not import it (the text
    path on embeddings stays free of pymatgen).
    """
    if "pymatgen.core" not in sys.modules:
        return False
    from pymatgen.core import IStructure

    return isinstance(obj, IStructure)


def split_inputs(X: Any) -> tuple[np.ndarray | None, list | None]:
    """Tell structures from precomputed embeddings.

    Returns ``(embeddings, None)`` for a 2-D numeric array, list of rows or DataFrame (the
    ``clasp_<i>`` columns of ``ClaspFeaturizer``, or all-numeric columns), and
    ``(None, structures)`` for a ``Structure``, a list / array / Series of structures, or a
    DataFrame with a ``structure`` column (or a single column of structures).

    Raises
    ------
    ValueError
        For anything else (1-D numbers, text, ragged rows), naming what was received.
    """
    if is_structure(X):
        return None, [X]
    if hasattr(X, "tocsr") or type(X).__module__.startswith("scipy.sparse"):
        raise TypeError(
            "sparse input is not supported: dense data is required (CLaSP embeddings are dense; "
            "use X.toarray())"
        )
    if isinstance(X, pd.DataFrame):
        clasp_cols = [c for c in X.columns if CLASP_COLUMN.fullmatch(str(c))]
        if clasp_cols:
            return numeric_2d(X[clasp_cols]), None
        if "structure" in X.columns:
            return None, list(X["structure"])
        if X.shape[1] == 1 and len(X) and is_structure(X.iloc[0, 0]):
            return None, list(X.iloc[:, 0])
        return numeric_2d(X), None
    if isinstance(X, pd.Series):
        X = X.to_numpy()
    if isinstance(X, np.ndarray) and X.dtype == object:
        flat = X.ravel()
        if flat.size and any(is_structure(s) for s in flat):
            if X.ndim > 1 and X.shape[1] != 1:
                raise ValueError(f"expected one structure per row, got an array of shape {X.shape}")
            return None, list(flat)
    elif isinstance(X, Sequence) and not isinstance(X, str) and len(X):
        if any(is_structure(s) for s in X):  # bad entries are reported by the graph builder
            return None, list(X)
    return numeric_2d(X), None


def numeric_2d(X: Any) -> np.ndarray:
    """``X`` as a 2-D float64 array, or a ``ValueError`` saying what was received instead."""
    try:
        arr = np.asarray(X)
        if np.iscomplexobj(arr):
            raise ValueError("Complex data not supported: embeddings are real vectors")
        arr = arr.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            "expected pymatgen Structures or a 2-D array of embeddings, got "
            f"{type(X).__name__} that is neither ({exc})"
        ) from exc
    if arr.ndim != 2:
        raise ValueError(
            f"Expected 2D array of embeddings, got {arr.ndim}D array instead (shape {arr.shape}); "
            "reshape a single embedding with x.reshape(1, -1)"
        )
    return arr


def check_embeddings(emb: np.ndarray, dim: int | None, what: str = "X") -> np.ndarray:
    """Validate embeddings (finite, ``dim`` columns, non-zero rows); return them unit-normalised."""
    emb = np.asarray(emb, dtype=np.float32)
    if emb.shape[1] == 0:
        raise ValueError(
            f"Found array with 0 feature(s) (shape={emb.shape}) while a minimum of 1 is required."
        )
    bad = ~np.isfinite(emb).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)[:5].tolist()
        raise ValueError(
            f"{what} contains NaN or infinity in rows {rows} (structures the featurizer could not "
            "embed?); drop those rows first"
        )
    if dim is not None and emb.shape[1] != dim:
        raise ValueError(
            f"{what} has {emb.shape[1]} features, but the model is expecting {dim} features "
            "(its embedding size)"
        )
    norms = np.linalg.norm(emb, axis=1, keepdims=True)
    if (norms == 0).any():
        rows = np.flatnonzero(norms[:, 0] == 0)[:5].tolist()
        raise ValueError(f"{what} has all-zero rows {rows}: a cosine is undefined")
    return emb / norms


def reduced_formula(structure: Any) -> str:
    """The reduced formula, or ``""`` for something that has none."""
    try:
        return structure.composition.reduced_formula
    except Exception:  # noqa: BLE001 - an unreadable structure has no formula, not a crash
        return ""
