"""matminer featurizers: CLaSP embeddings of structures and of texts as DataFrame columns.

Follow a DataFrame: ``featurize_dataframe`` (matminer) -> :meth:`featurize_many` (here: rows in
chunks of ``batch_size``) -> ``ClaspModel.build_graphs`` / ``check_text`` (bad rows become NaN
plus a recorded error) -> one ``ClaspModel.encode_graphs`` / ``encode_texts`` call per chunk ->
one list of floats per row, in input order.

The featurizers only know matminer's row and error conventions; tensors stay in
:class:`~matminer_clasp.ClaspModel` and pymatgen in :mod:`matminer_clasp.graph`.
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
from matminer_clasp.errors import ClaspError, InvalidTextError
from matminer_clasp.graph import CrystalGraphBuilder
from matminer_clasp.model import registry as model_registry
from matminer_clasp.model.clasp import ClaspModel, check_text

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


class _ClaspEmbedding(BaseFeaturizer):
    """Shared machinery: lazy model loading, pickling without weights, batched featurize_many."""

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
        """The current model's config and graph builder (never the model: see :meth:`get_model`)."""
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

    def __copy__(self) -> _ClaspEmbedding:
        new = type(self).__new__(type(self))
        new.__dict__.update(self.__dict__)
        new._cache = dict(self._cache)
        return new

    def __deepcopy__(self, memo: dict[int, Any]) -> _ClaspEmbedding:
        # in-process copy: a ClaspModel instance is copied too; a model loaded by name is shared
        new = type(self).__new__(type(self))
        memo[id(self)] = new
        state = {k: v for k, v in self.__dict__.items() if k != "_cache"}
        new.__dict__.update(copy.deepcopy(state, memo))
        new._cache = {}
        return new

    # ------------------------------------------------------------------ matminer API
    def fit(self, X: Any, y: Any = None, **fit_kwargs: Any) -> _ClaspEmbedding:
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

    def _encode_checked(
        self,
        encode: Callable[[list[Any]], np.ndarray],
        inputs: list[Any],
        rows: list[int],
        out: np.ndarray,
        errors: dict[int, BaseException],
    ) -> None:
        """Encode ``inputs`` in one call into ``out[rows]``; on failure retry one by one.

        A row whose embedding is not finite, or whose single-item call fails, gets an error.
        """
        try:
            emb = encode(inputs)
        except Exception:  # find the input that breaks the batch; the others keep their rows
            emb = np.full((len(inputs), out.shape[1]), np.nan, dtype=np.float32)
            for k, single in enumerate(inputs):
                try:
                    emb[k] = encode([single])[0]
                except Exception as exc:
                    errors[rows[k]] = _with_traceback(
                        RuntimeError(
                            f"the model failed on this input: {type(exc).__name__}: {exc}"
                        ),
                        exc,
                    )
        for k, row in enumerate(rows):
            if row in errors:
                continue
            if not np.isfinite(emb[k]).all():
                errors[row] = _with_traceback(
                    RuntimeError("the model produced NaN or infinite values for this input")
                )
            else:
                out[row] = emb[k]


