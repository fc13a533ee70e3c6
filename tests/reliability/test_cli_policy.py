"""One skip-and-report policy and one exit-code table for every CLI command."""

from __future__ import annotations

import pandas as pd
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifWriter

from matminer_clasp.cli import main


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """``mixed``: two good CIFs, one unreadable, one that reads but cannot be embedded."""
    root = tmp_path_factory.mktemp("cli-policy")
    mixed, broken = root / "mixed", root / "broken"
    mixed.mkdir()
    broken.mkdir()
    nacl = Structure.from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"],
                                     [[0, 0, 0], [0.5, 0.5, 0.5]])
    CifWriter(nacl).write_file(mixed / "nacl.cif")
    CifWriter(Structure(Lattice.cubic(3.6), ["Cu"], [[0, 0, 0]])).write_file(mixed / "cu.cif")
    # reads fine, but Z=118 has no CGCNN atom features: fails at embedding time
    CifWriter(Structure(Lattice.cubic(4.0), ["Og"], [[0, 0, 0]])).write_file(mixed / "og.cif")
    (mixed / "garbage.cif").write_text("data_x\n_not a cif at all\n")
    for name in ("a", "b"):
        (broken / f"{name}.cif").write_text("data_x\n_this is not a cif\n")
    return mixed, broken


def run(argv, capsys):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_classify_skips_an_unembeddable_file_and_names_it(folders, rel_model_dir, tmp_path,
                                                          capsys):
    mixed, _ = folders
    out_csv = tmp_path / "pred.csv"
    argv = ["classify", mixed, "--labels", "garnet,spinel", "--model", rel_model_dir,
            "--out", out_csv]
    code, _, err = run(argv, capsys)
    assert code == 0, err
    table = pd.read_csv(out_csv).set_index("id")
    assert table.loc["og", "error"].count("Og") and pd.isna(table.loc["og", "prediction"])
    assert "garbage" in table.index and pd.notna(table.loc["garbage", "error"])
    assert table.loc[["cu", "nacl"], "prediction"].notna().all()
    assert "og:" in err and "skipped 2 of 4" in err
    code, _, err = run([*argv, "--strict"], capsys)
    assert code == 1 and "error: 2 of 4 inputs failed (--strict)" in err


@pytest.mark.parametrize("command", ["embed", "classify", "index", "screen"])
def test_every_input_failing_exits_1(command, folders, rel_model_dir, tmp_path, capsys):
    _, broken = folders
    argv = {
        "embed": ["embed", broken, tmp_path / "e.parquet"],
        "classify": ["classify", broken, "--labels", "garnet,spinel"],
        "index": ["index", broken, "--out", tmp_path / "ix"],
        "screen": ["screen", "garnet", broken],
    }[command]
    code, _, err = run([*argv, "--model", rel_model_dir], capsys)
    assert code == 1, err
    assert err.strip().splitlines()[-1].startswith("error: none of the 2")
    assert "Traceback" not in err
    if command == "embed":  # the table with each row's reason is still written
        assert pd.read_parquet(tmp_path / "e.parquet")["error"].notna().all()


def test_partial_failure_exit_codes(folders, rel_model_dir, tmp_path, capsys):
    mixed, _ = folders
    base = ["embed", mixed, tmp_path / "e.parquet", "--model", rel_model_dir]
    code, out, err = run(base, capsys)
    assert code == 0 and "2/4" in out and "og" in err
    code, _, err = run([*base, "--strict", "--overwrite"], capsys)
    assert code == 1 and "(--strict)" in err
    code, _, err = run(["screen", "garnet", mixed, "--model", rel_model_dir, "--strict"], capsys)
    assert code == 1
    code, out, _ = run(["screen", "garnet", mixed, "--model", rel_model_dir], capsys)
    assert code == 0 and "nacl" in out


