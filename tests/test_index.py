from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure

from matminer_clasp.errors import InvalidStructureError
from matminer_clasp.index import EmbeddingIndex
from matminer_clasp.screening import screen
from matminer_clasp.search import exact_topk

IDS = ["rs", "dia", "hex", "tri", "dis"]


def unit(rng, n, d=32):
    x = rng.normal(size=(n, d)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def items(structures):
    return list(structures.values())


@pytest.fixture(scope="module")
def index(items, tiny_model_dir):
    return EmbeddingIndex.build(items, ids=IDS, model=str(tiny_model_dir), show_progress_bar=False)


def test_build_and_search_text(index, items, tiny_model):
    assert len(index) == 5 and index.dim == 32
    emb = tiny_model.encode_structures(items)
    np.testing.assert_allclose(index.embeddings, emb, atol=1e-6)
    q = tiny_model.encode_texts("garnet")[0]
    cos = emb @ q
    res = index.search("garnet", top_k=3)
    assert list(res.columns) == ["id", "formula", "score", "rank"]
    assert res["rank"].tolist() == [1, 2, 3]
    assert res["id"].tolist() == [IDS[i] for i in np.argsort(-cos)[:3]]
    np.testing.assert_allclose(res["score"], np.sort(cos)[::-1][:3], atol=1e-5)
    assert res["formula"].iloc[0] == items[IDS.index(res["id"].iloc[0])].composition.reduced_formula
    many = index.search(["garnet", "perovskite oxide"], top_k=2)
    assert many["query"].tolist() == ["garnet", "garnet", "perovskite oxide", "perovskite oxide"]
    pd.testing.assert_frame_equal(many.iloc[:2, 1:].reset_index(drop=True), res.iloc[:2])


def test_screen_same_ranking_over_every_corpus_type(index, items, tiny_model_dir, tiny_model):
    emb = tiny_model.encode_structures(items)
    cols = pd.DataFrame(emb, columns=[f"clasp_{i}" for i in range(32)])
    cols.insert(0, "id", IDS)
    corpora = {
        "structures": (items, IDS),
        "series": (pd.Series(items), IDS),
        "frame": (pd.DataFrame({"id": IDS, "structure": items}), None),
        "clasp_columns": (cols, None),
        "array": (emb, IDS),
        "index": (index, None),
    }
    ranking = None
    for name, (corpus, ids) in corpora.items():
        res = screen("ferroelectric", corpus, top_k=5, model=str(tiny_model_dir), ids=ids)
        assert res["rank"].tolist() == [1, 2, 3, 4, 5], name
        if ranking is None:
            ranking = res
        assert res["id"].tolist() == ranking["id"].tolist(), name
        np.testing.assert_allclose(res["score"], ranking["score"], atol=1e-5, err_msg=name)
        assert res["score"].is_monotonic_decreasing
    res = screen(["garnet", "spinel"], items, top_k=2, model=tiny_model)
    assert list(res.columns[:2]) == ["query", "id"] and len(res) == 4


def test_save_load_mmap_and_fp16(index, tmp_path):
    index.save(tmp_path / "ix")
    info = (tmp_path / "ix" / "index.json").read_text()
    assert '"count": 5' in info and '"dim": 32' in info
    loaded = EmbeddingIndex.load(tmp_path / "ix")
    assert isinstance(loaded.embeddings, np.memmap)
    pd.testing.assert_frame_equal(loaded.search("garnet", 5), index.search("garnet", 5))
    in_ram = EmbeddingIndex.load(tmp_path / "ix", mmap=False)
    assert not isinstance(in_ram.embeddings, np.memmap)

    half = EmbeddingIndex(index.embeddings, index.metadata, model=index.model, dtype="float16")
    half.save(tmp_path / "half")
    half = EmbeddingIndex.load(tmp_path / "half")
    assert half.embeddings.dtype == np.float16
    assert (tmp_path / "half" / "embeddings.npy").stat().st_size < (
        tmp_path / "ix" / "embeddings.npy"
    ).stat().st_size
    a, b = index.search("garnet", 5), half.search("garnet", 5)
    np.testing.assert_allclose(
        a.set_index("id")["score"], b.set_index("id").loc[a["id"], "score"], atol=1e-3
    )
    with pytest.raises(FileNotFoundError, match="not an embedding index"):
        EmbeddingIndex.load(tmp_path)


def test_add_and_remove_without_reembedding(items, tiny_model_dir, rng):
    full = EmbeddingIndex.build(items, ids=IDS, model=str(tiny_model_dir), show_progress_bar=False)
    part = EmbeddingIndex.build(items[:3], ids=IDS[:3], model=str(tiny_model_dir),
                                show_progress_bar=False)
    part.add(items[3:], ids=IDS[3:], metadata=pd.DataFrame({"title": ["t3", "t4"]}))
    np.testing.assert_allclose(part.embeddings, full.embeddings, atol=1e-6)
    assert part.metadata["id"].tolist() == IDS
    assert part.metadata["title"].iloc[3:].tolist() == ["t3", "t4"]
    extra = unit(rng, 2)
    part.add(extra, ids=["x1", "x2"])
    assert len(part) == 7
    top = part.search(extra[1], top_k=1)
    assert top["id"].iloc[0] == "x2" and top["score"].iloc[0] == pytest.approx(1.0, abs=1e-5)
    part.remove(["x2", "rs"])
    assert len(part) == 5 and "x2" not in set(part.search(extra[1], top_k=5)["id"])
    with pytest.raises(KeyError, match="nope"):
        part.remove(["nope"])
    with pytest.raises(ValueError, match="already in the index"):
        part.add(extra[:1], ids=["x1"])
    with pytest.raises(ValueError, match="non-integer ids"):
        part.add(extra[:1])
    numeric = EmbeddingIndex(unit(rng, 3))
    numeric.add(unit(rng, 2))
    assert numeric.metadata["id"].tolist() == [0, 1, 2, 3, 4]


def test_bad_structures_named_by_id(items, tiny_model_dir):
    broken = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0, 0, np.nan]])
    with pytest.raises(InvalidStructureError, match="'bad'.*NaN"):
        EmbeddingIndex.build([items[0], broken], ids=["ok", "bad"], model=str(tiny_model_dir),
                             show_progress_bar=False, errors="raise")
    # skipping (and reporting) is the default for a corpus
    index = EmbeddingIndex.build([items[0], broken, items[1]], ids=["a", "bad", "b"],
                                 model=str(tiny_model_dir), show_progress_bar=False)
    assert index.metadata["id"].tolist() == ["a", "b"]
    assert index.skipped[0][0] == "bad" and "NaN" in index.skipped[0][1]


