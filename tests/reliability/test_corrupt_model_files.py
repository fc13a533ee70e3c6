"""A model folder read from disk is checked: NaN or overwritten tensors, bad config values."""

from __future__ import annotations

import json
import shutil
import struct

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from matminer_clasp.config import ClaspConfig
from matminer_clasp.errors import ConfigError, CorruptWeightsError, ModelLoadError
from matminer_clasp.model import ClaspModel
from matminer_clasp.model.text_model import ClaspTextModel

HEAD = "text_tower.head.out.weight"


def _copy(src, tmp_path):
    dst = tmp_path / "model"
    shutil.copytree(src, dst)
    return dst


def _tensor_span(path, key):
    """Absolute byte range of tensor ``key`` in a safetensors file."""
    data = path.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    start, end = json.loads(data[8 : 8 + n])[key]["data_offsets"]
    return 8 + n + start, 8 + n + end


def _head_key(folder):
    with safe_open(str(folder / "model.safetensors"), framework="pt") as fh:
        keys = [k for k in fh.keys() if k.startswith("text_tower.head") and "weight" in k]
    return keys[0]


def _resave(folder, change, keep_checksums=False):
    path = folder / "model.safetensors"
    with safe_open(str(path), framework="pt") as fh:
        state = {k: fh.get_tensor(k) for k in fh.keys()}
        meta = fh.metadata()
    change(state)
    save_file(state, str(path), metadata=meta if keep_checksums else {"format": "pt"})


def test_saved_model_carries_checksums(rel_model_dir):
    with safe_open(str(rel_model_dir / "model.safetensors"), framework="pt") as fh:
        assert "clasp_crc32" in fh.metadata()


@pytest.mark.parametrize("loader", [ClaspModel, ClaspTextModel])
def test_nan_tensor_names_the_tensor(rel_model_dir, tmp_path, loader):
    folder = _copy(rel_model_dir, tmp_path)
    key = _head_key(folder)

    def poison(state):
        state[key].view(-1)[0] = float("nan")

    _resave(folder, poison)  # an old-style file without checksums
    with pytest.raises(CorruptWeightsError, match=f"model.safetensors: tensor '{key}' holds NaN"):
        loader.from_pretrained(folder)


def test_inf_and_huge_values(rel_model_dir, tmp_path):
    folder = _copy(rel_model_dir, tmp_path)
    key = _head_key(folder)
    _resave(folder, lambda s: s[key].view(-1).__setitem__(3, float("inf")))
    with pytest.raises(CorruptWeightsError, match="infinite"):
        ClaspModel.from_pretrained(folder)
    _resave(folder, lambda s: s[key].view(-1).__setitem__(3, 3e9))
    with pytest.raises(CorruptWeightsError, match="implausible value"):
        ClaspModel.from_pretrained(folder)


def test_overwritten_bytes_fail_the_checksum(rel_model_dir, tmp_path):
    folder = _copy(rel_model_dir, tmp_path)
    path = folder / "model.safetensors"
    key = _head_key(folder)
    start, _ = _tensor_span(path, key)
    data = bytearray(path.read_bytes())
    data[start : start + 4] = struct.pack("<f", 0.125)  # a plausible value: only a checksum sees it
    path.write_bytes(bytes(data))
    for loader in (ClaspModel, ClaspTextModel):
        with pytest.raises(CorruptWeightsError, match=f"'{key}' does not match its checksum"):
            loader.from_pretrained(folder)


def test_overwritten_bytes_without_checksums(rel_model_dir, tmp_path):
    folder = _copy(rel_model_dir, tmp_path)
    _resave(folder, lambda s: None)  # drop the checksums, as in files saved before them
    path = folder / "model.safetensors"
    key = _head_key(folder)
    start, end = _tensor_span(path, key)
    data = bytearray(path.read_bytes())
    data[start + 16 : start + 48] = b"CORRUPTED BY A TEXT EDITOR!!!..."
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptWeightsError, match=key):
        ClaspModel.from_pretrained(folder)


def test_wrong_dtype(rel_model_dir, tmp_path):
    folder = _copy(rel_model_dir, tmp_path)
    with safe_open(str(folder / "model.safetensors"), framework="pt") as fh:
        key = next(k for k in fh.keys() if k.endswith("num_batches_tracked"))
    _resave(folder, lambda s: s.__setitem__(key, s[key].to(torch.float32)))
    with pytest.raises(CorruptWeightsError, match=f"'{key}' is stored as torch.float32"):
        ClaspModel.from_pretrained(folder)


def test_cli_reports_corrupt_weights_in_one_line(rel_model_dir, tmp_path, capsys):
    from matminer_clasp.cli import main

    folder = _copy(rel_model_dir, tmp_path)
    key = _head_key(folder)
    _resave(folder, lambda s: s[key].fill_(float("nan")))
    from matminer_clasp.index import EmbeddingIndex

    rows = torch.randn(4, ClaspConfig.load(folder).embedding_dim).numpy()
    EmbeddingIndex(rows).save(tmp_path / "ix")
    code = main(["screen", "garnet", "--index", str(tmp_path / "ix"), "--model", str(folder)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "holds NaN" in err and "Traceback" not in err


# ----------------------------------------------------------------------------- config.json
BAD_CONFIGS = {
    "eps_null": ({"normalize_eps": None}, ["normalize_eps must not be null"]),
    "dim_string": ({"embedding_dim": "768"}, ["embedding_dim must be an integer, got '768'"]),
    "nbr_float": ({"max_num_nbr": 12.5}, ["max_num_nbr must be an integer, got 12.5"]),
    "all_three": (
        {"normalize_eps": None, "embedding_dim": "768", "max_num_nbr": 12.5},
        ["normalize_eps", "embedding_dim", "max_num_nbr"],
    ),
    "ranges": ({"radius": -1.0, "max_length": 0, "normalize_eps": 2.0, "freeze_text": "yes"},
               ["radius must be in (0, inf)", "max_length must be positive",
                "normalize_eps must be in (0, 1)", "freeze_text must be true or false"]),
    "choice": ({"cell": "weird"}, ["cell='weird'"]),
}


@pytest.mark.parametrize("name", list(BAD_CONFIGS))
def test_bad_config_values_named_together(rel_model_dir, tmp_path, name):
    changes, words = BAD_CONFIGS[name]
    folder = _copy(rel_model_dir, tmp_path)
    path = folder / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))
    for loader in (ClaspModel, ClaspTextModel):
        with pytest.raises(ModelLoadError) as info:
            loader.from_pretrained(folder)
        message = str(info.value)
        assert str(path) in message and "\n" not in message
        for word in words:
            assert word in message
        assert isinstance(info.value.__cause__, ConfigError)
        assert set(info.value.__cause__.problems) >= set(changes) - {"cell"}


def test_config_not_an_object(rel_model_dir, tmp_path):
    folder = _copy(rel_model_dir, tmp_path)
    (folder / "config.json").write_text("[1, 2]")
    with pytest.raises(ModelLoadError, match="expected a JSON object"):
        ClaspModel.from_pretrained(folder)


def test_python_config_errors_are_value_errors():
    with pytest.raises(ValueError, match="embedding_dim must be an integer"):
        ClaspConfig(embedding_dim=7.5)
    assert isinstance(ClaspConfig(radius=8).radius, float)
