"""matminer featurizers: CLaSP embeddings of structures and of texts as DataFrame columns.

Follow a DataFrame: ``featurize_dataframe`` (matminer) -> :meth:`featurize_many` ->
``ClaspModel.encode_structures(..., errors="nan")`` (the one path from inputs to vectors; bad
rows come back as NaN plus their reason) or ``check_text`` + ``ClaspModel.encode_texts`` -> one
list of floats per row, in input order. The featurizers add matminer's conventions on top
(``ignore_errors``, ``return_errors``, the row named in the error).

The featurizers only know matminer's row and error conventions; tensors stay in
:class:`~matminer_clasp.ClaspModel` and pymatgen in :mod:`matminer_clasp.graph`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from matminer_clasp.errors import EncodingError, InvalidStructureError, InvalidTextError
from matminer_clasp.featurizer_base import ClaspEmbeddingFeaturizer, with_traceback
from matminer_clasp.graph import INFERENCE_MAX_SITES
from matminer_clasp.graph_pool import auto_workers
from matminer_clasp.model.text_model import check_text
from matminer_clasp.structures import check_structure, to_structure


class ClaspFeaturizer(ClaspEmbeddingFeaturizer):
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
        bound = max(INFERENCE_MAX_SITES, self.get_config().max_sites)
        try:
            check_structure(to_structure(structure)[0], bound)
        except Exception:  # noqa: BLE001 - any reason means "cannot be embedded"
            return False
        return True

    def _embed(
        self,
        items: Sequence[Any],
        fail_fast: bool,
        progress: Callable[[int], Any] | None = None,
    ) -> tuple[np.ndarray, dict[int, BaseException]]:
        model = self.get_model()
        size = max(int(self.batch_size), 1)
        # one call pipelines graph building across all batches; with fail_fast it raises at the
        # first bad item, whose position and own error the exception carries
        try:
            emb, report = model.encode_structures(
                _counted(items, progress), size, False, self._device(),
                self.normalize_embeddings, errors="raise" if fail_fast else "nan",
                return_report=True, graph_workers=auto_workers(len(items), size),
            )
        except (InvalidStructureError, EncodingError) as exc:
            if getattr(exc, "index", None) is None:
                raise
            return np.empty((0, 0), dtype=np.float32), {exc.index: with_traceback(exc.reason)}
        return emb, {k: with_traceback(e) for k, e in report.errors.items()}


def _counted(items: Sequence[Any], progress: Callable[[int], Any] | None) -> Iterator[Any]:
    """``items``, reporting each one taken to ``progress`` (the featurizer's progress bar)."""
    for item in items:
        yield item
        if progress is not None:
            progress(1)


#: The structure featurizer under its descriptive name.
ClaspStructureFeaturizer = ClaspFeaturizer


class ClaspTextFeaturizer(ClaspEmbeddingFeaturizer):
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
                    return np.empty((0, 0), dtype=np.float32), {i: with_traceback(exc)}
                errors[i] = with_traceback(exc)
            else:
                valid.append(i)
        model = self.get_model()
        out = np.full((len(items), model.config.embedding_dim), np.nan, dtype=np.float32)
        if valid:
            out[valid] = model.encode_texts(
                [items[i] for i in valid], max(int(self.batch_size), 1), False, self._device(),
                normalize_embeddings=self.normalize_embeddings,
            )
        for i in valid:
            if not np.isfinite(out[i]).all():
                errors[i] = with_traceback(
                    RuntimeError("the model produced NaN or infinite values for this input")
                )
        if progress is not None:
            progress(len(items))
        return out, errors


__all__ = ["ClaspFeaturizer", "ClaspStructureFeaturizer", "ClaspTextFeaturizer"]
