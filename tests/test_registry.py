"""The model registry: every ``model=`` caller shares one load per (folder, device)."""

from __future__ import annotations

import argparse
import copy
import gc
import multiprocessing
import os
import pickle
import shutil
import threading
import time

import pandas as pd
import pytest
from sklearn.base import clone

from matminer_clasp import cli
from matminer_clasp.dask import featurize_partition
from matminer_clasp.featurizers import ClaspFeaturizer, ClaspTextFeaturizer
from matminer_clasp.index import EmbeddingIndex
from matminer_clasp.model import ClaspModel, registry
from matminer_clasp.model import io as model_io
from matminer_clasp.model.registry import MODEL_REGISTRY, ModelRegistry, get_model
from matminer_clasp.screening import screen
from matminer_clasp.zeroshot import ZeroShotClassifier

LABELS = ["ferroelectric", "garnet"]


@pytest.fixture
def folder(tiny_model_dir, tmp_path):
    """A private copy of the tiny model: no other test has loaded it."""
    return shutil.copytree(tiny_model_dir, tmp_path / "model")


@pytest.fixture
def loads(monkeypatch):
    """The folders ``model.io.load_model`` really loaded during the test."""
    calls: list[str] = []
    real = model_io.load_model

    def counted(name_or_path=None, *args, **kwargs):
        calls.append(os.fspath(name_or_path))
        return real(name_or_path, *args, **kwargs)

    monkeypatch.setattr(model_io, "load_model", counted)
    return calls


def test_every_caller_goes_through_the_registry(folder, loads, structures):
    items = list(structures.values())[:4]
    name = str(folder)
    shared = get_model(folder)
    assert loads == [name]

    featurizer = ClaspFeaturizer(folder, device="cpu")
    featurizer.featurize_many(items, pbar=False)
    ClaspTextFeaturizer(name, device="cpu").featurize("garnet")
    for twin in (copy.copy(featurizer), copy.deepcopy(featurizer), clone(featurizer),
                 pickle.loads(pickle.dumps(featurizer))):
        assert twin.get_model() is shared
    clf = ZeroShotClassifier(LABELS, model=name).fit()
    clf.predict(items)
    clone(clf).fit()
    pickle.loads(pickle.dumps(clf)).predict(items)
    screen("garnet", items, model=folder)
    EmbeddingIndex.build(items, model=name, show_progress_bar=False).search("garnet", 2)
    partition = pd.DataFrame({"structure": items})
    featurize_partition(partition, pickle.loads(pickle.dumps(featurizer)), "structure")
    assert cli.corpus.load_cli_model(argparse.Namespace(model=name, device=None)) is shared

    assert loads == [name]  # one load for all of them
    assert featurizer.get_model() is shared and clf._get_model() is shared


_FORKED_POOL = r"""
import sys

import numpy as np

sys.path.insert(0, sys.argv[2])
from tests.conftest import _structures  # noqa: E402

from matminer_clasp.featurizers import ClaspFeaturizer  # noqa: E402
from matminer_clasp.model import io as model_io  # noqa: E402

items = list(_structures().values())[:4]
featurizer = ClaspFeaturizer(sys.argv[1], device="cpu")
batched = featurizer.featurize_many(items, pbar=False)


def no_loading(*args, **kwargs):
    raise AssertionError("a worker loaded the model again")


model_io.load_model = no_loading
featurizer.set_n_jobs(2)
pooled = featurizer.featurize_many(items, pbar=False)
np.testing.assert_allclose(pooled, batched, atol=1e-6)
print("ok")
"""


@pytest.mark.skipif(
    multiprocessing.get_start_method() != "fork", reason="only forked workers inherit the model"
)
def test_forked_pool_workers_reuse_the_parents_model(folder):
    # in a fresh interpreter: forking the pytest process, whose earlier tests left thread pools
    # (torch, numba, dask) running, can deadlock a child regardless of the code under test
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    result = subprocess.run([sys.executable, "-c", _FORKED_POOL, str(folder), root],
                            capture_output=True, text=True, timeout=600, cwd=root)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")


def test_same_folder_and_device_is_one_model(folder, loads, monkeypatch):
    model = get_model(folder)
    assert get_model(str(folder), device="cpu") is model
    monkeypatch.chdir(folder.parent)
    assert get_model(folder.name) is model  # relative path, same folder
    assert get_model(model, device="meta") is model  # an instance is returned as is
    assert len(loads) == 1
    assert ClaspModel.from_pretrained(folder) is not model  # from_pretrained: always fresh


def test_changed_files_are_loaded_again(folder, loads):
    first = get_model(folder)
    weights = folder / "model.safetensors"
    stat = weights.stat()
    os.utime(weights, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    second = get_model(folder)
    assert second is not first and len(loads) == 2
    assert get_model(folder) is second


def test_concurrent_requests_load_once(folder, monkeypatch):
    calls = []
    real = model_io.load_model

    def slow(*args, **kwargs):
        calls.append(threading.get_ident())
        time.sleep(0.3)
        return real(*args, **kwargs)

    monkeypatch.setattr(model_io, "load_model", slow)
    got: list[ClaspModel] = []
    threads = [threading.Thread(target=lambda: got.append(get_model(folder))) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and len(got) == 4
    assert all(m is got[0] for m in got)


def test_bounded_size_and_weak_references(folder, tmp_path, loads):
    other = shutil.copytree(folder, tmp_path / "other")
    reg = ModelRegistry(maxsize=1)
    a = reg.get_model(folder)
    b = reg.get_model(other)
    assert reg.info().currsize == 1 and [k[0] for k in reg.loaded()] == [os.path.realpath(other)]
    assert reg.get_model(folder) is a  # evicted, but still alive here: not loaded twice
    assert len(loads) == 2
    del a
    assert reg.get_model(other) is b  # evicts the folder again; nothing else holds it now
    gc.collect()
    reg.get_model(folder)
    assert len(loads) == 3 and reg.info().loads == 3


def test_hub_ids_are_resolved_once(folder, monkeypatch):
    calls = []

    def fake(name, *args, **kwargs):
        calls.append(name)
        return folder

    monkeypatch.setattr(registry, "resolve_model_folder", fake)
    reg = ModelRegistry()
    assert reg.resolve_folder("org/name", revision="v1") == folder
    assert reg.resolve_folder("org/name", revision="v1") == folder
    reg.resolve_folder("org/name", revision="v2")
    assert calls == ["org/name", "org/name"]
    reg.clear()
    reg.resolve_folder("org/name", revision="v1")
    assert len(calls) == 3


def test_featurizer_follows_set_params(folder, tmp_path, loads):
    other = shutil.copytree(folder, tmp_path / "other")
    featurizer = ClaspFeaturizer(folder, device="cpu")
    first = featurizer.get_model()
    featurizer.set_params(model=other)
    assert featurizer.get_model() is not first
    assert featurizer.get_model() is MODEL_REGISTRY.get_model(other, "cpu")
    assert len(loads) == 2
