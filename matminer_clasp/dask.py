"""Embedding a ``dask.dataframe`` partition by partition: :func:`embed_dask_dataframe`.

Follow a partition: the featurizer travels to the worker *without weights* (it pickles as its
settings and the model's name, see :mod:`matminer_clasp.featurizers`) -> :func:`featurize_partition`
-> ``featurize_dataframe`` on the pandas partition, batched as in a single process, with the model
from the worker process's model registry (:mod:`matminer_clasp.model.registry`: loaded on the
first partition and kept, so the next partition, whose featurizer is a fresh unpickled copy, finds
the same model) -> the partition with ``clasp_<i>`` columns appended, float64, NaN for bad rows.

Nothing here is needed to use Dask: ``ddf.map_partitions(featurizer.featurize_dataframe, ...)``
loads the model once per worker too; this adds the ``meta`` and the dtype and input checks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from matminer_clasp.featurizer_base import ClaspEmbeddingFeaturizer
from matminer_clasp.featurizers import ClaspFeaturizer

__all__ = ["embed_dask_dataframe", "featurize_partition", "output_meta"]

def _error_column(featurizer: ClaspEmbeddingFeaturizer) -> str:
    # matminer's featurize_dataframe names the error column this way
    return f"{type(featurizer).__name__} Exceptions"


def output_meta(
    meta: pd.DataFrame, featurizer: ClaspEmbeddingFeaturizer, return_errors: bool = False
) -> pd.DataFrame:
    """The empty frame Dask needs as ``meta``: the input columns, then the features (float64).

    Reads only the model's ``config.json`` (for the number of features), never the weights.
    """
    labels = featurizer.feature_labels()
    clash = [c for c in labels if c in meta.columns]
    if clash:
        raise ValueError(
            f"the input already has feature columns {clash[:3]}...; drop them first (matminer "
            "refuses to overwrite columns)"
        )
    extra: dict[str, Any] = {c: pd.Series(dtype="float64") for c in labels}
    if return_errors:
        extra[_error_column(featurizer)] = pd.Series(dtype="object")
    return meta.iloc[:0].assign(**extra)


def featurize_partition(
    partition: pd.DataFrame,
    featurizer: ClaspEmbeddingFeaturizer,
    column: str,
    ignore_errors: bool = True,
    return_errors: bool = False,
) -> pd.DataFrame:
    """Featurize one pandas partition; the model is loaded once per process (model registry).

    Parameters
    ----------
    partition
        A pandas DataFrame holding ``column``.
    featurizer
        A :class:`~matminer_clasp.ClaspFeaturizer` or
        :class:`~matminer_clasp.ClaspTextFeaturizer` (model given by name, not as an instance).
    column
        The column of structures (or texts).
    ignore_errors, return_errors
        As in matminer's ``featurize_dataframe``.

    Returns
    -------
    pandas.DataFrame
        ``partition`` with the feature columns appended (float64; NaN rows for bad entries).
    """
    meta = output_meta(partition, featurizer, return_errors)
    if len(partition) == 0:
        return meta
    out = featurizer.featurize_dataframe(
        partition, column, ignore_errors=ignore_errors, return_errors=return_errors, pbar=False
    )
    labels = featurizer.feature_labels()
    out[labels] = out[labels].astype(np.float64)
    if return_errors:
        errors = _error_column(featurizer)
        out[errors] = out[errors].astype(object)
    return out


def embed_dask_dataframe(
    ddf: Any,
    column: str,
    featurizer: ClaspEmbeddingFeaturizer | None = None,
    ignore_errors: bool = True,
    return_errors: bool = False,
) -> Any:
    """Lazily append CLaSP embedding columns to a ``dask.dataframe.DataFrame``.

    Each partition is featurized by :func:`featurize_partition` on a worker; the results equal
    those of ``featurizer.featurize_dataframe`` on the whole (pandas) frame.

    Parameters
    ----------
    ddf
        A Dask DataFrame with a column of pymatgen structures (object dtype) or of texts.
    column
        That column's name.
    featurizer
        Default: ``ClaspFeaturizer()`` (the bundled model). Give the model by name (folder or
        Hub id): featurizers never pickle weights, so a ``ClaspModel`` instance is refused.
    ignore_errors
        Give bad rows NaN features instead of failing the partition (default ``True``: one bad
        structure in millions should not stop the job).
    return_errors
        Add matminer's ``"<Featurizer> Exceptions"`` column with each bad row's error text.

    Returns
    -------
    dask.dataframe.DataFrame
        Lazy; call ``.compute()``, ``.to_parquet(...)`` etc.

    Raises
    ------
    ValueError
        If ``column`` is missing, or a structure column arrived as strings (Dask's default
        ``dataframe.convert-string`` turns object columns into strings; see ``docs/scaling.md``).
    TypeError
        If the featurizer holds a ``ClaspModel`` instance (it cannot travel to workers).
    """
    featurizer = ClaspFeaturizer() if featurizer is None else featurizer
    if column not in ddf.columns:
        raise ValueError(
            f"the Dask DataFrame has no column {column!r}; columns: {list(ddf.columns)}"
        )
    dtype = ddf.dtypes[column]
    if isinstance(featurizer, ClaspFeaturizer) and not pd.api.types.is_object_dtype(dtype):
        raise ValueError(
            f"column {column!r} has dtype {dtype}, not object: Dask converted the structures to "
            "strings. Create the Dask DataFrame under "
            "dask.config.set({'dataframe.convert-string': False}) so that pymatgen Structures stay "
            "objects"
        )
    import pickle

    pickle.dumps(featurizer)  # fail here, not on a worker, for a model instance
    meta = output_meta(ddf._meta, featurizer, return_errors)
    return ddf.map_partitions(
        featurize_partition,
        featurizer,
        column,
        ignore_errors,
        return_errors,
        meta=meta,
    )
