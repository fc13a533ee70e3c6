"""Catalogue of bad texts and broken model folders: each fails with its own clear error."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest

from matminer_clasp.errors import InvalidTextError, ModelLoadError
from matminer_clasp.model import ClaspModel

BAD_TEXTS = {
    "empty": ("", "empty"),
    "whitespace": (" \n\t ", "whitespace"),
    "none": (None, "expected a string"),
    "number": (3.14, "expected a string"),
}

ODD_BUT_VALID_TEXTS = {
    "very_long": "garnet " * 14_286,  # 100,002 characters, truncated to max_length tokens
    "unicode": "Fe₂O₃ hématite — α-phase, 磁性",
    "emoji": "💎 garnet 🔥",  # words the tiny vocabulary knows, between emoji
}


@pytest.fixture(scope="module")
def model(rel_model_dir) -> ClaspModel:
    return ClaspModel.from_pretrained(rel_model_dir)


@pytest.mark.parametrize("name", list(BAD_TEXTS))
def test_bad_text_raises_naming_index(model, name):
    text, words = BAD_TEXTS[name]
    with pytest.raises(InvalidTextError, match=f"text 1: .*{words}"):
        model.encode_texts(["garnet", text])


@pytest.mark.parametrize("name", list(ODD_BUT_VALID_TEXTS))
def test_odd_texts_give_unit_vectors(model, name):
    emb = model.encode_texts([ODD_BUT_VALID_TEXTS[name]])
    assert len(ODD_BUT_VALID_TEXTS["very_long"]) > 100_000
    assert np.isfinite(emb).all() and abs(np.linalg.norm(emb) - 1) < 1e-5


def test_text_featurizer_keeps_good_rows(rel_model_dir, model):
    from matminer_clasp.featurizers import ClaspTextFeaturizer

    texts = ["spinel", "", "perovskite oxide", None, ODD_BUT_VALID_TEXTS["emoji"], "   "]
    feat = ClaspTextFeaturizer(model=str(rel_model_dir))
    out = feat.featurize_dataframe(
        pd.DataFrame({"text": texts}), "text", ignore_errors=True, return_errors=True, pbar=False
    )
    values = out[feat.feature_labels()].to_numpy(dtype=float)
    good, bad = [0, 2, 4], [1, 3, 5]
    assert np.isnan(values[bad]).all()
    np.testing.assert_allclose(
        values[good], model.encode_texts([texts[i] for i in good]), atol=1e-5
    )


# --------------------------------------------------------------------------- broken model folders
def _copy(src, tmp_path):
    dst = tmp_path / "model"
    shutil.copytree(src, dst)
    return dst


def _truncate(folder):
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _corrupt(folder):
    path = folder / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[:8] = b"\xff" * 8  # header length now absurd
    path.write_bytes(bytes(data))


def _wrong_dims(folder):
    path = folder / "config.json"
    cfg = json.loads(path.read_text())
    cfg["embedding_dim"] = cfg["embedding_dim"] * 2
    path.write_text(json.dumps(cfg))


def _no_tokenizer(folder):
    shutil.rmtree(folder / "tokenizer")


def _no_weights(folder):
    (folder / "model.safetensors").unlink()


def _bad_json(folder):
    (folder / "config.json").write_text("{not json")


BROKEN = {
    "truncated_safetensors": (_truncate, "safetensors"),
    "corrupted_safetensors": (_corrupt, "safetensors"),
    "config_with_wrong_dimensions": (_wrong_dims, "shape"),
    "missing_tokenizer": (_no_tokenizer, "tokenizer"),
    "missing_weights": (_no_weights, "no weights"),
    "invalid_config_json": (_bad_json, "config"),
}


@pytest.mark.parametrize("name", list(BROKEN))
def test_broken_model_folder(rel_model_dir, tmp_path, name):
    breaker, words = BROKEN[name]
    folder = _copy(rel_model_dir, tmp_path)
    breaker(folder)
    with pytest.raises(ModelLoadError, match=words):
        ClaspModel.from_pretrained(folder)


def test_hub_offline_without_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="(?i)offline|cache"):
        ClaspModel.from_pretrained("some-org/not-cached-model", cache_dir=tmp_path)
