"""Weight interpolation of a model and its fine-tuned version (WiSE-FT): interpolate_models."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from matminer_clasp.model import ClaspModel, interpolate_models, merge_models
from tests.conftest import make_tiny_model

TEXTS = ["garnet", "layered perovskite", "spinel ferrite"]


def _fine_tune(model: ClaspModel, seed: int) -> ClaspModel:
    """A stand-in for fine-tuning with a frozen text encoder: every trained weight moves."""
    tuned = copy.deepcopy(model)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in tuned.named_parameters():
            if not name.startswith("text_tower.bert."):
                p.add_(0.3 * torch.randn(p.shape, generator=gen))
    tuned.config.logit_scale = 20.0
    return tuned


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    start = make_tiny_model(tmp_path_factory.mktemp("wise"), seed=0,
                            crystal_encoder="cgcnn+composition", use_spacegroup=True)
    start.config.logit_scale = 5.0
    return start, _fine_tune(start, seed=1)


@pytest.fixture
def struct_list(structures):
    return [structures[n] for n in ["rocksalt", "diamond", "hexagonal", "triclinic"]]


def test_end_points_reproduce_the_two_models(pair, struct_list):
    start, end = pair
    for alpha, ref in ((0.0, start), (1.0, end)):
        mixed = interpolate_models(start, end, alpha)
        np.testing.assert_allclose(mixed.encode_structures(struct_list),
                                   ref.encode_structures(struct_list), atol=1e-6)
        np.testing.assert_allclose(mixed.encode_texts(TEXTS), ref.encode_texts(TEXTS), atol=1e-6)


def test_midpoint_weights_and_logit_scale(pair, struct_list):
    start, end = pair
    before = {k: v.clone() for k, v in start.state_dict().items()}
    mixed = interpolate_models(start, end, 0.25)
    a, b, m = start.state_dict(), end.state_dict(), mixed.state_dict()
    moved = [k for k in m if m[k].is_floating_point() and not torch.equal(a[k], b[k])]
    assert moved and all(not k.startswith("text_tower.bert.") for k in moved)
    for k in moved:
        torch.testing.assert_close(m[k], 0.75 * a[k] + 0.25 * b[k])
    for k in m:
        if k.startswith("text_tower.bert."):  # the shared frozen encoder stays bit for bit
            assert torch.equal(m[k], a[k])
    assert mixed.config.logit_scale == pytest.approx(5.0 ** 0.75 * 20.0 ** 0.25)
    assert all(torch.equal(v, start.state_dict()[k]) for k, v in before.items())  # unchanged
    assert start.config.logit_scale == 5.0 and end.config.logit_scale == 20.0
    emb = mixed.encode_structures(struct_list)
    assert not np.allclose(emb, start.encode_structures(struct_list), atol=1e-3)
    assert not np.allclose(emb, end.encode_structures(struct_list), atol=1e-3)


def test_interpolated_members_still_merge(tmp_path, struct_list):
    """Ensembles interpolate member by member, and interpolated members share the encoder."""
    starts = [make_tiny_model(tmp_path, seed=0, embedding_dim=16,
                              crystal_encoder="cgcnn+composition", use_spacegroup=True),
              make_tiny_model(tmp_path, seed=0, embedding_dim=16, crystal_encoder="composition")]
    ends = [_fine_tune(m, seed=i + 2) for i, m in enumerate(starts)]
    members = [interpolate_models(s, e, 0.5) for s, e in zip(starts, ends)]
    by_member = merge_models(members)
    by_ensemble = interpolate_models(merge_models(starts), merge_models(ends), 0.5)
    np.testing.assert_allclose(by_ensemble.encode_structures(struct_list),
                               by_member.encode_structures(struct_list), atol=1e-5)
    np.testing.assert_allclose(by_ensemble.encode_texts(TEXTS), by_member.encode_texts(TEXTS),
                               atol=1e-5)


def test_refuses_other_architectures_and_bad_alpha(pair, tmp_path):
    start, end = pair
    with pytest.raises(ValueError, match=r"alpha must lie in \[0, 1\]"):
        interpolate_models(start, end, 1.5)
    with pytest.raises(ValueError, match="alpha"):
        interpolate_models(start, end, float("nan"))
    other = make_tiny_model(tmp_path, seed=0, embedding_dim=16,
                            crystal_encoder="cgcnn+composition", use_spacegroup=True)
    with pytest.raises(ValueError, match="differ in embedding_dim"):
        interpolate_models(start, other)
    composition = make_tiny_model(tmp_path, seed=0, crystal_encoder="composition")
    with pytest.raises(ValueError, match="differ in crystal_encoder"):
        interpolate_models(start, composition)


def test_interpolate_command(pair, struct_list, tmp_path, capsys):
    from matminer_clasp import cli

    start, end = pair
    start.save_pretrained(tmp_path / "stage1")
    end.save_pretrained(tmp_path / "stage2")
    args = ["interpolate", str(tmp_path / "wise"), str(tmp_path / "stage1"),
            str(tmp_path / "stage2"), "--alpha", "0.5"]
    assert cli.main(args) == 0
    assert "0.5 x" in capsys.readouterr().out
    loaded = ClaspModel.from_pretrained(tmp_path / "wise")
    np.testing.assert_allclose(loaded.encode_structures(struct_list),
                               interpolate_models(start, end, 0.5).encode_structures(struct_list),
                               atol=1e-5)
    assert cli.main(args) == 2  # an existing model folder is not overwritten
    assert "refusing to write" in capsys.readouterr().err
    bad = ["interpolate", str(tmp_path / "bad"), str(tmp_path / "stage1"),
           str(tmp_path / "stage2"), "--alpha", "2"]
    assert cli.main(bad) == 2
    assert "alpha must lie in [0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
