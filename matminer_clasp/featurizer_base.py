"""What the CLaSP featurizers share: matminer's API, lazy model loading, pickling, row errors.

:class:`ClaspEmbeddingFeaturizer` is the base of :class:`~matminer_clasp.ClaspFeaturizer`
(structures) and :class:`~matminer_clasp.ClaspTextFeaturizer` (texts): it loads the model once
per process and name, pickles without weights, batches ``featurize_many`` (or hands it to
matminer's pool for ``n_jobs > 1``) and turns a bad row into matminer's error conventions. A
subclass only says how a list of items becomes embeddings (``_embed``).
"""

from __future__ import annotations

import copy
import os
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from matminer.featurizers.base import BaseFeaturizer
from tqdm.auto import tqdm

from matminer_clasp.config import ClaspConfig
from matminer_clasp.errors import ClaspError
from matminer_clasp.model import registry as model_registry
from matminer_clasp.model.clasp import ClaspModel

CLASP_BIBTEX = (
    "@article{suzuki2025clasp,\n"
    "  title = {Bridging text and crystal structures: literature-driven contrastive learning "
    "for materials science},\n"
    "  author = {Suzuki, Yuta and Taniai, Tatsunori and Igarashi, Ryo and Saito, Kotaro and "
    "Chiba, Naoya and Ushiku, Yoshitaka and Ono, Kanta},\n"
    "  journal = {Machine Learning: Science and Technology},\n"
    "  volume = {6},\n  number = {3},\n  pages = {035006},\n  year = {2025},\n"
    "  doi = {10.1088/2632-2153/ade58c}\n}"
)
CGCNN_BIBTEX = (
    "@article{xie2018cgcnn,\n"
    "  title = {Crystal Graph Convolutional Neural Networks for an Accurate and Interpretable "
    "Prediction of Material Properties},\n"
    "  author = {Xie, Tian and Grossman, Jeffrey C.},\n"
    "  journal = {Physical Review Letters},\n"
    "  volume = {120},\n  number = {14},\n  pages = {145301},\n  year = {2018},\n"
    "  doi = {10.1103/PhysRevLett.120.145301}\n}"
)
_SKIP_HINT = (
    "\nTO SKIP THESE ERRORS when featurizing specific compounds, set 'ignore_errors=True' when "
    "running the batch featurize() operation (e.g., featurize_many(), featurize_dataframe(), etc.)."
)


