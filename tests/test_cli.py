from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from pymatgen.io.cif import CifWriter

from matminer_clasp import cli
from matminer_clasp.index import EmbeddingIndex


@pytest.fixture(scope="module")
def cif_dir(tmp_path_factory, structures):
    folder = tmp_path_factory.mktemp("cifs")
    for name, s in structures.items():
        if name != "disordered":
            CifWriter(s).write_file(folder / f"{name}.cif")
    (folder / "broken.cif").write_text("data_broken\n_this is not a cif\n")
    (folder / "notes.txt").write_text("ignored")
    return folder


@pytest.fixture(scope="module")
def model_args(tiny_model_dir):
    return ["--model", str(tiny_model_dir)]


def run(argv, capsys):
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_help_subprocess():
    res = subprocess.run(["matminer-clasp", "--help"], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0
    for command in ("embed", "index", "screen", "classify", "plot", "convert", "train", "evaluate",
                    "merge", "interpolate"):
        assert command in res.stdout


@pytest.mark.parametrize("command", ["embed", "index", "screen", "classify", "plot", "convert",
                                     "train", "evaluate", "merge", "compare",
                                     "interpolate"])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main([command, "--help"])
    assert exc.value.code == 0
    assert "usage: matminer-clasp " + command in capsys.readouterr().out


def test_embed_folder_with_bad_file_and_shards(cif_dir, model_args, tiny_model, structures,
                                               tmp_path, capsys):
    code, out, err = run(["embed", cif_dir, tmp_path / "all.parquet", *model_args], capsys)
    assert code == 0, err
    table = pd.read_parquet(tmp_path / "all.parquet")
    assert table["id"].tolist() == ["broken", "diamond", "hexagonal", "rocksalt", "triclinic"]
    assert "broken" in err and "4/5" in out
    clasp = [c for c in table.columns if c.startswith("clasp_")]
    assert table.loc[0, "error"] and np.isnan(table.loc[0, clasp].to_numpy(float)).all()
    assert table["formula"].tolist() == ["", "Si", "ZnO", "NaCl", "CaAlSiO3"]
    assert table["error"].iloc[1:].isna().all()
    expected = tiny_model.encode_structures([structures[n] for n in table["id"].iloc[1:]])
    np.testing.assert_allclose(table.loc[1:, clasp].to_numpy(float), expected, atol=1e-5)
    assert clasp == [f"clasp_{i}" for i in range(32)]

    parts = []
    for i in range(3):
        code, _, err = run(["embed", cif_dir, tmp_path / f"s{i}.parquet", "--shard", f"{i}/3",
                            *model_args], capsys)
        assert code == (1 if i == 0 else 0), err  # shard 0 holds only broken.cif: all failed
        parts.append(pd.read_parquet(tmp_path / f"s{i}.parquet"))
    assert [len(p) for p in parts] == [1, 2, 2]
    pd.testing.assert_frame_equal(pd.concat(parts, ignore_index=True), table, atol=1e-5)


def test_index_then_screen_round_trip(cif_dir, model_args, tiny_model, structures, tmp_path,
                                      capsys):
    code, out, err = run(["index", cif_dir, "--out", tmp_path / "ix", *model_args], capsys)
    assert code == 0, err
    assert "indexed 4 structures (1 skipped)" in out
    index = EmbeddingIndex.load(tmp_path / "ix")
    assert len(index) == 4
    code, out, err = run(["screen", "garnet", "--index", tmp_path / "ix", "--top-k", 3,
                          "--csv", tmp_path / "hits.csv", *model_args], capsys)
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0].split() == ["id", "formula", "score", "rank"] and len(lines) == 4
    hits = pd.read_csv(tmp_path / "hits.csv")
    names = ["diamond", "hexagonal", "rocksalt", "triclinic"]
    emb = tiny_model.encode_structures([structures[n] for n in names])
    cos = emb @ tiny_model.encode_texts("garnet")[0]
    assert hits["id"].tolist() == [names[i] for i in np.argsort(-cos)[:3]]
    assert lines[1].split()[0] == hits["id"].iloc[0]
    # the same ranking straight from the folder, and from the embed output
    code, out2, _ = run(["screen", "garnet", cif_dir, "--top-k", 3, *model_args], capsys)
    assert code == 0 and out2 == out
    run(["embed", cif_dir, tmp_path / "e.parquet", *model_args], capsys)
    code, out3, _ = run(["screen", "garnet", tmp_path / "e.parquet", "--top-k", 3, *model_args],
                        capsys)
    assert code == 0 and out3 == out
    # fp16 index
    code, _, err = run(["index", cif_dir, "--out", tmp_path / "half", "--fp16", *model_args],
                       capsys)
    assert code == 0 and EmbeddingIndex.load(tmp_path / "half").dtype == "float16"