@pytest.mark.parametrize("k", ["0", "-1", "two"])
def test_top_k_must_be_positive(k, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main(["screen", "garnet", "--index", str(tmp_path), "--top-k", k])
    assert info.value.code == 2
    assert "--top-k" in capsys.readouterr().err


@pytest.mark.parametrize("option", ["--max-k", "--threads", "--max-batch"])
def test_serve_counts_must_be_positive(option, capsys):
    with pytest.raises(SystemExit) as info:
        main(["serve", "--amcsd", option, "0"])
    assert info.value.code == 2 and option in capsys.readouterr().err


def test_top_k_api():
    import numpy as np

    from matminer_clasp.index import EmbeddingIndex

    index = EmbeddingIndex(np.eye(4))
    for k in (0, -1):
        with pytest.raises(ValueError, match="top_k must be a whole number of at least 1"):
            index.search(np.eye(4)[:1], top_k=k)


GARBAGE = {
    "random_bytes": bytes(range(256)) * 8,
    "empty": b"",
    "text": b"hello world\n",
    "half_zip": b"PK\x03\x04" + b"\x00" * 100,
}


@pytest.mark.parametrize("name", list(GARBAGE))
def test_convert_garbage_is_one_line_exit_2(name, tmp_path, capsys):
    ckpt = tmp_path / f"{name}.ckpt"
    ckpt.write_bytes(GARBAGE[name])
    code, _, err = run(["convert", ckpt, tmp_path / "out"], capsys)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith(f"error: {ckpt} is not a readable PyTorch")
    assert not (tmp_path / "out").exists()
    with pytest.raises(Exception, match="not a readable PyTorch checkpoint"):
        main(["--traceback", "convert", str(ckpt), str(tmp_path / "out")])


def test_unexpected_errors_are_one_line_too(monkeypatch, capsys, tmp_path):
    import matminer_clasp.cli as cli

    def boom(args):
        raise IndexError("list index out of range")

    monkeypatch.setattr(cli, "cmd_merge", boom)  # build_parser reads the module's name
    code, _, err = run(["merge", tmp_path / "o", "a", "b"], capsys)
    assert code == 2
    assert err == ("error: IndexError: list index out of range (rerun with --traceback for "
                   "details)\n")


@pytest.mark.parametrize("command", ["convert", "merge", "index"])
def test_outputs_never_overwrite_a_users_folder(command, tmp_path, rel_model_dir, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "thesis.tex").write_text("months of work")
    argv = {
        "convert": ["convert", tmp_path / "x.ckpt", out],
        "merge": ["merge", out, rel_model_dir, rel_model_dir],
        "index": ["index", tmp_path, "--out", out, "--model", rel_model_dir],
    }[command]
    code, _, err = run(argv, capsys)
    assert code == 2 and f"{out} is not empty: refusing" in err
    assert [p.name for p in out.iterdir()] == ["thesis.tex"]


def test_index_rebuild_in_place_is_atomic(folders, rel_model_dir, tmp_path, capsys):
    from matminer_clasp.index import EmbeddingIndex

    mixed, _ = folders
    out = tmp_path / "ix"
    for _ in range(2):  # the second run rebuilds the index folder it wrote
        code, _, err = run(["index", mixed, "--out", out, "--model", rel_model_dir], capsys)
        assert code == 0, err
    assert sorted(EmbeddingIndex.load(out).metadata["id"]) == ["cu", "nacl"]
    assert [p.name for p in tmp_path.iterdir()] == ["ix"]  # no temporary or old folder left
    # a folder holding an index *and* a user's files is not rebuilt over them
    (out / "notes.txt").write_text("my notes on these hits")
    code, _, err = run(["index", mixed, "--out", out, "--model", rel_model_dir], capsys)
    assert code == 2 and "holds an index and other files (notes.txt)" in err
    assert (out / "notes.txt").read_text() == "my notes on these hits"


def test_embed_never_overwrites_a_table_without_being_asked(folders, rel_model_dir, tmp_path,
                                                           capsys):
    mixed, _ = folders
    out = tmp_path / "e.parquet"
    out.write_bytes(b"a table from last week")
    code, _, err = run(["embed", mixed, out, "--model", rel_model_dir], capsys)
    assert code == 2 and f"{out} exists: refusing to overwrite it" in err
    assert out.read_bytes() == b"a table from last week"
    code, _, _ = run(["embed", mixed, out, "--model", rel_model_dir, "--overwrite"], capsys)
    assert code == 0 and len(pd.read_parquet(out)) == 4
    assert [p.name for p in tmp_path.iterdir()] == ["e.parquet"]  # no temporary file left
