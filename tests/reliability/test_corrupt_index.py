"""An index folder read from disk is checked: bad rows, empty / truncated files, repair."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

from matminer_clasp.cli import main
from matminer_clasp.cli.corpus import BUNDLED_AMCSD_INDEX
from matminer_clasp.errors import IndexLoadError
from matminer_clasp.index import EmbeddingIndex

DIM = 32  # the tiny model's embedding size


def _index(tmp_path, dtype="float32", n=6):
    rng = np.random.default_rng(0)
    meta = pd.DataFrame({"id": [f"s{i}" for i in range(n)], "formula": ["NaCl"] * n})
    folder = tmp_path / "ix"
    EmbeddingIndex(rng.normal(size=(n, DIM)), meta, dtype=dtype).save(folder)
    return folder


def _edit_rows(folder, change):
    path = folder / "embeddings.npy"
    emb = np.load(path)
    change(emb)
    np.save(path, emb)


BAD_ROWS = {
    "nan": (lambda e: e.__setitem__((2, 5), np.nan), "1 non-finite rows: ids ['s2']"),
    "zero": (lambda e: e.__setitem__(3, 0.0), "1 all-zero rows: ids ['s3']"),
    "times_100": (lambda e: e.__setitem__(1, e[1] * 100), "1 not unit-norm rows (norms up to 100)"),
}


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("name", list(BAD_ROWS))
def test_bad_rows_are_refused_naming_file_and_id(tmp_path, name, dtype):
    change, words = BAD_ROWS[name]
    folder = _index(tmp_path, dtype)
    _edit_rows(folder, change)
    with pytest.raises(IndexLoadError) as info:
        EmbeddingIndex.load(folder)
    message = str(info.value)
    assert str(folder / "embeddings.npy") in message and words in message
    assert "repair=True" in message and "\n" not in message


def test_repair_drops_and_renormalises(tmp_path):
    folder = _index(tmp_path)
    good = EmbeddingIndex.load(folder, mmap=False).embeddings.copy()
    for change, _ in BAD_ROWS.values():
        _edit_rows(folder, change)
    with pytest.warns(UserWarning, match="repairing"):
        index = EmbeddingIndex.load(folder, repair=True)
    assert index.metadata["id"].tolist() == ["s0", "s1", "s4", "s5"]
    assert [r for r, _ in index.skipped] == ["s2", "s3"]
    np.testing.assert_allclose(np.linalg.norm(index.embeddings, axis=1), 1, atol=1e-6)
    np.testing.assert_allclose(index.embeddings[1], good[1], atol=1e-6)  # x100 row restored
    scores = index.search(np.asarray(good[1]), top_k=4)
    assert scores["id"].iloc[0] == "s1" and scores["score"].max() <= 1 + 1e-6


def test_cli_screen_refuses_then_repairs(tmp_path, rel_model_dir, capsys):
    folder = _index(tmp_path)
    _edit_rows(folder, lambda e: e.__setitem__(1, e[1] * 100))
    argv = ["screen", "garnet", "--index", str(folder), "--model", str(rel_model_dir)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "s1" in err
    assert main([*argv, "--repair", "--top-k", "3"]) == 0
    out = capsys.readouterr().out
    scores = [float(line.split()[-2]) for line in out.splitlines()[1:]]
    assert len(scores) == 3 and max(scores) <= 1.0


def _empty(folder):
    (folder / "embeddings.npy").write_bytes(b"")


def _truncated(folder):
    path = folder / "embeddings.npy"
    path.write_bytes(path.read_bytes()[:300])


def _header_only(folder):
    path = folder / "embeddings.npy"
    path.write_bytes(path.read_bytes()[:60])


def _no_metadata(folder):
    (folder / "metadata.parquet").unlink()


def _garbage_metadata(folder):
    (folder / "metadata.parquet").write_bytes(b"PAR1 not really")


def _bad_info(folder):
    path = folder / "index.json"
    info = json.loads(path.read_text())
    path.write_text(json.dumps({**info, "count": "six", "dtype": "int8"}))


def _wrong_count(folder):
    path = folder / "index.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "count": 7}))


def _wrong_dtype(folder):
    np.save(folder / "embeddings.npy", np.load(folder / "embeddings.npy").astype(np.float64))


BROKEN_FILES = {
    "empty_npy": (_empty, "embeddings.npy is empty"),
    "truncated_npy": (_truncated, "embeddings.npy is truncated"),
    "header_only_npy": (_header_only, "embeddings.npy is truncated"),
    "missing_metadata": (_no_metadata, "metadata.parquet not found"),
    "garbage_metadata": (_garbage_metadata, "metadata.parquet is unreadable"),
    "bad_index_json": (_bad_info, "index.json: 'count' must be a non-negative integer"),
    "wrong_count": (_wrong_count, "embeddings.npy has shape (6, 32), index.json says 7 x 32"),
    "wrong_dtype": (_wrong_dtype, "embeddings.npy holds float64, index.json says float32"),
}


@pytest.mark.parametrize("name", list(BROKEN_FILES))
@pytest.mark.parametrize("mmap", [True, False])
def test_broken_files_name_the_file(tmp_path, name, mmap):
    breaker, words = BROKEN_FILES[name]
    folder = _index(tmp_path)
    breaker(folder)
    with pytest.raises(IndexLoadError, match=words.replace("(", r"\(").replace(")", r"\)")):
        EmbeddingIndex.load(folder, mmap=mmap)


def test_cli_empty_npy_is_one_line(tmp_path, rel_model_dir, capsys):
    folder = _index(tmp_path)
    _empty(folder)
    code = main(["screen", "garnet", "--index", str(folder), "--model", str(rel_model_dir)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "embeddings.npy is empty" in err
    assert "Traceback" not in err


def test_shipped_fp16_index_passes_quickly():
    start = time.perf_counter()
    index = EmbeddingIndex.load(BUNDLED_AMCSD_INDEX)
    elapsed = time.perf_counter() - start
    assert index.dtype == "float16" and len(index) > 9000
    assert elapsed < 2.0  # parquet + checks; the row check itself is ~20 ms


def test_plausible_overwrite_fails_the_checksum(tmp_path):
    folder = _index(tmp_path)
    _edit_rows(folder, lambda e: e.__setitem__(0, e[5]))  # still a unit vector, but not s0's
    with pytest.raises(IndexLoadError, match="does not match the checksum in index.json"):
        EmbeddingIndex.load(folder)
    with pytest.warns(UserWarning, match="accepting"):
        assert len(EmbeddingIndex.load(folder, repair=True)) == 6


def test_index_without_checksum_is_row_checked(tmp_path):
    folder = _index(tmp_path)
    info = json.loads((folder / "index.json").read_text())
    del info["embeddings_crc32"]  # as written before checksums existed
    (folder / "index.json").write_text(json.dumps(info))
    assert len(EmbeddingIndex.load(folder)) == 6
    _edit_rows(folder, lambda e: e.__setitem__(4, np.inf))
    with pytest.raises(IndexLoadError, match="ids \\['s4'\\]"):
        EmbeddingIndex.load(folder)


def test_damaged_shipped_index_says_reinstall(tmp_path, monkeypatch):
    from matminer_clasp.cli import corpus

    folder = _index(tmp_path)
    _edit_rows(folder, lambda e: e.__setitem__(0, np.nan))
    monkeypatch.setattr(corpus, "BUNDLED_AMCSD_INDEX", folder)
    with pytest.raises(IndexLoadError, match="shipped with matminer-clasp is damaged.*reinstall"):
        corpus.bundled_amcsd_index("any")
