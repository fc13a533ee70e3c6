"""One-call screening: rank any corpus of crystals against text queries with :func:`screen`.

A corpus of structures is embedded once through ``ClaspModel.encode_structures`` into an
:class:`~matminer_clasp.index.EmbeddingIndex` (structures that cannot be embedded are skipped,
warned about and listed), then searched; an index or embeddings are searched directly.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import pandas as pd

from matminer_clasp.errors import InvalidStructureError
from matminer_clasp.index import EmbeddingIndex, _metadata_frame
from matminer_clasp.inputs import CLASP_COLUMN, split_inputs


def screen(
    query: str | Sequence[str],
    corpus: Any,
    top_k: int = 10,
    model: Any = None,
    ids: Sequence[Any] | None = None,
    batch_size: int = 64,
    show_progress_bar: bool = False,
    errors: str = "skip",
) -> pd.DataFrame:
    """Rank a corpus of crystals against one or several text queries.

    Parameters
    ----------
    query
        A text (``"ferroelectric perovskite"``) or a list of texts (adds a ``query`` column).
    corpus
        Structures (list / Series), a DataFrame with a ``structure`` column (optional ``id``,
        ``formula`` and extra columns) or ``clasp_*`` embedding columns, a 2-D embedding array,
        or an :class:`EmbeddingIndex`.
    top_k
        Rows per query.
    model
        Model for the texts (and for embedding structures): ``None`` = bundled default.
    ids
        Ids of the corpus rows (default: the ``id`` column, else ``0..n-1``).
    batch_size, show_progress_bar
        Used when the corpus holds structures that must be embedded first.
    errors
        ``"skip"`` (default): structures that cannot be embedded are left out with a warning
        and listed, with their reasons, in ``result.attrs["skipped"]``; ``"raise"``: the first
        one raises :class:`~matminer_clasp.errors.InvalidStructureError`.

    Returns
    -------
    pandas.DataFrame
        ``id``, ``formula``, ``score`` (cosine), ``rank``, sorted best first.
    """
    if isinstance(corpus, EmbeddingIndex):
        index = corpus
        if model is not None:
            index = EmbeddingIndex(
                index.embeddings, index.metadata, model, index.dtype, _normalized=True
            )
        return index.search(query, top_k)
    meta = None
    if isinstance(corpus, pd.DataFrame):
        extra = [
            c for c in corpus.columns if c != "structure" and not CLASP_COLUMN.fullmatch(str(c))
        ]
        meta = corpus[extra].reset_index(drop=True)
        if ids is None and "id" in meta.columns:
            ids = list(meta["id"])
    emb, structures = split_inputs(corpus)
    n = len(structures) if structures is not None else len(emb)
    ids = list(range(n)) if ids is None else list(ids)
    if structures is not None:
        index = EmbeddingIndex.build(
            structures, ids, meta, model, batch_size, show_progress_bar, errors=errors
        )
        if index.skipped:
            first = ", ".join(repr(i) for i, _ in index.skipped[:3])
            warnings.warn(
                f"screen: {len(index.skipped)} of {n} structures could not be embedded and are "
                f"not ranked (first: {first}; reasons in result.attrs['skipped'])",
                stacklevel=2,
            )
        if not len(index):
            raise InvalidStructureError(
                f"none of the {n} structures could be embedded; first: {index.skipped[0][1]}"
            )
        result = index.search(query, top_k)
        result.attrs["skipped"] = index.skipped
        return result
    else:
        index = EmbeddingIndex(emb, _metadata_frame(None, ids, meta), model=model)
    return index.search(query, top_k)
