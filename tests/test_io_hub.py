"""Saving, loading and name resolution: folders, an offline Hub cache, broken folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from matminer_clasp.config import CONFIG_NAME, WEIGHTS_NAME
from matminer_clasp.errors import ModelLoadError
from matminer_clasp.hub import BUNDLED_MODEL_DIR, resolve_model_folder
from matminer_clasp.model import ClaspModel

COMMIT = "0123456789abcdef0123456789abcdef01234567"
TEXTS = ["ferroelectric perovskite", "garnet"]


@pytest.fixture(scope="module")
def reference(tiny_model_dir, structures):
    model = ClaspModel.from_pretrained(tiny_model_dir)
    items = [structures["rocksalt"], structures["triclinic"], structures["disordered"]]
    return items, model.encode_structures(items), model.encode_texts(TEXTS)


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def _assert_same(model, reference, atol=1e-6):
    items, crystal, text = reference
    np.testing.assert_allclose(model.encode_structures(items), crystal, atol=atol)
    np.testing.assert_allclose(model.encode_texts(TEXTS), text, atol=atol)


# ---------------------------------------------------------------- round trips
def test_save_load_round_trip(tmp_path, tiny_model_dir, reference):
    model = ClaspModel.from_pretrained(tiny_model_dir)
    model.save_pretrained(tmp_path / "again")
    assert {p.name for p in (tmp_path / "again").iterdir()} >= {CONFIG_NAME, WEIGHTS_NAME,
                                                                  "tokenizer"}
    again = ClaspModel.from_pretrained(tmp_path / "again")
    assert not again.training
    def as_json(cfg):
        return json.loads(json.dumps(cfg.to_dict()))

    assert as_json(again.config) == as_json(model.config)
    _assert_same(again, reference, atol=0)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(again.state_dict()[key], value, rtol=0, atol=0)


def test_round_trip_from_fresh_model_and_str_path(tmp_path, structures):
    from tests.conftest import make_tiny_model

    model = make_tiny_model(tmp_path, seed=5)
    want = model.encode_structures([structures["diamond"]])
    model.save_pretrained(str(tmp_path / "m"))
    got = ClaspModel.from_pretrained(str(tmp_path / "m")).encode_structures([structures["diamond"]])
    np.testing.assert_array_equal(got, want)


def test_fp16_save_is_smaller_and_close(tmp_path, tiny_model_dir, reference):
    model = ClaspModel.from_pretrained(tiny_model_dir)
    model.save_pretrained(tmp_path / "half", dtype=torch.float16)
    size32 = (tiny_model_dir / WEIGHTS_NAME).stat().st_size
    size16 = (tmp_path / "half" / WEIGHTS_NAME).stat().st_size
    assert size16 < 0.7 * size32
    half = ClaspModel.from_pretrained(tmp_path / "half")
    assert all(p.dtype == torch.float32 for p in half.parameters())
    _assert_same(half, reference, atol=1e-2)


# ---------------------------------------------------------------- Hub cache, offline
def _hub_cache(tmp_path: Path, tiny_model_dir: Path, repo: str = "org/name") -> Path:
    cache = tmp_path / "hub"
    base = cache / f"models--{repo.replace('/', '--')}"
    _copy(tiny_model_dir, base / "snapshots" / COMMIT)
    (base / "refs").mkdir(parents=True)
    (base / "refs" / "main").write_text(COMMIT)
    return cache


def test_hub_cache_offline(tmp_path, tiny_model_dir, reference, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache = _hub_cache(tmp_path, tiny_model_dir)
    model = ClaspModel.from_pretrained("org/name", cache_dir=cache)
    _assert_same(model, reference, atol=0)
    pinned = ClaspModel.from_pretrained("org/name", cache_dir=cache, revision=COMMIT)
    _assert_same(pinned, reference, atol=0)
    folder = resolve_model_folder("org/name", cache_dir=cache, local_files_only=True)
    assert folder.name == COMMIT


def test_hub_id_not_cached_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="(?i)offline.*cache|cache.*offline"):
        ClaspModel.from_pretrained("org/not-cached", cache_dir=tmp_path / "empty_cache")


def test_hub_revision_not_cached_offline(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cache = _hub_cache(tmp_path, tiny_model_dir)
    with pytest.raises(ModelLoadError, match="(?i)cache"):
        ClaspModel.from_pretrained("org/name", cache_dir=cache, revision="f" * 40)


# ---------------------------------------------------------------- broken folders
def test_missing_folder(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        ClaspModel.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(ModelLoadError, match="does not exist"):
        ClaspModel.from_pretrained("./relative/nowhere")


def test_folder_without_config(tmp_path, tiny_model_dir):
    folder = _copy(tiny_model_dir, tmp_path / "m")
    (folder / CONFIG_NAME).unlink()
    with pytest.raises(ModelLoadError, match=CONFIG_NAME):
        ClaspModel.from_pretrained(folder)


def test_file_instead_of_folder(tiny_model_dir):
    with pytest.raises(ModelLoadError, match="is a file"):
        ClaspModel.from_pretrained(tiny_model_dir / WEIGHTS_NAME)


def test_missing_weights(tmp_path, tiny_model_dir):
    folder = _copy(tiny_model_dir, tmp_path / "m")
    (folder / WEIGHTS_NAME).unlink()
    with pytest.raises(ModelLoadError, match=WEIGHTS_NAME):
        ClaspModel.from_pretrained(folder)


def test_truncated_weights(tmp_path, tiny_model_dir):
    folder = _copy(tiny_model_dir, tmp_path / "m")
    data = (folder / WEIGHTS_NAME).read_bytes()
    (folder / WEIGHTS_NAME).write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match=WEIGHTS_NAME):
        ClaspModel.from_pretrained(folder)


def test_corrupted_weights(tmp_path, tiny_model_dir):
    folder = _copy(tiny_model_dir, tmp_path / "m")
    data = bytearray((folder / WEIGHTS_NAME).read_bytes())
    data[8:40] = b"\xff" * 32  # inside the JSON header
    (folder / WEIGHTS_NAME).write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match=WEIGHTS_NAME):
        ClaspModel.from_pretrained(folder)
    (folder / WEIGHTS_NAME).write_bytes(b"")
    with pytest.raises(ModelLoadError, match=WEIGHTS_NAME):
        ClaspModel.from_pretrained(folder)


def test_invalid_config_json(tmp_path, tiny_model_dir):
    folder = _copy(tiny_model_dir, tmp_path / "m")
    (folder / CONFIG_NAME).write_text("{not json")
    with pytest.raises(ModelLoadError, match=CONFIG_NAME):
        ClaspModel.from_pretrained(folder)
    (folder / CONFIG_NAME).write_text(json.dumps({"no_such_option": 1}))
    with pytest.raises(ModelLoadError, match="no_such_option"):
        ClaspModel.from_pretrained(folder)


def test_config_with_wrong_dimensions(tmp_path, tiny_model_dir):
    folder = _copy(tiny_model_dir, tmp_path / "m")
    cfg = json.loads((folder / CONFIG_NAME).read_text())
    cfg["embedding_dim"] = 48  # weights were saved with 32
    (folder / CONFIG_NAME).write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match=r"tensor '[\w.]+' has shape \([\d, ]+\).*\(48"):
        ClaspModel.from_pretrained(folder)


def test_config_with_wrong_layer_count(tmp_path, tiny_model_dir):
    folder = _copy(tiny_model_dir, tmp_path / "m")
    cfg = json.loads((folder / CONFIG_NAME).read_text())
    cfg["n_conv"] = 3  # weights have 2 convolutions
    (folder / CONFIG_NAME).write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match=r"missing keys.*convs\.2"):
        ClaspModel.from_pretrained(folder)


def test_missing_tokenizer(tmp_path, tiny_model_dir):
    folder = _copy(tiny_model_dir, tmp_path / "m")
    shutil.rmtree(folder / "tokenizer")
    with pytest.raises(ModelLoadError, match="tokenizer"):
        ClaspModel.from_pretrained(folder)


# ---------------------------------------------------------------- bundled default
def test_bundled_default_model(structures):
    # the bundled model is part of the package: it must be there and load with no network
    assert (BUNDLED_MODEL_DIR / CONFIG_NAME).is_file()
    model = ClaspModel.from_pretrained()
    assert model.config.text_weights == "external"
    emb = model.encode_structures([structures["rocksalt"]])
    assert emb.shape == (1, 768)
    np.testing.assert_allclose(np.linalg.norm(emb), 1.0, atol=1e-5)
    texts = model.encode_texts(["garnet", "spinel"])
    assert texts[0] @ texts[1] < 0.999  # a real text encoder: different words, different vectors
    for name in ("train_configs.json", "evaluation_config.json", "data_fingerprint",
                 "model-report.md"):
        assert (BUNDLED_MODEL_DIR / name).is_file(), name
    # an ensemble in one space: 768-d in all, cosines = mean of the members' cosines
    assert model.config.embedding_dim == 768 and len(model.config.members) == 4
    members = model.config.member_configs()
    assert sorted(c.crystal_encoder for c in members) == ["cgcnn+composition"] * 2 + [
        "composition"] * 2


def test_default_alias_names_the_bundled_model(tmp_path, monkeypatch):
    from matminer_clasp.hub import resolve_model_folder

    monkeypatch.chdir(tmp_path)
    assert resolve_model_folder("default") == BUNDLED_MODEL_DIR
    (tmp_path / "default").mkdir()  # a real folder of that name wins (and is checked)
    with pytest.raises(ModelLoadError, match="no config.json"):
        resolve_model_folder("default")
