from __future__ import annotations

import numpy as np
import pytest

from matminer_clasp.index import EmbeddingIndex
from matminer_clasp.plot import plot_embedding_map, reduce_to_2d


@pytest.fixture
def points(rng):
    # two well separated clouds on the 32-d sphere
    centres = np.eye(32)[:2] * 4
    x = np.concatenate([rng.normal(size=(20, 32)) + c for c in centres])
    return x / np.linalg.norm(x, axis=1, keepdims=True), ["A"] * 20 + ["B"] * 20


def test_pca_map_with_labels_has_legend(points, tmp_path):
    from matplotlib.figure import Figure

    emb, labels = points
    fig = plot_embedding_map(emb, labels=labels, method="pca")
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["A", "B"]
    offsets = [c.get_offsets() for c in ax.collections]
    assert [len(o) for o in offsets] == [20, 20]
    # PCA separates the two clouds along its first axis
    assert np.sign(offsets[0][:, 0].mean()) != np.sign(offsets[1][:, 0].mean())
    fig.savefig(tmp_path / "map.png")
    assert (tmp_path / "map.png").stat().st_size > 1000


def test_tsne_map(points):
    emb, labels = points
    fig = plot_embedding_map(emb, labels=labels, method="tsne", perplexity=5)
    assert len(fig.axes[0].collections) == 2


def test_query_colours_by_cosine(tiny_model, structures, tiny_model_dir):
    items = list(structures.values())
    index = EmbeddingIndex.build(items, model=str(tiny_model_dir), show_progress_bar=False)
    fig = plot_embedding_map(index, query="garnet", method="pca")
    ax, cbar_ax = fig.axes
    assert "garnet" in cbar_ax.get_ylabel()
    colours = np.sort(ax.collections[0].get_array())
    expected = np.sort(tiny_model.encode_structures(items) @ tiny_model.encode_texts("garnet")[0])
    np.testing.assert_allclose(colours, expected, atol=1e-5)
    # structures are embedded with the given model
    fig2 = plot_embedding_map(items, query="garnet", method="pca", model=tiny_model)
    np.testing.assert_allclose(np.sort(fig2.axes[0].collections[0].get_array()), expected,
                               atol=1e-5)


def test_existing_axes_and_errors(points):
    import matplotlib.pyplot as plt

    emb, labels = points
    fig, ax = plt.subplots()
    assert plot_embedding_map(emb, method="pca", ax=ax) is fig
    with pytest.raises(ValueError, match="method"):
        plot_embedding_map(emb, method="mds")
    with pytest.raises(ValueError, match="not both"):
        plot_embedding_map(emb, labels=labels, query="x", method="pca")
    with pytest.raises(ValueError, match="3 labels for 40"):
        plot_embedding_map(emb, labels=["a", "b", "c"], method="pca")
    with pytest.raises(ValueError, match="at least 3"):
        reduce_to_2d(emb[:2], "pca")
    plt.close("all")


def test_umap_missing_is_a_clear_import_error(points, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "umap", None)  # simulate umap-learn not installed
    with pytest.raises(ImportError, match="pip install umap-learn"):
        plot_embedding_map(points[0], method="umap")


@pytest.mark.slow  # umap-learn's numba compilation takes about a minute on first use
def test_umap_map(points):
    fig = plot_embedding_map(points[0], labels=points[1], method="umap")
    assert len(fig.axes[0].collections) == 2