class ClaspEmbeddingFeaturizer(BaseFeaturizer):
    """Base of the CLaSP featurizers: lazy model loading, pickling without weights, batching.

    Subclasses implement ``_embed(items, fail_fast, progress)`` -> ``(embeddings, errors)``.
    """

    _label_prefix = "clasp"

    def __init__(
        self,
        model: str | os.PathLike[str] | ClaspModel | None = None,
        device: str | torch.device | None = None,
        batch_size: int = 64,
        normalize_embeddings: bool = True,
        revision: str | None = None,
        cache_dir: str | os.PathLike[str] | None = None,
        local_files_only: bool = False,
    ) -> None:
        self.model = model
        self.device = device
        self.batch_size = batch_size
        self.normalize_embeddings = normalize_embeddings
        self.revision = revision
        self.cache_dir = cache_dir
        self.local_files_only = local_files_only
        self._cache: dict[str, Any] = {}
        self._row_labels: pd.Index | None = None
        self.set_n_jobs(1)

    # ------------------------------------------------------------------ the model, lazily
    def _source(self) -> tuple[Any, ...]:
        """Everything that decides which model is used (sklearn's set_params may change it)."""
        name = id(self.model) if isinstance(self.model, ClaspModel) else self.model
        return (name, self.revision, self.cache_dir, self.local_files_only, str(self.device))

    def _cached(self) -> dict[str, Any]:
        """The current model's config (never the model: see :meth:`get_model`)."""
        if self._cache.get("source") != self._source():
            self._cache = {"source": self._source()}
        return self._cache

    def _folder(self) -> Path:
        return model_registry.resolve_folder(
            self.model, self.revision, self.cache_dir, self.local_files_only
        )

    def _device(self) -> torch.device:
        if self.device is not None:
            return torch.device(self.device)
        if isinstance(self.model, ClaspModel):
            return self.model.device
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")

    def get_model(self) -> ClaspModel:
        """Return the :class:`ClaspModel`, loading it on first use (once per process and folder).

        A model given by name comes from the process's model registry
        (:func:`matminer_clasp.model.registry.get_model`): it is shared with everything in this
        process that names the same folder and device; treat it as read-only (train a copy, not
        this object). The featurizer itself never holds it, so copies and pickles stay light.
        """
        if isinstance(self.model, ClaspModel):
            return self.model
        return model_registry.get_model(
            self.model, self._device(), self.revision, self.cache_dir, self.local_files_only
        )

    def get_config(self) -> ClaspConfig:
        """Return the model's :class:`ClaspConfig` from ``config.json`` (no weights loaded)."""
        if isinstance(self.model, ClaspModel):
            return self.model.config
        cache = self._cached()
        if "config" not in cache:
            cache["config"] = ClaspConfig.load(self._folder())
        return cache["config"]

    # ------------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        if isinstance(self.model, ClaspModel):
            raise TypeError(_instance_message(type(self).__name__, "be pickled"))
        state = dict(super().__getstate__())
        state["_cache"] = dict(self._cache)
        state["_row_labels"] = None
        return state

    def __copy__(self) -> ClaspEmbeddingFeaturizer:
        new = type(self).__new__(type(self))
        new.__dict__.update(self.__dict__)
        new._cache = dict(self._cache)
        return new

    def __deepcopy__(self, memo: dict[int, Any]) -> ClaspEmbeddingFeaturizer:
        # in-process copy: a ClaspModel instance is copied too; a model loaded by name is shared
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        state = {k: v for k, v in self.__dict__.items() if k != "_cache"}
        new.__dict__.update(copy.deepcopy(state, memo))
        new._cache = {}
        return new

    # ------------------------------------------------------------------ matminer API
    def fit(self, X: Any, y: Any = None, **fit_kwargs: Any) -> ClaspEmbeddingFeaturizer:
        """Do nothing and return ``self``: the model is pretrained."""
        return self

    def feature_labels(self) -> list[str]:
        """``<prefix>_0`` ... ``<prefix>_{embedding_dim - 1}``: the coordinates of the embedding."""
        return [f"{self._label_prefix}_{i}" for i in range(self.get_config().embedding_dim)]

    def citations(self) -> list[str]:
        """BibTeX of the CLaSP paper (Suzuki et al. 2025) and of CGCNN (Xie & Grossman 2018)."""
        return [CLASP_BIBTEX, CGCNN_BIBTEX]

    def implementors(self) -> list[str]:
        """The authors of this featurizer."""
        return ["matminer-clasp developers"]

    def featurize(self, x: Any) -> list[float]:
        """Embed one item; raise the reason (:class:`~matminer_clasp.errors.ClaspError`) if bad."""
        out, errors = self._embed([x], fail_fast=True)
        if errors:
            raise next(iter(errors.values()))
        return out[0].tolist()

    def featurize_dataframe(
        self,
        df: pd.DataFrame,
        col_id: str | list[str],
        ignore_errors: bool = False,
        return_errors: bool = False,
        inplace: bool = False,
        multiindex: bool = False,
        pbar: bool | dict[str, Any] = True,
    ) -> pd.DataFrame | None:
        """As matminer's ``featurize_dataframe``; error messages also name the row's index label."""
        self._row_labels = df.index
        try:
            return super().featurize_dataframe(
                df, col_id, ignore_errors, return_errors, inplace, multiindex, pbar
            )
        finally:
            self._row_labels = None

    def featurize_many(
        self,
        entries: Any,
        ignore_errors: bool = False,
        return_errors: bool = False,
        pbar: bool | dict[str, Any] = True,
    ) -> list[list[Any]]:
        """Featurize many entries with one model call per ``batch_size`` rows.

        Parameters
        ----------
        entries
            A list, tuple, array, Series or DataFrame of items, or of 1-tuples of items (the
            shape matminer passes from ``featurize_dataframe``).
        ignore_errors
            Give a bad entry a row of NaN instead of raising.
        return_errors
            Append a last column holding the error traceback text (NaN for good rows), as
            matminer's ``featurize_wrapper`` does. Needs ``ignore_errors=True``.
        pbar
            Show a tqdm bar (a dict is passed to tqdm as keyword arguments).

        Returns
        -------
        list of list
            One row per entry, in input order.

        Raises
        ------
        InvalidStructureError, InvalidTextError
            For the first bad entry when ``ignore_errors=False``, naming its row and the reason.

        Notes
        -----
        With ``n_jobs > 1`` this is matminer's process pool calling :meth:`featurize` per entry
        (each worker process loads the model once; forked workers reuse the parent's). It is
        usually slower than the batched ``n_jobs=1`` path, which is the default.
        """
        if return_errors and not ignore_errors:
            raise ValueError("Please set ignore_errors to True to use return_errors.")
        if not isinstance(entries, tuple | list | np.ndarray | pd.Series | pd.DataFrame):
            raise TypeError(f"'entries' must be a list-like object, got {type(entries).__name__}")
        if len(entries) == 0:
            return []
        if self.n_jobs != 1:
            return self._featurize_in_pool(entries, ignore_errors, return_errors, pbar)
        items = _unpack(entries, type(self).__name__)
        bar = tqdm(
            total=len(items),
            desc=type(self).__name__,
            disable=not pbar,
            **(pbar if isinstance(pbar, dict) else {}),
        )
        try:
            out, errors = self._embed(items, fail_fast=not ignore_errors, progress=bar.update)
        finally:
            bar.close()
        if errors and not ignore_errors:
            ((i, exc),) = errors.items()
            raise _row_error(exc, self._describe_row(i, len(items))) from exc
        rows = out.tolist()
        if return_errors:
            for i, row in enumerate(rows):
                exc = errors.get(i)
                row.append(
                    float("nan") if exc is None else "".join(traceback.format_exception(exc))
                )
        return rows

    def _featurize_in_pool(
        self, entries: Any, ignore_errors: bool, return_errors: bool, pbar: Any
    ) -> list[list[Any]]:
        if isinstance(self.model, ClaspModel):
            raise ValueError(_instance_message(type(self).__name__, f"use n_jobs={self.n_jobs}"))
        if self._device().type != "cpu":
            raise ValueError(
                f"n_jobs={self.n_jobs} featurizes in CPU worker processes; with device "
                f"{self._device()} use n_jobs=1 (set_n_jobs(1)), which batches on the device"
            )
        self.get_model()  # loaded once here; forked workers find it in the model registry
        return super().featurize_many(entries, ignore_errors, return_errors, pbar)

    def _describe_row(self, i: int, n: int) -> str:
        labels = self._row_labels
        if labels is not None and len(labels) == n and not isinstance(labels, pd.RangeIndex):
            return f"row {i} (index {labels[i]!r})"
        return f"row {i}"

    # ------------------------------------------------------------------ batching
    def _embed(
        self,
        items: Sequence[Any],
        fail_fast: bool,
        progress: Callable[[int], Any] | None = None,
    ) -> tuple[np.ndarray, dict[int, BaseException]]:
        """Embed ``items``; return ``(n, dim)`` float32 (NaN rows for bad items) and the errors.

        With ``fail_fast`` the work stops at the first bad item (its error is the only one).
        """
        raise NotImplementedError


