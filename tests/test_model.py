"""ClaspModel.encode_structures / encode_texts: shapes, determinism, pooling, freezing, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pymatgen.core import Molecule
from transformers import BertModel

from matminer_clasp.errors import InvalidStructureError, InvalidTextError
from matminer_clasp.model import ClaspModel
from tests.conftest import make_tiny_bert, make_tiny_model, make_tokenizer, tiny_config

TEXTS = ["ferroelectric perovskite", "garnet", "high pressure structure of the spinel oxide",
         "mineral", "crystal structure of a ferroelectric oxide"]


@pytest.fixture(scope="module")
def struct_list(structures):
    return [structures[n] for n in ["rocksalt", "diamond", "hexagonal", "triclinic", "disordered"]]


# ---------------------------------------------------------------- structures
def test_encode_structures_shape_dtype_norm(tiny_model, struct_list):
    emb = tiny_model.encode_structures(struct_list)
    assert emb.shape == (5, tiny_model.config.embedding_dim)
    assert emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert np.isfinite(emb).all()
    # different crystals give different vectors
    assert np.abs(emb[0] - emb[1]).max() > 1e-3


def test_encode_structures_independent_of_batch_size_and_order(tiny_model, struct_list):
    ref = tiny_model.encode_structures(struct_list, batch_size=64)
    for bs in (1, 2, 3):
        np.testing.assert_allclose(
            tiny_model.encode_structures(struct_list, batch_size=bs), ref, atol=1e-5
        )
    perm = [3, 0, 4, 2, 1]
    shuffled = tiny_model.encode_structures([struct_list[i] for i in perm], batch_size=2)
    np.testing.assert_allclose(shuffled, ref[perm], atol=1e-5)
    # a generator is accepted
    np.testing.assert_allclose(
        tiny_model.encode_structures(s for s in struct_list), ref, atol=1e-5
    )


def test_single_structure_is_one_row(tiny_model, struct_list):
    one = tiny_model.encode_structures(struct_list[3])
    np.testing.assert_allclose(one, tiny_model.encode_structures(struct_list[3:4]), atol=1e-6)
    assert one.shape == (1, tiny_model.config.embedding_dim)


def test_encode_structures_empty_input(tiny_model):
    out = tiny_model.encode_structures([])
    assert out.shape == (0, tiny_model.config.embedding_dim) and out.dtype == np.float32


def test_unnormalized_structure_embeddings(tiny_model, struct_list):
    raw = tiny_model.encode_structures(struct_list, normalize_embeddings=False)
    unit = tiny_model.encode_structures(struct_list)
    norms = np.linalg.norm(raw, axis=1)
    assert not np.allclose(norms, 1.0, atol=1e-3)
    np.testing.assert_allclose(raw / norms[:, None], unit, atol=1e-5)


def test_encode_does_not_leave_model_in_train_mode(tiny_model, struct_list):
    tiny_model.train()
    try:
        a = tiny_model.encode_structures(struct_list[:2])
        assert tiny_model.training  # restored
        b = tiny_model.encode_structures(struct_list[:2])
        np.testing.assert_allclose(a, b, atol=1e-6)  # eval statistics each time
    finally:
        tiny_model.eval()


def test_bad_structure_in_later_chunk_names_its_index(tiny_model, struct_list):
    items = struct_list + struct_list[:2]  # 7 items
    items[5] = Molecule(["H", "H"], [[0, 0, 0], [0, 0, 0.74]])
    with pytest.raises(InvalidStructureError, match=r"^structure 5: .*Molecule"):
        tiny_model.encode_structures(items, batch_size=2)
    items[5] = None
    with pytest.raises(InvalidStructureError, match=r"^structure 5: .*None"):
        tiny_model.encode_structures(items, batch_size=2)
    items[5] = struct_list[0]
    items[0] = "not a structure"
    with pytest.raises(InvalidStructureError, match=r"^structure 0: "):
        tiny_model.encode_structures(items, batch_size=2)


def test_build_graphs_ignore_errors(tiny_model, struct_list):
    graphs = tiny_model.build_graphs([struct_list[0], None, struct_list[1]], ignore_errors=True)
    assert isinstance(graphs[1], InvalidStructureError)
    emb = tiny_model.encode_graphs([graphs[0], graphs[2]])
    np.testing.assert_allclose(emb, tiny_model.encode_structures([struct_list[0], struct_list[1]]),
                               atol=1e-6)


# ---------------------------------------------------------------- texts
def test_encode_texts_shape_dtype_norm(tiny_model):
    emb = tiny_model.encode_texts(TEXTS)
    assert emb.shape == (len(TEXTS), tiny_model.config.embedding_dim)
    assert emb.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    assert tiny_model.encode_texts("garnet").shape == (1, tiny_model.config.embedding_dim)
    assert tiny_model.encode_texts([]).shape == (0, tiny_model.config.embedding_dim)


def test_tokenizer_reads_the_vocabulary_and_texts_differ(tiny_model):
    tokens = tiny_model.tokenizer.tokenize("Ferroelectric garnet")
    assert tokens == ["ferro", "##electric", "garnet"]
    emb = tiny_model.encode_texts(["garnet", "spinel"])
    assert np.abs(emb[0] - emb[1]).max() > 1e-3


def test_encode_texts_independent_of_batch_size_and_order(tiny_model):
    ref = tiny_model.encode_texts(TEXTS, batch_size=64)
    one_by_one = np.concatenate([tiny_model.encode_texts([t]) for t in TEXTS])
    np.testing.assert_allclose(one_by_one, ref, atol=1e-5)  # padding does not leak in
    for bs in (1, 2):
        np.testing.assert_allclose(tiny_model.encode_texts(TEXTS, batch_size=bs), ref, atol=1e-5)
    perm = [4, 2, 0, 1, 3]
    np.testing.assert_allclose(
        tiny_model.encode_texts([TEXTS[i] for i in perm], batch_size=2), ref[perm], atol=1e-5
    )


def test_unnormalized_text_embeddings(tiny_model):
    raw = tiny_model.encode_texts(TEXTS, normalize_embeddings=False)
    norms = np.linalg.norm(raw, axis=1)
    assert not np.allclose(norms, 1.0, atol=1e-3)
    np.testing.assert_allclose(raw / norms[:, None], tiny_model.encode_texts(TEXTS), atol=1e-5)


@pytest.mark.parametrize("bad, index, pattern", [
    (["garnet", ""], 1, "empty"),
    (["garnet", "spinel", "   \n\t"], 2, "whitespace"),
    ([None, "garnet"], 0, "NoneType"),
    (["garnet", 3], 1, "int"),
    (["garnet", b"spinel"], 1, "bytes"),
])
def test_bad_texts_name_their_index(tiny_model, bad, index, pattern):
    with pytest.raises(InvalidTextError, match=rf"text {index}: .*{pattern}"):
        tiny_model.encode_texts(bad)


@pytest.mark.parametrize("pooling", ["pooler", "cls", "mean"])
def test_text_pooling_modes(tmp_path, pooling):
    model = make_tiny_model(tmp_path, text_pooling=pooling)
    tokens = model.tokenize(["garnet", "high pressure structure of the spinel oxide"])
    ids, mask = tokens["input_ids"], tokens["attention_mask"]
    assert mask[0].sum() < mask[1].sum()  # the first text is padded
    with torch.no_grad():
        out = model.text_tower.bert(input_ids=ids, attention_mask=mask)
        got = model.text_tower.pooled_features(ids, mask)
        hidden = out.last_hidden_state
        if pooling == "pooler":
            want = torch.tanh(model.text_tower.bert.pooler.dense(hidden[:, 0]))
        elif pooling == "cls":
            want = hidden[:, 0]
        else:
            want = torch.stack([hidden[i, : int(mask[i].sum())].mean(0) for i in range(2)])
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    emb = model.encode_texts(["garnet"])
    np.testing.assert_allclose(np.linalg.norm(emb), 1.0, atol=1e-5)


def test_pooling_modes_give_different_embeddings(tmp_path):
    embs = [make_tiny_model(tmp_path, text_pooling=p).encode_texts(["garnet"])
            for p in ("pooler", "cls", "mean")]
    assert np.abs(embs[0] - embs[1]).max() > 1e-3
    assert np.abs(embs[1] - embs[2]).max() > 1e-3


def test_pooler_pooling_needs_a_pooler(tmp_path):
    bert = make_tiny_bert()
    no_pooler = BertModel(bert.config, add_pooling_layer=False)
    with pytest.raises(ValueError, match="no pooler.*text_pooling='cls' or 'mean'"):
        ClaspModel(tiny_config(text_pooling="pooler"), text_encoder=no_pooler,
                   tokenizer=make_tokenizer(tmp_path / "v"))
    model = ClaspModel(tiny_config(text_pooling="mean"), text_encoder=no_pooler,
                       tokenizer=make_tokenizer(tmp_path / "v")).eval()
    assert model.encode_texts(["garnet"]).shape == (1, 32)


def test_frozen_text_tower(tmp_path):
    model = make_tiny_model(tmp_path)
    assert model.config.freeze_text
    assert all(not p.requires_grad for p in model.text_tower.bert.parameters())
    assert all(p.requires_grad for p in model.text_tower.head.parameters())
    assert all(p.requires_grad for p in model.crystal_tower.parameters())
    unfrozen = make_tiny_model(tmp_path, freeze_text=False)
    assert all(p.requires_grad for p in unfrozen.text_tower.bert.parameters())


def test_frozen_text_tower_gets_no_gradient(tmp_path):
    model = make_tiny_model(tmp_path).train()
    tokens = model.tokenize(["garnet", "spinel", "ferroelectric oxide"])
    emb = model.embed_tokens(tokens["input_ids"], tokens["attention_mask"])
    emb.sum().backward()
    assert all(p.grad is None for p in model.text_tower.bert.parameters())
    assert model.text_tower.head.out.weight.grad is not None


def test_forward_pairs_are_normalised(tiny_model, struct_list):
    from torch_geometric.data import Batch

    batch = Batch.from_data_list(tiny_model.build_graphs(struct_list[:3]))
    tokens = tiny_model.tokenize(TEXTS[:3])
    with torch.no_grad():
        c, t = tiny_model(batch, tokens["input_ids"], tokens["attention_mask"])
    assert c.shape == t.shape == (3, tiny_model.config.embedding_dim)
    torch.testing.assert_close(c.norm(dim=1), torch.ones(3), atol=1e-5, rtol=0)
    np.testing.assert_allclose(c.numpy(), tiny_model.encode_structures(struct_list[:3]),
                               atol=1e-5)
    np.testing.assert_allclose(t.numpy(), tiny_model.encode_texts(TEXTS[:3]), atol=1e-5)


def test_encode_structures_streams_a_generator(tiny_model, structures):
    items = list(structures.values()) * 3
    consumed = []

    def gen():
        for i, s in enumerate(items):
            consumed.append(i)
            yield s

    out = tiny_model.encode_structures(gen(), batch_size=4, show_progress_bar=False)
    np.testing.assert_allclose(out, tiny_model.encode_structures(items), atol=1e-6)
    assert consumed == list(range(len(items)))


def test_unexpected_graph_builder_failure_costs_only_its_row(tiny_model, structures, monkeypatch):
    from matminer_clasp.errors import InvalidStructureError

    builder = tiny_model._builder(None)
    real = builder.build
    odd = structures["triclinic"]

    def build(structure):
        if structure is odd:
            raise RuntimeError("spglib exploded")
        return real(structure)

    monkeypatch.setattr(builder, "build", build)
    items = [structures["rocksalt"], odd, structures["diamond"]]
    built = tiny_model.build_graphs(items, ignore_errors=True)
    assert isinstance(built[1], InvalidStructureError)
    assert "spglib exploded" in str(built[1]) and isinstance(built[1].__cause__, RuntimeError)
    assert not isinstance(built[0], Exception) and not isinstance(built[2], Exception)
    with pytest.raises(InvalidStructureError, match="structure 1: .*RuntimeError"):
        tiny_model.build_graphs(items)


# ------------------------------------------------- fused tower: space group and graph dropout
def test_fused_tower_with_spacegroup_and_graph_dropout(tmp_path, struct_list):
    from torch_geometric.data import Batch

    model = make_tiny_model(tmp_path, crystal_encoder="cgcnn+composition", use_spacegroup=True,
                            graph_dropout=0.5)
    graphs = model.build_graphs(struct_list[:4])
    assert all(int(g.spacegroup) > 0 for g in graphs)  # spglib ran for every structure
    batch = Batch.from_data_list(graphs * 8)
    tower = model.crystal_tower
    with torch.no_grad():
        graph = tower.cgcnn(batch)
        rest = [tower.composition(batch), tower.spacegroup(batch.spacegroup)]

        def head(scale):
            return tower.head(torch.cat([graph * scale, *rest], dim=1))

        full = tower(batch)
        torch.testing.assert_close(full, head(1.0))  # eval mode: nothing dropped
        tower.training = True  # the tower's own flag only: BatchNorm stays in eval mode
        torch.manual_seed(0)
        dropped = tower(batch)
        tower.training = False
    # every crystal's whole graph vector is either dropped or kept and scaled by 1 / (1 - p)
    is_dropped = torch.isclose(dropped, head(0.0), atol=1e-5).all(dim=1)
    is_kept = torch.isclose(dropped, head(2.0), atol=1e-5).all(dim=1)
    assert bool((is_dropped ^ is_kept).all())
    assert 0 < int(is_dropped.sum()) < len(is_dropped)
    # and the space group changes the embedding
    other = Batch.from_data_list(graphs[:1])
    other.spacegroup = torch.tensor([1])
    with torch.no_grad():
        assert not torch.allclose(tower(other), tower(Batch.from_data_list(graphs[:1])))


def test_graph_dropout_is_checked():
    with pytest.raises(ValueError, match="graph_dropout"):
        tiny_config(graph_dropout=1.0)
