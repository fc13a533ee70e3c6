"""Ensembles in one space: merge_models, the member configs, save/load."""

from __future__ import annotations

import numpy as np
import pytest

from matminer_clasp.config import ClaspConfig
from matminer_clasp.model import ClaspModel, merge_models
from tests.conftest import make_tiny_model, tiny_config

TEXTS = ["garnet", "layered perovskite", "spinel ferrite", "high-pressure olivine"]


@pytest.fixture
def struct_list(structures):
    return [structures[n] for n in ["rocksalt", "diamond", "hexagonal", "triclinic", "disordered"]]


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("members")
    graph = make_tiny_model(tmp, seed=0, embedding_dim=16, crystal_encoder="cgcnn+composition",
                            use_spacegroup=True)
    comp = make_tiny_model(tmp, seed=0, embedding_dim=16, crystal_encoder="composition")
    return graph, comp


def test_merged_cosine_is_the_mean_of_member_cosines(members, struct_list):
    merged = merge_models(members)
    assert merged.config.embedding_dim == 32 and len(merged.config.members) == 2
    assert merged.config.crystal_encoder == "cgcnn+composition" and merged.config.use_spacegroup
    x, t = merged.encode_structures(struct_list), merged.encode_texts(TEXTS)
    assert x.shape == (len(struct_list), 32) and t.shape == (len(TEXTS), 32)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-5)
    mean = np.mean([m.encode_structures(struct_list) @ m.encode_texts(TEXTS).T
                    for m in members], axis=0)
    np.testing.assert_allclose(x @ t.T, mean, atol=1e-5)


def test_merged_model_round_trips(members, struct_list, tmp_path):
    merged = merge_models(members)
    merged.save_pretrained(tmp_path / "ens")
    again = ClaspModel.from_pretrained(tmp_path / "ens")
    assert again.config.members == merged.config.members
    np.testing.assert_allclose(again.encode_structures(struct_list),
                               merged.encode_structures(struct_list), atol=1e-6)
    np.testing.assert_allclose(again.encode_texts(TEXTS), merged.encode_texts(TEXTS), atol=1e-6)


def test_members_must_agree(members, tmp_path):
    graph, _ = members
    other_dim = make_tiny_model(tmp_path, seed=0, embedding_dim=8, crystal_encoder="composition")
    with pytest.raises(ValueError, match="embedding_dim"):
        merge_models([graph, other_dim])
    other_bert = make_tiny_model(tmp_path, seed=1, embedding_dim=16)
    with pytest.raises(ValueError, match="text-encoder weights"):
        merge_models([graph, other_bert])
    with pytest.raises(ValueError, match="at least 2"):
        merge_models([graph])


def test_member_config_checks():
    cfg = tiny_config(crystal_encoder="cgcnn+composition", use_spacegroup=True,
                      members=[{"crystal_encoder": "cgcnn"}, {"crystal_encoder": "composition"}])
    subs = cfg.member_configs()
    assert [c.embedding_dim for c in subs] == [16, 16]
    assert [c.crystal_encoder for c in subs] == ["cgcnn", "composition"]
    assert ClaspConfig.from_dict(cfg.to_dict()).members == cfg.members
    with pytest.raises(ValueError, match="not member settings"):
        tiny_config(members=[{"radius": 5.0}, {}])
    with pytest.raises(ValueError, match="not member settings"):  # fixed by the graph builder
        tiny_config(members=[{"orig_atom_fea_len": 64}, {}])
    with pytest.raises(ValueError, match="builds none"):
        tiny_config(crystal_encoder="composition", members=[{"crystal_encoder": "cgcnn"}, {}])
    with pytest.raises(ValueError, match="use_spacegroup=True"):
        tiny_config(members=[{"use_spacegroup": True}, {}])
    with pytest.raises(ValueError, match="divisible"):
        tiny_config(embedding_dim=32, members=[{}, {}, {}])


def test_merge_command(members, struct_list, tmp_path, capsys):
    from matminer_clasp import cli

    folders = []
    for i, m in enumerate(members):
        m.save_pretrained(tmp_path / f"m{i}")
        folders.append(str(tmp_path / f"m{i}"))
    assert cli.main(["merge", str(tmp_path / "ens"), *folders]) == 0
    assert "merged 2 members (32-d)" in capsys.readouterr().out
    merged = ClaspModel.from_pretrained(tmp_path / "ens")
    np.testing.assert_allclose(merged.encode_structures(struct_list),
                               merge_models(members).encode_structures(struct_list), atol=1e-6)
    assert cli.main(["merge", str(tmp_path / "one"), folders[0]]) == 2  # clear error, no crash


def test_narrow_member_keeps_a_wide_crystal_head(tmp_path, struct_list):
    model = make_tiny_model(tmp_path, embedding_dim=8, crystal_hidden_dim=24,
                            crystal_encoder="composition")
    head = model.crystal_tower.head
    assert head.proj.out_features == 24 and head.out.out_features == 8
    assert model.encode_structures(struct_list).shape == (len(struct_list), 8)
    model.save_pretrained(tmp_path / "m")
    assert ClaspModel.from_pretrained(tmp_path / "m").config.crystal_hidden_dim == 24


def test_merged_logit_scale_is_the_member_mean_or_none():
    from matminer_clasp.model.ensemble import merge_config

    graph = tiny_config(embedding_dim=16, logit_scale=20.0, logit_bias=-8.0)
    comp = tiny_config(embedding_dim=16, crystal_encoder="composition", logit_scale=30.0,
                       logit_bias=-12.0)
    merged = merge_config([graph, comp])
    assert merged.logit_scale == 25.0 and merged.logit_bias == -10.0
    unbiased = tiny_config(embedding_dim=16, crystal_encoder="composition", logit_scale=30.0)
    merged = merge_config([graph, unbiased])
    assert merged.logit_scale == 25.0 and merged.logit_bias is None
    unknown = tiny_config(embedding_dim=16, crystal_encoder="composition")
    merged = merge_config([graph, unknown])
    assert merged.logit_scale is None and merged.logit_bias is None


def test_logit_scale_config_checks(tmp_path):
    import json

    assert ClaspConfig().logit_scale is None and ClaspConfig().logit_bias is None
    cfg = tiny_config(logit_scale=14.5, logit_bias=-3.0)
    assert ClaspConfig.from_dict(cfg.to_dict()).logit_scale == 14.5
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="logit_scale must be a positive number"):
            tiny_config(logit_scale=bad)
    with pytest.raises(ValueError, match="logit_bias is set but logit_scale is not"):
        tiny_config(logit_bias=-3.0)
    # a config.json written before these fields existed still loads
    old = tiny_config().to_dict()
    del old["logit_scale"], old["logit_bias"]
    (tmp_path / "config.json").write_text(json.dumps(old))
    loaded = ClaspConfig.load(tmp_path)
    assert loaded.logit_scale is None and loaded.logit_bias is None