class ClaspFeaturizer(_ClaspEmbedding):
    """CLaSP crystal embedding of a pymatgen ``Structure`` (768 unit-norm coordinates).

    The crystal tower of CLaSP (Suzuki et al. 2025): a CGCNN (Xie & Grossman 2018) graph network
    on the cell the model's config names (conventional for official weights, as given for the
    bundled model), 12 neighbours within 8 angstrom, trained contrastively against
    paper titles and keywords so that its vectors share one space with
    :class:`ClaspTextFeaturizer` (cosine similarity = structure-text relevance).

    Features
    --------
    clasp_0 ... clasp_767
        Coordinates of the L2-normalised embedding (``embedding_dim`` of them for other models).
        They have no individual meaning; use them as a whole (regression inputs, cosine
        similarity, clustering).

    Parameters
    ----------
    model
        ``None`` for the bundled default model, a folder made by ``save_pretrained``, a Hub id
        (``"org/name"``), or a :class:`~matminer_clasp.ClaspModel` instance. Names are loaded
        lazily on first use and kept in this process; an instance is used as is (and moved to
        ``device`` if one is given).
    device
        ``"cpu"``, ``"cuda"``, ...; default: CUDA when available (for an instance: where it is).
    batch_size
        Rows per forward pass in :meth:`featurize_many`; results do not depend on it.
    normalize_embeddings
        Unit-norm vectors (the CLaSP space); ``False`` gives the raw head output.
    revision, cache_dir, local_files_only
        Passed to the Hub resolution of a model id.

    Notes
    -----
    ``featurize_many`` / ``featurize_dataframe`` run batched in this process (``n_jobs=1``, the
    default). With ``set_n_jobs(k > 1)`` matminer's process pool is used instead, one row at a
    time: forked workers (Linux) reuse the model already loaded here, spawned ones (macOS,
    Windows) load it once per pool task. The featurizer pickles without weights, so a
    featurizer given a ``ClaspModel`` *instance* cannot be pickled or used with ``n_jobs > 1``:
    the instance may hold unsaved weights, and copying them silently into every task would be
    slow; save it with ``model.save_pretrained(folder)`` and pass ``model=folder`` instead.

    Examples
    --------
    >>> from matminer_clasp import ClaspFeaturizer             # doctest: +SKIP
    >>> featurizer = ClaspFeaturizer()                          # doctest: +SKIP
    >>> df = featurizer.featurize_dataframe(df, "structure", ignore_errors=True)  # doctest: +SKIP
    """

    _label_prefix = "clasp"

    def precheck(self, structure: Any) -> bool:
        """Fast test that ``structure`` can be embedded (type, size, finite, known elements).

        Reads only the model's ``config.json``; no weights are loaded.
        """
        cache = self._cached()
        if "builder" not in cache:
            cache["builder"] = CrystalGraphBuilder(self.get_config())
        try:
            cache["builder"].validate(structure)
        except Exception:
            return False
        return True

    def _embed(
        self,
        items: Sequence[Any],
        fail_fast: bool,
        progress: Callable[[int], Any] | None = None,
    ) -> tuple[np.ndarray, dict[int, BaseException]]:
        model = self.get_model()
        device = self._device()
        out = np.full((len(items), model.config.embedding_dim), np.nan, dtype=np.float32)
        errors: dict[int, BaseException] = {}

        def encode(graphs: list[Any]) -> np.ndarray:
            return model.encode_graphs(graphs, len(graphs), device, self.normalize_embeddings)

        for start in range(0, len(items), max(int(self.batch_size), 1)):
            chunk = list(items[start : start + max(int(self.batch_size), 1)])
            graphs, rows = [], []
            for k, built in enumerate(model.build_graphs(chunk, ignore_errors=True)):
                if isinstance(built, BaseException):
                    errors[start + k] = built
                    if fail_fast:
                        return out, {start + k: built}
                else:
                    graphs.append(built)
                    rows.append(start + k)
            if graphs:
                self._encode_checked(encode, graphs, rows, out, errors)
            if fail_fast and errors:
                first = min(errors)
                return out, {first: errors[first]}
            if progress is not None:
                progress(len(chunk))
        return out, errors


#: The structure featurizer under its descriptive name.
ClaspStructureFeaturizer = ClaspFeaturizer


class ClaspTextFeaturizer(_ClaspEmbedding):
    """CLaSP text embedding of a string (title, keywords, description), 768 unit-norm coordinates.

    The text tower of CLaSP (Suzuki et al. 2025): a frozen BERT-family encoder and a projection
    head into the space shared with :class:`ClaspFeaturizer`, so the cosine between a text row
    and a structure row measures how well the text describes the structure.

    Features
    --------
    clasp_text_0 ... clasp_text_767
        Coordinates of the L2-normalised text embedding (``embedding_dim`` of them).

    Parameters
    ----------
    model, device, batch_size, normalize_embeddings, revision, cache_dir, local_files_only
        As for :class:`ClaspFeaturizer`. Texts are sorted by length before batching (less
        padding) and returned in input order; texts longer than the model's ``max_length``
        tokens are truncated.

    Notes
    -----
    A non-string, empty or whitespace-only text is a bad row
    (:class:`~matminer_clasp.errors.InvalidTextError`): NaN with ``ignore_errors=True``.
    Pickling and ``n_jobs`` behave as for :class:`ClaspFeaturizer`.
    """

    _label_prefix = "clasp_text"

    def precheck(self, text: Any) -> bool:
        """True for a non-blank string."""
        return isinstance(text, str) and bool(text.strip())

    def _embed(
        self,
        items: Sequence[Any],
        fail_fast: bool,
        progress: Callable[[int], Any] | None = None,
    ) -> tuple[np.ndarray, dict[int, BaseException]]:
        errors: dict[int, BaseException] = {}
        valid = []
        for i, text in enumerate(items):
            try:
                check_text(text)
            except InvalidTextError as exc:
                if fail_fast:
                    return np.empty((0, 0), dtype=np.float32), {i: _with_traceback(exc)}
                errors[i] = _with_traceback(exc)
            else:
                valid.append(i)
        model = self.get_model()
        device = self._device()
        out = np.full((len(items), model.config.embedding_dim), np.nan, dtype=np.float32)

        def encode(texts: list[str]) -> np.ndarray:
            return model.encode_texts(
                texts, len(texts), False, device, normalize_embeddings=self.normalize_embeddings
            )

        if progress is not None:
            progress(len(items) - len(valid))
        valid.sort(key=lambda i: -len(items[i]))  # stable: equal lengths keep input order
        size = max(int(self.batch_size), 1)
        for start in range(0, len(valid), size):
            rows = valid[start : start + size]
            self._encode_checked(encode, [items[i] for i in rows], rows, out, errors)
            if fail_fast and errors:
                first = min(errors)
                return out, {first: errors[first]}
            if progress is not None:
                progress(len(rows))
        return out, errors


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


def _with_traceback(exc: BaseException, cause: BaseException | None = None) -> BaseException:
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


__all__ = ["ClaspFeaturizer", "ClaspStructureFeaturizer", "ClaspTextFeaturizer"]
