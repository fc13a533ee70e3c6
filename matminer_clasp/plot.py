"""Two-dimensional maps of the CLaSP embedding space: :func:`plot_embedding_map`.

Follow a map: structures or embeddings -> unit-norm ``(n, dim)`` array (the same input rules as
:func:`~matminer_clasp.screen`) -> UMAP, t-SNE or PCA to 2-D -> a scatter plot coloured by a
categorical label (legend) or by cosine similarity to a query text (colour bar).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from matminer_clasp.index import EmbeddingIndex
from matminer_clasp.inputs import check_embeddings, split_inputs
from matminer_clasp.model.registry import get_model, get_text_model

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

_METHODS = ("umap", "tsne", "pca")


def _pyplot() -> Any:
    import matplotlib

    headless = sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )
    if headless and not os.environ.get("MPLBACKEND"):
        matplotlib.use("Agg")  # no display: render to files only
    import matplotlib.pyplot as plt

    return plt


def reduce_to_2d(
    embeddings: np.ndarray, method: str = "umap", random_state: int = 0, **kwargs: Any
) -> np.ndarray:
    """Project unit-norm embeddings to 2-D with UMAP / t-SNE (cosine metric) or PCA.

    Raises
    ------
    ImportError
        For ``method="umap"`` without ``umap-learn`` installed (never silently replaced).
    ValueError
        For an unknown method or fewer than 3 points.
    """
    if method not in _METHODS:
        raise ValueError(f"method must be one of {_METHODS}, got {method!r}")
    n = len(embeddings)
    if n < 3:
        raise ValueError(f"an embedding map needs at least 3 points, got {n}")
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(n_components=2, random_state=random_state, **kwargs).fit_transform(embeddings)
    if method == "tsne":
        from sklearn.manifold import TSNE

        opts = {"metric": "cosine", "init": "pca", "perplexity": min(30.0, (n - 1) / 3)}
        opts.update(kwargs)
        return TSNE(n_components=2, random_state=random_state, **opts).fit_transform(embeddings)
    try:
        import umap
    except ImportError as exc:
        raise ImportError(
            "method='umap' needs the umap-learn package: pip install umap-learn (or "
            "matminer-clasp[plot]); or choose method='tsne' or method='pca'"
        ) from exc
    opts = {"metric": "cosine", "n_neighbors": min(15, n - 1)}
    opts.update(kwargs)
    return umap.UMAP(n_components=2, random_state=random_state, **opts).fit_transform(embeddings)


def plot_embedding_map(
    embeddings: Any,
    labels: Sequence[Any] | None = None,
    query: str | None = None,
    method: str = "umap",
    model: Any = None,
    ax: Axes | None = None,
    random_state: int = 0,
    title: str | None = None,
    **kwargs: Any,
) -> Figure:
    """Scatter plot of crystals in the CLaSP space, reduced to two dimensions.

    Parameters
    ----------
    embeddings
        Precomputed embeddings (array or ``clasp_*`` DataFrame), structures, or an
        :class:`EmbeddingIndex`.
    labels
        One category per point (e.g. crystal system): points coloured by category, with a
        legend. Mutually exclusive with ``query``.
    query
        A text: points coloured by their cosine similarity to it, with a colour bar.
    method
        ``"umap"`` (needs ``umap-learn``), ``"tsne"`` or ``"pca"``.
    model
        Model for the query text and for structures (``None`` = bundled default; for an index,
        the index's model).
    ax
        Axes to draw on; default: a new figure.
    random_state
        Seed of the reduction.
    title
        Axes title; default names the method (and query).
    **kwargs
        Passed to the reducer (``n_neighbors``, ``perplexity``, ...).

    Returns
    -------
    matplotlib.figure.Figure
        The figure holding the map.
    """
    if labels is not None and query is not None:
        raise ValueError("colour by labels or by query, not both")
    if isinstance(embeddings, EmbeddingIndex):
        model = embeddings.model if model is None else model
        emb = np.asarray(embeddings.embeddings, dtype=np.float32)
    else:
        arr, structures = split_inputs(embeddings)
        emb = arr if structures is None else get_model(model).encode_structures(structures)
    emb = check_embeddings(emb, None, "embeddings")
    if labels is not None and len(labels) != len(emb):
        raise ValueError(f"got {len(labels)} labels for {len(emb)} points")
    xy = reduce_to_2d(emb, method, random_state, **kwargs)

    plt = _pyplot()
    fig = ax.figure if ax is not None else plt.figure(figsize=(6.4, 5.2))
    ax = ax if ax is not None else fig.add_subplot()
    if query is not None:
        q = get_text_model(model).encode_texts([query])[0]
        if len(q) != emb.shape[1]:
            raise ValueError(
                f"the model embeds texts in {len(q)}-d but the points are {emb.shape[1]}-d"
            )
        score = emb @ q
        order = np.argsort(score)  # most similar drawn last, on top
        points = ax.scatter(xy[order, 0], xy[order, 1], c=score[order], cmap="viridis", s=12)
        fig.colorbar(points, ax=ax, label=f"cosine similarity to {query!r}")
    elif labels is not None:
        values = np.asarray([str(v) for v in labels])
        cats = list(dict.fromkeys(values))
        cmap = plt.get_cmap("tab10" if len(cats) <= 10 else "tab20")
        for i, cat in enumerate(cats):
            mask = values == cat
            ax.scatter(xy[mask, 0], xy[mask, 1], s=12, color=cmap(i % cmap.N), label=cat)
        ax.legend(title="label", fontsize="small", markerscale=1.5, loc="best")
    else:
        ax.scatter(xy[:, 0], xy[:, 1], s=12)
    ax.set_xlabel(f"{method.upper()} 1")
    ax.set_ylabel(f"{method.upper()} 2")
    default = f"CLaSP embedding map ({method})" + (f": {query}" if query else "")
    ax.set_title(title or default)
    return fig