def test_bad_queries_and_corpora(index, rng):
    with pytest.raises(ValueError, match="query embeddings has 5 features"):
        index.search(unit(rng, 1, 5), top_k=2)
    with pytest.raises(ValueError, match=r"rows \[1\]"):
        EmbeddingIndex(np.array([[1.0, 0.0], [np.nan, 1.0]]))
    with pytest.raises(ValueError, match="duplicate ids"):
        EmbeddingIndex(unit(rng, 2), pd.DataFrame({"id": ["a", "a"]}))
    with pytest.raises(ValueError, match="backend"):
        index.topk(unit(rng, 1), backend="annoy")


def test_exact_topk_chunked_matches_brute_force(rng):
    corpus, q = unit(rng, 1000), unit(rng, 7)
    sims = q @ corpus.T
    for chunk in (7, 64, 5000):
        for k in (1, 10, 30):
            s, p = exact_topk(corpus, q, k, chunk)
            np.testing.assert_array_equal(p, np.argsort(-sims, axis=1, kind="stable")[:, :k])
            np.testing.assert_allclose(s, np.take_along_axis(sims, p, 1), rtol=1e-6)
    ix = EmbeddingIndex(corpus)
    s, p = ix.topk(q, top_k=5000)
    assert s.shape == (7, 1000)  # top_k larger than the corpus gives the whole corpus


def test_faiss_flat_equals_numpy_exact(rng):
    pytest.importorskip("faiss")
    ix = EmbeddingIndex(unit(rng, 3000))
    q = unit(rng, 20)
    s_np, p_np = ix.topk(q, 10)
    s_f, p_f = ix.topk(q, 10, backend="faiss", faiss_index="flat")
    np.testing.assert_array_equal(p_f, p_np)
    np.testing.assert_allclose(s_f, s_np, atol=1e-5)
    half = EmbeddingIndex(ix.embeddings, dtype="float16")
    s_h, p_h = half.topk(q, 10, backend="faiss")
    np.testing.assert_allclose(s_h[:, 0], s_np[:, 0], atol=1e-3)
    res = ix.search(q[0], top_k=3, backend="faiss")
    assert res["id"].tolist() == p_np[0, :3].tolist()


@pytest.mark.slow
def test_faiss_hnsw_and_ivf_recall(rng):
    pytest.importorskip("faiss")
    import faiss

    faiss.omp_set_num_threads(1)
    ix = EmbeddingIndex(unit(rng, 20_000))
    q = unit(rng, 200)
    _, exact = ix.topk(q, 10)

    def recall(p):
        return np.mean([len(set(a) & set(b)) / 10 for a, b in zip(p, exact)])

    _, p_hnsw = ix.topk(q, 10, backend="faiss", faiss_index="hnsw")
    assert recall(p_hnsw) >= 0.95
    _, p_ivf = ix.topk(q, 10, backend="faiss", faiss_index="ivf", nprobe=64)
    # random directions in 32-d have no cluster structure: the hardest case for IVF
    assert recall(p_ivf) >= 0.75
