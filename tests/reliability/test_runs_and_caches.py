"""Nothing a user made is destroyed; caches are published atomically; no pickle from a config."""

from __future__ import annotations

import json
import threading
from argparse import Namespace

import numpy as np
import pandas as pd
import pytest
import torch

from matminer_clasp.atomic import publish_folder, temp_folder_for
from matminer_clasp.cli import corpus, main
from matminer_clasp.errors import InputError, RunExistsError
from matminer_clasp.index import EmbeddingIndex


# ----------------------------------------------------------------------------- train
def _fake_finished_run(folder):
    folder.mkdir(parents=True)
    for name in ("config.json", "model.safetensors", "metrics.csv", "train_config.json"):
        (folder / name).write_text(f"the user's {name}")
    (folder / "checkpoint-40").mkdir()
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def test_cli_train_refuses_a_used_output_folder(tmp_path, capsys):
    run = tmp_path / "run"
    before = _fake_finished_run(run)
    config = tmp_path / "train.json"
    config.write_text(json.dumps({"data": {"source": "table", "path": str(tmp_path / "t.csv")},
                                  "output_dir": str(tmp_path / "elsewhere")}))
    code = main(["train", str(config), "--output-dir", str(run)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"{run} already holds a training run" in err and "--resume" in err
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    assert (run / "checkpoint-40").is_dir()
    (run / "checkpoint-40").rmdir()  # a run with nothing to resume from
    code = main(["train", str(config), "--output-dir", str(run), "--resume"])
    assert code == 2 and "no complete checkpoint" in capsys.readouterr().err


def test_second_fit_into_a_finished_run_refuses(tmp_path):
    from matminer_clasp.model import ClaspModel
    from matminer_clasp.train.trainer import fit
    from tests.train.test_trainer import base_config, make_pairs, tiny_model_with_vocab

    init = tmp_path / "init"
    tiny_model_with_vocab(tmp_path).save_pretrained(init)
    pairs = make_pairs(ClaspModel.from_pretrained(init), n=12)
    splits = {"train": np.arange(8), "val": np.arange(8, 12), "test": np.arange(0)}
    cfg = base_config(tmp_path / "run", init, max_steps=2, checkpoint_every=1,
                      keep_checkpoints=1)
    out = fit(cfg, pairs=pairs, splits=splits)
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-2"]
    weights = (out / "model.safetensors").read_bytes()
    with pytest.raises(RunExistsError, match="already holds a training run"):
        fit(cfg, pairs=pairs, splits=splits)
    assert (out / "model.safetensors").read_bytes() == weights
    fit({**cfg, "resume": True, "max_steps": 3}, pairs=pairs, splits=splits)  # continuing is fine
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-3"]
    # resuming another run's checkpoint into this one would overwrite it: refused
    other = fit(base_config(tmp_path / "other", init, max_steps=1, checkpoint_every=1),
                pairs=pairs, splits=splits)
    weights = (out / "model.safetensors").read_bytes()
    with pytest.raises(RunExistsError, match="is not one of its own"):
        fit({**cfg, "resume": str(other / "checkpoint-1"), "max_steps": 4}, pairs=pairs,
            splits=splits)
    assert (out / "model.safetensors").read_bytes() == weights
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-3"]


def test_pruning_never_deletes_the_checkpoint_being_written(tmp_path):
    from matminer_clasp.model import ClaspModel
    from matminer_clasp.train.checkpoint import write_checkpoint
    from matminer_clasp.train.losses import make_loss
    from matminer_clasp.train.state import capture_rng
    from tests.conftest import make_tiny_model

    model = make_tiny_model(tmp_path)
    assert isinstance(model, ClaspModel)
    out = tmp_path / "run"
    (out / "checkpoint-900").mkdir(parents=True)  # a later step, e.g. from a resumed-from run
    args = (model, torch.optim.AdamW(model.parameters()), make_loss("infonce"), {},
            [capture_rng()])
    for step in (1, 2, 3):
        info = {"step": step, "world_size": 1, "data_fingerprint": "x", "best": None,
                "bad_evals": 0, "last_eval_step": -1}
        write_checkpoint(out, step, *args, info, keep=2)
    names = sorted(p.name for p in out.iterdir())
    assert names == ["checkpoint-2", "checkpoint-3", "checkpoint-900"]


# ----------------------------------------------------------------------------- caches
def test_publish_folder_race_and_replace(tmp_path):
    final = tmp_path / "cache" / "thing"
    a, b = temp_folder_for(final), temp_folder_for(final)
    (a / "who").write_text("a")
    (b / "who").write_text("b")
    assert publish_folder(a, final) is True
    assert publish_folder(b, final) is False  # lost the race: the winner's copy stays
    assert (final / "who").read_text() == "a"
    c = temp_folder_for(final)
    (c / "who").write_text("c")
    assert publish_folder(c, final, replace=True) is True
    assert (final / "who").read_text() == "c"
    assert [p.name for p in final.parent.iterdir()] == ["thing"]  # no stray temporary folder


def test_published_caches_and_outputs_have_the_usual_permissions(tmp_path):
    """Readable by whoever a plain mkdir / open would let read them (the umask), not 0700."""
    import importlib
    import os
    import stat

    import matminer_clasp.atomic as atomic_mod

    old = os.umask(0o022)
    try:
        importlib.reload(atomic_mod)  # reads the umask at import
        final = tmp_path / "shared" / "index"
        tmp = atomic_mod.temp_folder_for(final)
        (tmp / "f").write_text("x")
        atomic_mod.publish_folder(tmp, final)
        assert stat.S_IMODE(final.stat().st_mode) == 0o755
        atomic_mod.write_file_atomic(tmp_path / "t.parquet", b"x")
        assert stat.S_IMODE((tmp_path / "t.parquet").stat().st_mode) == 0o644
        assert stat.S_IMODE(atomic_mod.temp_file_for(tmp_path / "u").stat().st_mode) == 0o644
    finally:
        os.umask(old)
        importlib.reload(atomic_mod)


def test_concurrent_amcsd_cache_builders(tmp_path, monkeypatch):
    """Two processes' worth of builders meet at the worst moment: both built, both publish."""
    monkeypatch.setenv("MATMINER_CLASP_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(corpus, "model_hash", lambda name: "feedface")
    monkeypatch.setattr(corpus, "bundled_amcsd_index", lambda digest: None)
    monkeypatch.setattr(corpus, "amcsd_records", lambda args: None)
    both_built = threading.Barrier(2, timeout=30)
    seeds = iter([1, 2])
    lock = threading.Lock()

    def build_index(records, args, model):
        with lock:
            seed = next(seeds)
        rows = np.random.default_rng(seed).normal(size=(5, 8))
        index = EmbeddingIndex(rows, pd.DataFrame({"id": [f"{seed}-{i}" for i in range(5)]}))
        both_built.wait()  # both have checked the cache (empty) and built their index
        return index

    monkeypatch.setattr(corpus, "build_index", build_index)
    args = Namespace(model=None, amcsd_limit=None, amcsd_db=None, rebuild=False)
    results, errors = [], []

    def worker():
        try:
            results.append(corpus.amcsd_index(args, model=object()))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert [r.metadata["id"].tolist() for r in results][0] == results[1].metadata["id"].tolist()
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["amcsd-index-feedface"]

    # a damaged cache is rebuilt (replaced), not trusted and not a crash
    folder = tmp_path / "cache" / "amcsd-index-feedface"
    (folder / "embeddings.npy").write_bytes(b"")
    monkeypatch.setattr(corpus, "build_index", lambda r, a, m: EmbeddingIndex(np.eye(3)))
    index = corpus.amcsd_index(args, model=object())
    assert len(index) == 3
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["amcsd-index-feedface"]


def test_graph_cache_publication_is_atomic(tmp_path, structures):
    from matminer_clasp.train import graph_cache
    from tests.conftest import tiny_config

    config = tiny_config()
    graphs = [g for g, _ in (graph_cache.CrystalGraphBuilder(config).build(s)
                             for s in (structures["rocksalt"], structures["diamond"]))]
    folder = tmp_path / "graphs" / "key"
    barrier = threading.Barrier(2, timeout=30)
    real_publish = graph_cache.publish_folder

    def slow_publish(tmp, final, replace=False):
        barrier.wait()  # both have written their whole copy before either renames
        return real_publish(tmp, final, replace)

    graph_cache.publish_folder = slow_publish
    try:
        threads = [threading.Thread(target=graph_cache._save_cache,
                                    args=(folder, ["a", "b"], graphs, {}, {}, config))
                   for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        graph_cache.publish_folder = real_publish
    loaded = graph_cache._load_cache(folder)
    assert loaded is not None and loaded["ids"] == ["a", "b"]
    assert [p.name for p in folder.parent.iterdir()] == ["key"]


def test_damaged_text_cache_is_recomputed(tmp_path):
    from matminer_clasp.train.text_cache import text_features
    from tests.train.test_trainer import tiny_model_with_vocab

    model = tiny_model_with_vocab(tmp_path)
    captions = ["garnet", "spinel oxide"]
    cache = tmp_path / "run" / "text_features.safetensors"
    cache.parent.mkdir()
    first = text_features(model, captions, torch.device("cpu"), cache)
    cache.write_bytes(cache.read_bytes()[:50])  # truncated by a crash or a full disk
    again = text_features(model, captions, torch.device("cpu"), cache)
    torch.testing.assert_close(first, again)
    assert [p.name for p in cache.parent.iterdir()] == ["text_features.safetensors"]
    assert text_features(model, captions, torch.device("cpu"), cache).shape == first.shape


# ----------------------------------------------------------------------------- pickle tables
def test_pickle_table_from_a_config_is_refused(tmp_path):
    from matminer_clasp.readers import read_table
    from matminer_clasp.train.data import DataConfig
    from matminer_clasp.train.sources import read_entries

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (marker.write_text, ("code ran",))

    table = tmp_path / "pairs.pkl"
    pd.DataFrame({"structure": [Evil()], "caption": ["x"]}).to_pickle(table)
    assert not marker.exists()
    cfg = DataConfig(source="table", path=str(table))
    with pytest.raises(InputError, match="pairs.pkl is a pickle.*allow_pickle: true"):
        read_entries(cfg)
    with pytest.raises(InputError, match="is a pickle"):
        read_table(table)
    assert not marker.exists()  # nothing was unpickled
    with pytest.warns(UserWarning, match="unpickling"):
        read_table(table, allow_pickle=True)
    assert marker.read_text() == "code ran"  # what allow_pickle opts into


class _Evil:
    """Unpickling this writes a file: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (type(self.marker).write_text, (self.marker, "code ran"))


def test_cli_does_not_unpickle_inputs(tmp_path, rel_model_dir, capsys):
    marker = tmp_path / "pwned"
    table = tmp_path / "t.pkl"
    pd.DataFrame({"structure": [_Evil(marker)]}).to_pickle(table)
    code = main(["embed", str(table), str(tmp_path / "o.parquet"), "--model", str(rel_model_dir)])
    err = capsys.readouterr().err
    assert code == 1 and "error: none of the 1 inputs" in err  # not a structure file either
    assert not marker.exists()


@pytest.mark.parametrize("content", ['{"amcsd-1": 3}', "[1, 2]", "\xff not json"])
def test_damaged_amcsd_and_keyword_caches_are_rebuilt(tmp_path, monkeypatch, content):
    from matminer_clasp.train import amcsd
    from matminer_clasp.train.captions import keyword_captions

    db = tmp_path / "amcsd.db"
    db.write_text("stand-in for the SQLite file")
    cache_file = amcsd._entries_cache_file(db, tmp_path / "cache")
    cache_file.parent.mkdir(parents=True)
    cache_file.write_text(content)
    fresh = [{"id": "amcsd-1", "amcsd_id": 1, "cif": None}]
    monkeypatch.setattr(amcsd, "_read_with_larixite", lambda *a: fresh)
    assert amcsd.read_amcsd_entries(db, cache_dir=tmp_path / "cache") == fresh
    assert json.loads(cache_file.read_text()) == fresh
    assert [p.name for p in cache_file.parent.iterdir()] == [cache_file.name]

    keywords = tmp_path / "keywords.json"
    keywords.write_text(content)
    got = keyword_captions(["a garnet"], lambda titles: [["garnet"] for _ in titles], keywords)
    assert got == ["garnet"]
    assert list(json.loads(keywords.read_text()).values()) == [["garnet"]]