def test_amcsd_index_is_cached(monkeypatch, structures, model_args, tmp_path, capsys):
    import matminer_clasp.train.data as data

    calls = []

    def fake_amcsd(**kwargs):  # stands in for the AMCSD download/parsing, not under test here
        calls.append(kwargs)
        names = list(structures)[:4]
        frame = pd.DataFrame({"id": [f"amcsd-{i}" for i in range(4)],
                              "structure": [structures[n] for n in names],
                              "title": [f"The crystal structure of {n}" for n in names],
                              "mineral": ["halite", None, "zincite", None]})
        frame.attrs["skipped"] = {"amcsd-99": "InvalidStructureError: occupancy 2 > 1"}
        return frame

    monkeypatch.setattr(data, "load_amcsd_records", fake_amcsd)
    monkeypatch.setenv("MATMINER_CLASP_CACHE", str(tmp_path / "cache"))
    code, out, err = run(["screen", "garnet", "--amcsd", "--top-k", 2, *model_args], capsys)
    assert code == 0, err
    assert len(calls) == 1 and "amcsd-99: InvalidStructureError" in err and "skipped 1 of" in err
    cached = list((tmp_path / "cache").iterdir())
    assert len(cached) == 1 and cached[0].name.startswith("amcsd-index-")
    assert "title" in out.splitlines()[0] and "The crystal structure of" in out
    code, out2, _ = run(["screen", "garnet", "--amcsd", "--top-k", 2, *model_args], capsys)
    assert code == 0 and out2 == out and len(calls) == 1  # second run: no re-embedding


def test_classify(cif_dir, model_args, tmp_path, capsys):
    code, out, err = run(["classify", cif_dir, "--labels", "garnet,spinel,perovskite",
                          "--out", tmp_path / "pred.csv", *model_args], capsys)
    assert code == 0, err
    pred = pd.read_csv(tmp_path / "pred.csv")
    assert list(pred.columns[:5]) == ["id", "prediction", "p_garnet", "p_spinel", "p_perovskite"]
    good = pred[pred["id"] != "broken"]
    assert set(good["prediction"]) <= {"garnet", "spinel", "perovskite"}
    np.testing.assert_allclose(good[["p_garnet", "p_spinel", "p_perovskite"]].sum(axis=1), 1)
    assert pred.loc[pred["id"] == "broken", "prediction"].isna().all()
    code, out, err = run(["classify", cif_dir, "--labels", "ferroelectric", "--binary",
                          *model_args], capsys)
    assert code == 0, err
    assert out.splitlines()[0].split()[:4] == ["id", "prediction", "p_no", "p_yes"]


def test_plot_writes_png(cif_dir, model_args, tmp_path, capsys):
    code, _, err = run(["index", cif_dir, "--out", tmp_path / "ix", *model_args], capsys)
    assert code == 0, err
    png = tmp_path / "map.png"
    code, out, err = run(["plot", "--index", tmp_path / "ix", "--out", png, "--method", "pca",
                          "--query", "garnet", *model_args], capsys)
    assert code == 0, err
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, _, err = run(["plot", cif_dir, "--out", tmp_path / "f.png", "--method", "pca",
                        "--labels-column", "formula", *model_args], capsys)
    assert code == 0, err
    assert (tmp_path / "f.png").stat().st_size > 1000


def test_table_inputs(structures, model_args, tmp_path, capsys):
    names = list(structures)
    rows = [{"id": n, "structure": json.dumps(s.as_dict())} for n, s in structures.items()]
    rows.append({"id": "junk", "structure": "not a structure"})
    pd.DataFrame(rows).to_json(tmp_path / "t.jsonl", orient="records", lines=True)
    pd.DataFrame(rows).to_parquet(tmp_path / "t.parquet")
    for name in ("t.jsonl", "t.parquet"):
        out_file = tmp_path / f"o-{name}.parquet"
        code, out, err = run(["embed", tmp_path / name, out_file, *model_args], capsys)
        assert code == 0, err
        table = pd.read_parquet(out_file)
        assert table["id"].tolist() == [*names, "junk"]
        assert table["error"].notna().tolist() == [False] * 5 + [True]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["embed", "/nonexistent/x", "o.parquet"], "does not exist"),
        (["screen", "garnet", "--top-k", "3"], "give an INPUT path, --index DIR or --amcsd"),
        (["screen", "garnet", "--index", "/nonexistent"], "not an embedding index"),
        (["classify", "{cifs}", "--labels", "garnet"], "at least two labels"),
        (["plot", "{cifs}", "--out", "x.png", "--labels-column", "colour"], "no column 'colour'"),
        (["screen", "garnet", "{cifs}", "--model", "/nonexistent/model"], "does not exist"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, message, cif_dir, model_args, capsys, tmp_path,
                                         monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = [a.replace("{cifs}", str(cif_dir)) for a in argv]
    if "--model" not in argv:
        argv += model_args
    code, out, err = run(argv, capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert lines[-1].startswith("error: ") and message in lines[-1]


def test_bad_shard_is_a_usage_error(cif_dir, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["embed", str(cif_dir), "o.parquet", "--shard", "3/3"])
    assert exc.value.code == 2
    assert "0 <= I < N" in capsys.readouterr().err


def test_python_dash_m_help():
    res = subprocess.run([sys.executable, "-m", "matminer_clasp.cli", "screen", "--help"],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0 and "--amcsd" in res.stdout