# ---------------------------------------------------------------------- helpers
def _instance_message(name: str, action: str) -> str:
    return (
        f"{name}(model=<ClaspModel instance>) cannot {action}: featurizers never serialise "
        "weights. Save the model with model.save_pretrained(folder) and pass model=folder "
        "(or a Hub id), or keep n_jobs=1 (set_n_jobs(1)) and do not pickle the featurizer"
    )


def _unpack(entries: Any, name: str) -> list[Any]:
    """One item per entry, accepting items or matminer's 1-tuples of column values."""
    if isinstance(entries, pd.DataFrame):
        entries = entries.values
    if isinstance(entries, pd.Series) or not isinstance(entries[0], tuple | list | np.ndarray):
        return list(entries)
    items = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, tuple | list | np.ndarray) or len(entry) != 1:
            raise TypeError(
                f"{name} featurizes one column; row {i} has "
                f"{len(entry) if hasattr(entry, '__len__') else 'no'} values (pass one col_id)"
            )
        items.append(entry[0])
    return items


def with_traceback(exc: BaseException, cause: BaseException | None = None) -> BaseException:
    """Raise and catch ``exc`` so it carries a traceback (matminer's error text shows one)."""
    if exc.__traceback__ is not None:
        return exc
    try:
        raise exc from cause
    except BaseException as raised:  # noqa: B036 - re-captured on purpose
        return raised


def _row_error(exc: BaseException, where: str) -> BaseException:
    """``exc`` with its row named, of the same type when possible (as matminer re-raises)."""
    message = f"{where}: {exc}{_SKIP_HINT}"
    if isinstance(exc, ClaspError | ValueError | TypeError | RuntimeError):
        try:
            return type(exc)(message)
        except Exception:
            pass
    return RuntimeError(message)


__all__ = ["CGCNN_BIBTEX", "CLASP_BIBTEX", "ClaspEmbeddingFeaturizer"]
