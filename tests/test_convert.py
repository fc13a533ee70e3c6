"""Official Lightning checkpoint -> ClaspModel folder, checked against an independent forward pass.

The synthetic checkpoint uses exactly the official key names (fact sheet section 4) and the
official crystal-side and MLP shapes; only the frozen BERT is shrunk (2 layers, hidden 128,
2 heads), which the converter must discover from the tensor shapes. The reference forward pass
below is written from the published equations in plain functional torch (float64) over the raw
state dict, with its own brute-force neighbour search and its own reading of matminer's
atom-feature table.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pymatgen.core import Lattice, Structure
from transformers import BertTokenizerFast

from matminer_clasp.config import ClaspConfig
from matminer_clasp.convert import convert_official_checkpoint
from matminer_clasp.errors import CheckpointConversionError, ModelLoadError
from matminer_clasp.model import ClaspModel
from tests.conftest import TINY_VOCAB, _structures, make_tokenizer
from tests.test_graph import brute_force_neighbours, conventional, reference_features

BERT_HIDDEN, BERT_LAYERS, BERT_FFN, BERT_POS = 128, 2, 96, 40
VOCAB = len(TINY_VOCAB)
DIM, HID, N_CONV = 768, 64, 5


# ---------------------------------------------------------------- synthetic official checkpoint
def official_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with the official key names and shapes (small BERT: 2 layers, 2 heads)."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = {}

    def randn(*shape, scale=1.0):
        return torch.randn(*shape, generator=g) * scale

    def linear(prefix, out, inp):
        sd[prefix + "weight"] = randn(out, inp, scale=1.0 / math.sqrt(inp))
        sd[prefix + "bias"] = randn(out, scale=0.1)

    def batchnorm(prefix, n):
        sd[prefix + "weight"] = 1.0 + randn(n, scale=0.1)
        sd[prefix + "bias"] = randn(n, scale=0.1)
        sd[prefix + "running_mean"] = randn(n, scale=0.2)
        sd[prefix + "running_var"] = 0.5 + torch.rand(n, generator=g)
        sd[prefix + "num_batches_tracked"] = torch.tensor(1234, dtype=torch.int64)

    def layernorm(prefix, n):
        sd[prefix + "weight"] = 1.0 + randn(n, scale=0.1)
        sd[prefix + "bias"] = randn(n, scale=0.1)

    # crystal encoder (85 keys)
    linear("model.atom_embedding_proj.", HID, 92)
    for i in range(N_CONV):
        linear(f"model.convolution_layers.{i}.fc_full.", 2 * HID, 2 * HID + 41)
        batchnorm(f"model.convolution_layers.{i}.bn1.", 2 * HID)
        batchnorm(f"model.convolution_layers.{i}.bn2.", HID)
    linear("model.crystal_embedding_proj.", DIM, HID)
    batchnorm("model.crystal_embedding_bn.", DIM)
    linear("model.intermediate_modules.0.", DIM, DIM)
    batchnorm("model.intermediate_modules.2.", DIM)
    linear("model.intermediate_modules.3.", DIM, DIM)
    batchnorm("model.intermediate_modules.5.", DIM)
    linear("model.final_projection.", DIM, DIM)
    # BERT (HF BertModel names)
    b = "model_text.text_encoder."
    sd[b + "embeddings.word_embeddings.weight"] = randn(VOCAB, BERT_HIDDEN, scale=0.5)
    sd[b + "embeddings.position_embeddings.weight"] = randn(BERT_POS, BERT_HIDDEN, scale=0.5)
    sd[b + "embeddings.token_type_embeddings.weight"] = randn(2, BERT_HIDDEN, scale=0.5)
    layernorm(b + "embeddings.LayerNorm.", BERT_HIDDEN)
    for layer in range(BERT_LAYERS):
        p = f"{b}encoder.layer.{layer}."
        for name in ("query", "key", "value"):
            linear(f"{p}attention.self.{name}.", BERT_HIDDEN, BERT_HIDDEN)
        linear(p + "attention.output.dense.", BERT_HIDDEN, BERT_HIDDEN)
        layernorm(p + "attention.output.LayerNorm.", BERT_HIDDEN)
        linear(p + "intermediate.dense.", BERT_FFN, BERT_HIDDEN)
        linear(p + "output.dense.", BERT_HIDDEN, BERT_FFN)
        layernorm(p + "output.LayerNorm.", BERT_HIDDEN)
    linear(b + "pooler.dense.", BERT_HIDDEN, BERT_HIDDEN)
    # text MLP (16 keys): 0 Linear, 1 BN, 2 ReLU, 3 Linear, 4 BN, 5 ReLU, 6 Linear
    linear("model_text.mlp.0.", DIM, BERT_HIDDEN)
    batchnorm("model_text.mlp.1.", DIM)
    linear("model_text.mlp.3.", DIM, DIM)
    batchnorm("model_text.mlp.4.", DIM)
    linear("model_text.mlp.6.", DIM, DIM)
    return sd


def save_lightning(sd: dict[str, torch.Tensor], path) -> None:
    """Save like Lightning 2.x does (fact sheet section 9), with plain-typed extras."""
    torch.save(
        {
            "epoch": 0,
            "global_step": 0,
            "pytorch-lightning_version": "2.4.0",
            "state_dict": sd,
            "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"current": {"ready": 1}}}},
            "callbacks": {
                "ModelCheckpoint{'monitor': 'val/top01', 'mode': 'max', 'every_n_train_steps': 0,"
                " 'every_n_epochs': 5, 'train_time_interval': None}": {
                    "monitor": "val/top01",
                    "best_model_score": torch.tensor(0.5),
                    "best_model_path": "/runs/epoch=0.ckpt",
                    "best_k_models": {"/runs/epoch=0.ckpt": torch.tensor(0.5)},
                    "dirpath": "/runs",
                }
            },
            "optimizer_states": [
                {"state": {0: {"step": torch.tensor(1.0), "exp_avg": torch.zeros(3)}},
                 "param_groups": [{"lr": 1e-6, "betas": (0.9, 0.999), "eps": 1e-8,
                                   "weight_decay": 0.01, "params": [0]}]}
            ],
            "lr_schedulers": [],
        },
        path,
    )


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("official")
    sd = official_state_dict()
    reference_crystal(sd, list(_structures().values()), calibrate=True)
    ckpt = tmp / "model_finetuned_s30_m05.ckpt"
    save_lightning(sd, ckpt)
    make_tokenizer(tmp / "vocab")  # writes vocab.txt only, like the SciBERT release
    tokenizer = BertTokenizerFast.from_pretrained(str(tmp / "vocab"), do_lower_case=True)
    assert len(tokenizer) == VOCAB
    out = convert_official_checkpoint(ckpt, tmp / "converted", text_model="tiny-scibert",
                                      tokenizer=tmp / "vocab")
    return {"sd": sd, "ckpt": ckpt, "out": out, "tokenizer": tokenizer, "tmp": tmp}


# ---------------------------------------------------------------- independent reference
def _lin(x, sd, p):
    return x @ sd[p + "weight"].T + sd[p + "bias"]


def _bn(x, sd, p, calibrate=None):
    """Eval-mode BatchNorm; with ``calibrate`` (the state dict to edit) first set its running
    statistics to those of ``x``, so the synthetic model works at trained-model scale."""
    if calibrate is not None:
        flat = x.reshape(-1, x.shape[-1])
        for name, value in (("running_mean", flat.mean(0)), ("running_var", flat.var(0) + 0.05)):
            sd[p + name] = value
            calibrate[p + name] = value.float()
    return (x - sd[p + "running_mean"]) / torch.sqrt(sd[p + "running_var"] + 1e-5) \
        * sd[p + "weight"] + sd[p + "bias"]


def _ln(x, sd, p):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + 1e-12) * sd[p + "weight"] + sd[p + "bias"]


def _unit(v):
    return v / torch.linalg.norm(v, dim=-1, keepdim=True).clamp(min=1e-6)


def reference_crystal(sd, structures, calibrate: bool = False) -> np.ndarray:
    """CGCNN + head from the equations (Xie & Grossman 2018; CLaSP fact sheet 2.5).

    All crystals form one disjoint graph (BatchNorm in eval mode acts per row, so this equals
    one-by-one evaluation); ``calibrate=True`` rewrites the BatchNorm running statistics of
    ``sd`` in place from these crystals instead of checking anything.
    """
    edit = sd if calibrate else None
    sd = {k: v.double() for k, v in sd.items()}
    feats, idx, dists, owner, offset = [], [], [], [], 0
    for c, structure in enumerate(structures):
        s = conventional(structure)
        nbr_idx, nbr_dist = brute_force_neighbours(s, 8.0, 12)
        feats.append(torch.from_numpy(reference_features(s)))
        idx.append(torch.from_numpy(nbr_idx) + offset)  # padding index 0 = this crystal's atom 0
        dists.append(torch.from_numpy(nbr_dist))
        owner += [c] * len(s)
        offset += len(s)
    nbr_idx, nbr_dist, owner = torch.cat(idx), torch.cat(dists), torch.tensor(owner)
    centres = torch.arange(41, dtype=torch.float64) * 0.2
    gauss = torch.exp(-((nbr_dist[..., None] - centres) ** 2) / 0.04)
    h = _lin(torch.cat(feats), sd, "model.atom_embedding_proj.")
    n = h.shape[0]
    for i in range(N_CONV):
        p = f"model.convolution_layers.{i}."
        z = torch.cat([h[:, None, :].expand(n, 12, HID), h[nbr_idx], gauss], dim=2)
        t = _bn(_lin(z, sd, p + "fc_full."), sd, p + "bn1.", edit)
        msg = (torch.sigmoid(t[..., :HID]) * F.softplus(t[..., HID:])).sum(dim=1)
        h = F.softplus(h + _bn(msg, sd, p + "bn2.", edit))
    x = torch.stack([h[owner == c].mean(dim=0) for c in range(len(structures))])
    x = torch.relu(_bn(_lin(x, sd, "model.crystal_embedding_proj."), sd,
                       "model.crystal_embedding_bn.", edit))
    for lin, bn in ((0, 2), (3, 5)):
        x = _bn(torch.relu(_lin(x, sd, f"model.intermediate_modules.{lin}.")), sd,
                f"model.intermediate_modules.{bn}.", edit)
    return _unit(_lin(x, sd, "model.final_projection.")).numpy()


def reference_text(sd, input_ids: list[int]) -> np.ndarray:
    """BERT (post-LN, erf GELU, tanh pooler) + the official text MLP, from the equations."""
    sd = {k: v.double() for k, v in sd.items()}
    b = "model_text.text_encoder."
    ids = torch.tensor(input_ids)
    x = sd[b + "embeddings.word_embeddings.weight"][ids] \
        + sd[b + "embeddings.position_embeddings.weight"][: len(ids)] \
        + sd[b + "embeddings.token_type_embeddings.weight"][0]
    x = _ln(x, sd, b + "embeddings.LayerNorm.")
    heads = BERT_HIDDEN // 64
    for layer in range(BERT_LAYERS):
        p = f"{b}encoder.layer.{layer}."

        def split(t):
            return t.view(len(ids), heads, 64).transpose(0, 1)

        q, k, v = (split(_lin(x, sd, f"{p}attention.self.{n}.")) for n in ("query", "key", "value"))
        att = torch.softmax(q @ k.transpose(1, 2) / 8.0, dim=-1) @ v
        att = att.transpose(0, 1).reshape(len(ids), BERT_HIDDEN)
        x = _ln(x + _lin(att, sd, p + "attention.output.dense."), sd,
                p + "attention.output.LayerNorm.")
        ffn = F.gelu(_lin(x, sd, p + "intermediate.dense."))
        x = _ln(x + _lin(ffn, sd, p + "output.dense."), sd, p + "output.LayerNorm.")
    pooled = torch.tanh(_lin(x[0], sd, b + "pooler.dense."))
    y = torch.relu(_bn(_lin(pooled, sd, "model_text.mlp.0."), sd, "model_text.mlp.1."))
    y = torch.relu(_bn(_lin(y, sd, "model_text.mlp.3."), sd, "model_text.mlp.4."))
    return _unit(_lin(y, sd, "model_text.mlp.6.")).numpy()


# ---------------------------------------------------------------- tests
def test_synthetic_checkpoint_has_official_key_counts():
    sd = official_state_dict()
    assert sum(k.startswith("model.") for k in sd) == 85
    assert sum(k.startswith("model_text.mlp.") for k in sd) == 16
    assert sum(k.startswith("model_text.text_encoder.") for k in sd) == 5 + 16 * BERT_LAYERS + 2


def test_converted_folder_loads_with_official_config(official):
    model = ClaspModel.from_pretrained(official["out"])
    cfg = model.config
    assert cfg.text_model == "tiny-scibert"
    assert (cfg.text_pooling, cfg.cell) == ("pooler", "conventional")
    assert cfg.text_weights == "checkpoint"
    default = ClaspConfig()
    for name in ("atom_fea_len", "n_conv", "nbr_fea_len", "embedding_dim", "crystal_head_layers",
                 "text_head_layers", "radius", "max_num_nbr", "normalize_eps"):
        assert getattr(cfg, name) == getattr(default, name), name
    bert = model.text_tower.bert.config
    assert (bert.hidden_size, bert.num_hidden_layers, bert.num_attention_heads) == (128, 2, 2)
    assert (bert.vocab_size, bert.intermediate_size, bert.max_position_embeddings) == (
        VOCAB, BERT_FFN, BERT_POS)
    assert all(not p.requires_grad for p in model.text_tower.bert.parameters())


def test_converted_weights_are_the_checkpoint_values(official):
    model = ClaspModel.from_pretrained(official["out"])
    ours = model.state_dict()
    sd = official["sd"]
    pairs = {
        "model.convolution_layers.3.fc_full.weight": "crystal_tower.cgcnn.convs.3.fc_full.weight",
        "model.intermediate_modules.5.running_var": "crystal_tower.head.blocks.1.bn.running_var",
        "model.intermediate_modules.3.bias": "crystal_tower.head.blocks.1.lin.bias",
        "model_text.mlp.4.running_mean": "text_tower.head.blocks.1.bn.running_mean",
        "model_text.mlp.6.weight": "text_tower.head.out.weight",
        "model_text.text_encoder.pooler.dense.weight": "text_tower.bert.pooler.dense.weight",
    }
    for theirs, mine in pairs.items():
        torch.testing.assert_close(ours[mine], sd[theirs], rtol=0, atol=0)


def test_structure_embeddings_match_reference(official, structures):
    model = ClaspModel.from_pretrained(official["out"])
    cases = dict(structures)
    # padding: no neighbour within 8 A at all, and 6 neighbours + 6 padded slots
    cases["sparse"] = Structure(Lattice.cubic(30.0), ["Cu"], [[0, 0, 0]])
    cases["simple_cubic"] = Structure(Lattice.cubic(6.5), ["Po"], [[0, 0, 0]])
    # a primitive rock salt cell: the conventional 8-atom cell is what gets embedded
    cases["nacl_primitive"] = Structure(
        Lattice.from_parameters(3.988, 3.988, 3.988, 60, 60, 60), ["Na", "Cl"],
        [[0, 0, 0], [0.5, 0.5, 0.5]])
    names = list(cases)
    got = model.encode_structures([cases[n] for n in names], batch_size=2)
    want = reference_crystal(official["sd"], [cases[n] for n in names])
    for row, ref, name in zip(got, want, names):
        np.testing.assert_allclose(row, ref, atol=1e-5, err_msg=name)
        assert abs(np.linalg.norm(row) - 1) < 1e-5
    # the embeddings are far apart, so 1e-5 agreement is a real check
    cos = want[:5] @ want[:5].T
    assert cos[~np.eye(5, dtype=bool)].max() < 0.9


def test_text_embeddings_match_reference(official):
    model = ClaspModel.from_pretrained(official["out"])
    texts = ["ferroelectric perovskite oxide", "garnet", "high pressure structure of spinel"]
    got = model.encode_texts(texts, batch_size=2)
    tok = official["tokenizer"]
    # the converted folder's tokenizer reads the vocabulary (no [UNK] for known words)
    ids = model.tokenizer("Ferroelectric garnet")["input_ids"]
    assert model.tokenizer.convert_ids_to_tokens(ids) == [
        "[CLS]", "ferro", "##electric", "garnet", "[SEP]"]
    assert ids == tok("Ferroelectric garnet")["input_ids"]
    assert np.abs(got[0] - got[1]).max() > 1e-2
    # a text longer than the (shrunk) encoder's 40 positions is truncated, not a crash
    assert model.config.max_length == BERT_POS
    long = model.encode_texts([" ".join(["garnet"] * 100)])
    assert np.isfinite(long).all()
    for row, text in zip(got, texts):
        want = reference_text(official["sd"], tok(text)["input_ids"])
        np.testing.assert_allclose(row, want, atol=1e-5, err_msg=text)


def test_bare_state_dict_and_position_ids_are_accepted(official):
    tmp = official["tmp"]
    sd = dict(official["sd"])
    sd["model_text.text_encoder.embeddings.position_ids"] = torch.arange(BERT_POS)[None]
    sd["model_text.text_encoder.embeddings.token_type_ids"] = torch.zeros(1, BERT_POS).long()
    path = tmp / "bare.pt"
    torch.save(sd, path)
    out = convert_official_checkpoint(path, tmp / "bare_out", text_model="tiny-scibert",
                                      tokenizer=tmp / "vocab")
    a = ClaspModel.from_pretrained(official["out"])
    b = ClaspModel.from_pretrained(out)
    assert not any("position_ids" in k for k in b.state_dict())
    np.testing.assert_array_equal(a.encode_texts(["garnet"]), b.encode_texts(["garnet"]))


def _convert_modified(official, name, edit):
    sd = dict(official["sd"])
    edit(sd)
    path = official["tmp"] / f"{name}.ckpt"
    save_lightning(sd, path)
    return convert_official_checkpoint(path, official["tmp"] / name,
                                       tokenizer=official["tokenizer"])


def test_unknown_key_is_refused_and_named(official):
    def edit(sd):
        sd["model.extra_layer.weight"] = torch.zeros(3)

    with pytest.raises(CheckpointConversionError, match=re.escape("model.extra_layer.weight")):
        _convert_modified(official, "unknown", edit)
    assert not (official["tmp"] / "unknown").exists()


def test_unexpected_index_is_refused(official):
    def edit(sd):  # a sixth convolution does not exist in the official architecture
        sd["model.convolution_layers.5.fc_full.bias"] = torch.zeros(128)

    with pytest.raises(CheckpointConversionError, match=r"convolution_layers\.5\.fc_full\.bias"):
        _convert_modified(official, "sixth_conv", edit)


def test_missing_key_is_refused_and_named(official):
    def edit(sd):
        del sd["model.intermediate_modules.5.running_var"]

    with pytest.raises(CheckpointConversionError,
                       match=re.escape("model.intermediate_modules.5.running_var")):
        _convert_modified(official, "missing", edit)


def test_missing_bert_layer_is_refused(official):
    def edit(sd):
        for key in [k for k in sd if k.startswith("model_text.text_encoder.encoder.layer.0.")]:
            del sd[key]

    with pytest.raises(CheckpointConversionError, match="missing"):
        _convert_modified(official, "missing_layer", edit)


def test_wrong_shape_is_refused_and_named(official):
    def edit(sd):
        sd["model.convolution_layers.2.bn2.weight"] = torch.ones(65)

    with pytest.raises(CheckpointConversionError,
                       match=r"convolution_layers\.2\.bn2\.weight: \(65,\) \(expected \(64,\)\)"):
        _convert_modified(official, "shape", edit)


def test_nan_weights_are_refused(official):
    def edit(sd):
        w = sd["model.final_projection.bias"].clone()
        w[3] = float("nan")
        sd["model.final_projection.bias"] = w

    with pytest.raises(CheckpointConversionError, match="final_projection.bias"):
        _convert_modified(official, "nan", edit)


def test_unreadable_and_unsafe_files_are_refused(official, tmp_path):
    with pytest.raises(CheckpointConversionError, match="does not exist"):
        convert_official_checkpoint(tmp_path / "nope.ckpt", tmp_path / "o1",
                                    tokenizer=official["tokenizer"])
    junk = tmp_path / "junk.ckpt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointConversionError, match="junk.ckpt"):
        convert_official_checkpoint(junk, tmp_path / "o2", tokenizer=official["tokenizer"])
    unsafe = tmp_path / "unsafe.ckpt"
    torch.save({"state_dict": official["sd"], "obj": _Opaque()}, unsafe)
    with pytest.raises(CheckpointConversionError, match="weights-only"):
        convert_official_checkpoint(unsafe, tmp_path / "o3", tokenizer=official["tokenizer"])


class _Opaque:
    """An arbitrary class instance: a weights-only load must refuse to unpickle it."""


def test_tokenizer_must_be_available_offline(official, tmp_path):
    with pytest.raises(ModelLoadError, match="(?i)offline|cache"):
        convert_official_checkpoint(official["ckpt"], tmp_path / "o",
                                    text_model="nonexistent-org/nonexistent-model")
    with pytest.raises(ModelLoadError, match="does not exist"):
        convert_official_checkpoint(official["ckpt"], tmp_path / "o",
                                    tokenizer=tmp_path / "no_such_tokenizer")


def test_tokenizer_larger_than_checkpoint_vocabulary_is_refused(official, tmp_path):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("\n".join(TINY_VOCAB + [f"tok{i}" for i in range(20)]) + "\n")
    big = BertTokenizerFast.from_pretrained(str(tmp_path), do_lower_case=True)
    with pytest.raises(CheckpointConversionError, match=rf"{len(big)} tokens.*{VOCAB}"):
        convert_official_checkpoint(official["ckpt"], tmp_path / "o", tokenizer=big)


def test_tokenizer_smaller_than_vocabulary_warns(official, tmp_path):
    (tmp_path / "vocab.txt").write_text("\n".join(TINY_VOCAB[:-4]) + "\n")
    with pytest.warns(UserWarning, match="right tokenizer"):
        convert_official_checkpoint(official["ckpt"], tmp_path / "o", tokenizer=tmp_path)
