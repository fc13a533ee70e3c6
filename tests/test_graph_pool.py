"""Graph building in worker processes gives what in-process building gives, and fails safely."""

from __future__ import annotations

import io
import multiprocessing
import pickle
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Molecule, Structure

from matminer_clasp import graph_pool
from matminer_clasp.errors import InvalidStructureError

CIFS = Path(__file__).parent / "fixtures" / "real_cifs"


def _inputs(structures):
    """Real CIF paths (odd cases included), structures, and inputs that fail in several ways."""
    paths = [str(p) for p in sorted(CIFS.glob("*.cif"))]
    overlapping = Structure(Lattice.cubic(4.0), ["Na", "Cl"], [[0, 0, 0], [0.001, 0, 0]])
    odd = [None, Molecule(["H", "H"], [[0, 0, 0], [0, 0, 0.74]]), overlapping,
           lambda: 0]  # the lambda cannot be pickled: its whole chunk is built in-process
    return paths + list(structures.values()) + odd


def _encode(model, items, workers):
    return model.encode_structures(items, batch_size=4, errors="nan", return_report=True,
                                   graph_workers=workers)


def test_workers_give_the_same_embeddings_errors_and_notes(tiny_model, structures):
    items = _inputs(structures)
    here, report_here = _encode(tiny_model, items, 0)
    there, report_there = _encode(tiny_model, items, 2)
    np.testing.assert_array_equal(np.isnan(here), np.isnan(there))
    np.testing.assert_allclose(there, here, atol=1e-6, equal_nan=True)
    assert {k: str(v) for k, v in report_there.errors.items()} == {
        k: str(v) for k, v in report_here.errors.items()}
    assert report_there.notes == report_here.notes
    assert report_here.notes and len(report_here.errors) >= 4  # the odd cases are in there


def test_a_dead_worker_costs_only_time(tiny_model, structures):
    items = list(structures.values()) * 4
    reference = tiny_model.encode_structures(items, batch_size=2, graph_workers=0)
    (worker,) = graph_pool.claim_workers(1)
    graph_pool.release_workers([worker])
    worker.process.kill()
    worker.process.wait()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = tiny_model.encode_structures(items, batch_size=2, graph_workers=1)
    np.testing.assert_allclose(out, reference, atol=1e-6)


def test_stopping_early_leaves_the_workers_usable(tiny_model, structures):
    good = list(structures.values())
    items = good * 2 + [None] + good * 2
    with pytest.raises(InvalidStructureError, match="structure 10") as caught:
        tiny_model.encode_structures(items, batch_size=2, graph_workers=1)
    # handed back at once, although the traceback still holds the call's frame
    assert caught.value is not None and not any(w.claimed for w in graph_pool._WORKERS)
    out = tiny_model.encode_structures(good * 3, batch_size=2, graph_workers=1)
    np.testing.assert_allclose(out, tiny_model.encode_structures(good * 3, graph_workers=0),
                               atol=1e-6)


def test_serve_answers_each_chunk_in_order(tiny_model, structures):
    config = tiny_model.config.to_dict()
    requests = io.BytesIO()
    for items in ([structures["rocksalt"], None], [structures["diamond"]]):
        graph_pool._send(requests, pickle.dumps((config, 500, items, None)))
    graph_pool._send(requests, b"not a pickle")
    requests.seek(0)
    answers = io.BytesIO()
    graph_pool.serve(requests, answers)
    answers.seek(0)
    first = pickle.loads(graph_pool._receive(answers))
    second = pickle.loads(graph_pool._receive(answers))
    third = pickle.loads(graph_pool._receive(answers))
    assert graph_pool._receive(answers) is None
    assert first[0] == "ok" and isinstance(first[1][1], InvalidStructureError)
    arrays, notes = first[1][0]
    assert arrays.x.shape[0] == len(structures["rocksalt"])
    assert arrays.nbr_idx.shape == arrays.nbr_dist.shape
    assert second[0] == "ok" and len(second[1]) == 1
    assert third[0] == "error"


