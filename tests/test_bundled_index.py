"""The AMCSD index shipped with the package is the one the shipped weights produce.

``matminer-clasp screen QUERY --amcsd`` answers from this index without parsing a CIF, so a
retrained or re-packaged model must ship a rebuilt index (``benchmarks/default_model/run.sh``
does: ``matminer-clasp index --amcsd --fp16 --out matminer_clasp/pretrained/amcsd-index``).
"""

from __future__ import annotations

import numpy as np
import pytest

from matminer_clasp.cli.corpus import BUNDLED_AMCSD_INDEX, bundled_amcsd_index, model_hash
from matminer_clasp.index import EmbeddingIndex


@pytest.fixture(scope="module")
def shipped() -> EmbeddingIndex:
    return EmbeddingIndex.load(BUNDLED_AMCSD_INDEX, mmap=False)


def test_shipped_index_records_the_shipped_models_hash(shipped):
    assert shipped.model_hash == model_hash(None)
    assert bundled_amcsd_index(model_hash(None)) is not None
    assert bundled_amcsd_index("0" * 16) is None  # another model never gets it


def test_shipped_index_is_complete_and_well_formed(shipped):
    emb = np.asarray(shipped.embeddings, dtype=np.float32)
    assert shipped.dtype == "float16" and emb.shape == (9274, 768)
    assert np.isfinite(emb).all()
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=2e-3)
    meta = shipped.metadata
    assert meta["id"].is_unique and meta["id"].str.fullmatch(r"amcsd-\d+").all()
    assert {"formula", "mineral", "title"} <= set(meta.columns)
    assert [i for i, _ in shipped.skipped] == ["amcsd-19001"]  # the one malformed CIF


def test_shipped_vectors_are_what_the_shipped_weights_give(shipped):
    """Re-embed real AMCSD entries from larixite's database and compare with the shipped rows."""
    from matminer_clasp.model.registry import get_model
    from matminer_clasp.train.data import load_amcsd_records

    records = load_amcsd_records(max_items=48, n_jobs=1)
    records = records[records["structure"].notna()]
    rows = shipped.metadata.reset_index().set_index("id").loc[list(records["id"]), "index"]
    assert len(rows) >= 40
    fresh = get_model(None).encode_structures(list(records["structure"]), batch_size=16)
    stored = np.asarray(shipped.embeddings[rows.to_numpy()], dtype=np.float32)
    cos = np.sum(fresh * stored, axis=1)
    assert cos.min() > 0.9995, f"shipped index out of step with the weights: min cos {cos.min()}"


def test_default_ivf_settings_keep_text_query_recall_on_real_embeddings(shipped):
    """The IVF defaults (nlist ~ 4 sqrt(n), nprobe 32) were chosen for text queries; check them
    on the real AMCSD embeddings with the model's own text vectors (the hard, cross-modal case)."""
    pytest.importorskip("faiss")
    import faiss

    from matminer_clasp.model.registry import get_text_model
    from matminer_clasp.train.keywords import DEFAULT_KEYWORDS

    faiss.omp_set_num_threads(1)
    minerals = shipped.metadata["mineral"].dropna().unique()[::40].tolist()
    q = get_text_model(None).encode_texts(list(DEFAULT_KEYWORDS) + minerals)
    ix = EmbeddingIndex(np.asarray(shipped.embeddings, dtype=np.float32))
    _, exact = ix.topk(q, 10)
    _, approx = ix.topk(q, 10, backend="faiss", faiss_index="ivf")
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(approx, exact)])
    assert len(q) >= 40 and recall >= 0.95, recall