def test_relative_paths_mean_the_callers_directory(tiny_model, tmp_path, monkeypatch):
    # workers outlive the directory they were started in: a relative path is read where the
    # caller is at the time of the call
    tiny_model.encode_structures([str(CIFS / "ordinary-amcsd789.cif")] * 6, batch_size=2,
                                 graph_workers=1)  # a worker started in the original directory
    folder = tmp_path / "cifs"
    folder.mkdir()
    shutil.copy(CIFS / "ordinary-amcsd789.cif", folder / "quartz.cif")
    monkeypatch.chdir(folder)
    emb, report = tiny_model.encode_structures(["quartz.cif"] * 6, batch_size=2, graph_workers=1,
                                               errors="nan", return_report=True)
    assert not report.errors
    np.testing.assert_allclose(emb, tiny_model.encode_structures(["quartz.cif"] * 6,
                                                                 graph_workers=0), atol=1e-6)


def test_auto_workers(monkeypatch):
    monkeypatch.delenv(graph_pool.WORKERS_ENV, raising=False)
    monkeypatch.setattr(graph_pool, "available_cpus", lambda: 8)
    assert graph_pool.auto_workers(128, 64) == 0  # two batches: not worth a worker
    assert graph_pool.auto_workers(129, 64) == graph_pool.MAX_AUTO_WORKERS
    assert graph_pool.auto_workers(None, 64) == graph_pool.MAX_AUTO_WORKERS
    monkeypatch.setattr(graph_pool, "available_cpus", lambda: 2)
    assert graph_pool.auto_workers(1000, 64) == 1
    monkeypatch.setattr(multiprocessing.current_process(), "daemon", True, raising=False)
    assert graph_pool.auto_workers(1000, 64) == 0
    monkeypatch.setenv(graph_pool.WORKERS_ENV, "3")
    assert graph_pool.auto_workers(10, 64) == 3
    for bad in ("-1", "two", "1.5"):
        monkeypatch.setenv(graph_pool.WORKERS_ENV, bad)
        with pytest.raises(ValueError, match=graph_pool.WORKERS_ENV):
            graph_pool.auto_workers(10, 64)


def test_workers_are_capped_across_callers(monkeypatch):
    monkeypatch.setattr(graph_pool, "available_cpus", lambda: 2)
    graph_pool.stop_workers()  # start from none (earlier tests' workers would count)
    first = graph_pool.claim_workers(2)
    try:
        second = graph_pool.claim_workers(2)  # another thread at the same time: none left
        assert len(first) == 2 and second == []
        assert len(graph_pool._WORKERS) == 2
    finally:
        graph_pool.release_workers(first)
    again = graph_pool.claim_workers(2)
    graph_pool.release_workers(again)
    assert len(again) == 2


class _StartingWorker:
    """A worker that has not answered yet (still importing): never ready until read."""

    def __init__(self, progress: list) -> None:
        self.busy = False
        self.claimed = True
        self.alive = True
        self.answered = 0
        self.submitted = 0
        self.read_at: list[int] = []  # chunks the caller had received when an answer was read
        self.progress = progress

    def submit(self, payload: bytes) -> bool:
        self.busy = True
        self.submitted += 1
        return True

    def ready(self) -> bool:
        return False

    def result(self):  # the real one would block until the worker has started
        self.busy = False
        self.read_at.append(len(self.progress))
        return None


def test_a_starting_worker_is_not_waited_for(monkeypatch):
    out: list = []
    worker = _StartingWorker(out)
    monkeypatch.setattr(graph_pool, "claim_workers", lambda n: [worker])
    monkeypatch.setattr(graph_pool, "release_workers", lambda pool: None)
    chunks = [[i, i + 1] for i in range(0, 10, 2)]
    for item in graph_pool.pipelined(iter(chunks), lambda items: b"x",
                                     lambda items: [v * 10 for v in items], lambda v: v, 1):
        out.append(item)
    assert [built for _, built in out] == [[v * 10 for v in c] for c in chunks]
    # its answer is read (and dropped) only after the last chunk: never waited for on the way
    assert worker.submitted == 1 and worker.read_at == [len(chunks)]
