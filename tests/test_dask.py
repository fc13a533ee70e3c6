"""Dask scale-out: a real 2-process LocalCluster equals the single-process featurize_dataframe.

One cluster serves every test in this module (starting worker processes that import torch costs
seconds). Model loads are counted per worker by the model registry's own counter; nothing under
test is replaced.
"""

from __future__ import annotations

import multiprocessing
import pickle

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import Lattice, Molecule, Structure

dask = pytest.importorskip("dask")
dd = pytest.importorskip("dask.dataframe")
distributed = pytest.importorskip("distributed")

from matminer_clasp.dask import embed_dask_dataframe, featurize_partition  # noqa: E402
from matminer_clasp.featurizers import ClaspFeaturizer, ClaspTextFeaturizer  # noqa: E402

pytestmark = pytest.mark.slow

N_ROWS, BAD_ROW, N_PARTS = 24, 9, 6


def _count_loads() -> None:
    """Run in each worker: forget inherited models, then count real model loads from here on."""
    from matminer_clasp.model.registry import MODEL_REGISTRY

    MODEL_REGISTRY.clear()


def _loads() -> int:
    from matminer_clasp.model.registry import MODEL_REGISTRY

    return MODEL_REGISTRY.info().loads


def _single_thread() -> None:
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def client():
    # forked workers start in well under a second (they inherit the imported torch); spawned ones
    # re-import everything (tens of seconds on a busy 2-core machine)
    method = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
    settings = {"distributed.worker.multiprocessing-method": method}
    with dask.config.set(settings), distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
        silence_logs=40,
    ) as cluster, distributed.Client(cluster) as c:
        c.run(_single_thread)
        yield c


@pytest.fixture(scope="module")
def frame(structures):
    base = list(structures.values())
    rows: list = []
    for i in range(N_ROWS):
        s = base[i % len(base)].copy()
        s.scale_lattice(s.volume * (0.95 + 0.01 * i))
        rows.append(s)
    rows[BAD_ROW] = Molecule(["O", "H", "H"], [[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]])
    return pd.DataFrame(
        {"structure": rows, "id": [f"mp-{i}" for i in range(N_ROWS)]},
        index=pd.RangeIndex(100, 100 + N_ROWS),
    )


def _to_dask(df: pd.DataFrame, n: int = N_PARTS):
    with dask.config.set({"dataframe.convert-string": False}):
        return dd.from_pandas(df, npartitions=n, sort=False)


def test_cluster_matches_single_process(client, frame, tiny_model_dir):
    featurizer = ClaspFeaturizer(tiny_model_dir, batch_size=4)
    expected = featurizer.featurize_dataframe(
        frame, "structure", ignore_errors=True, return_errors=True, pbar=False
    )
    client.run(_count_loads)
    lazy = embed_dask_dataframe(_to_dask(frame), "structure", featurizer, return_errors=True)
    assert lazy.npartitions == N_PARTS
    got = lazy.compute()

    labels = featurizer.feature_labels()
    assert list(got.columns) == list(expected.columns)
    assert list(got.index) == list(frame.index)
    assert list(got["id"]) == list(frame["id"])
    emb, ref = got[labels].to_numpy(), expected[labels].to_numpy()
    assert np.isnan(emb[BAD_ROW]).all() and np.isnan(ref[BAD_ROW]).all()
    good = [i for i in range(N_ROWS) if i != BAD_ROW]
    assert np.isfinite(emb[good]).all()
    np.testing.assert_allclose(emb[good], ref[good], atol=1e-6, rtol=0)
    errors = got["ClaspFeaturizer Exceptions"]
    assert "Molecule" in errors.iloc[BAD_ROW] or "Structure" in errors.iloc[BAD_ROW]
    assert errors.drop(errors.index[BAD_ROW]).isna().all()
    # the structures travelled as objects, not strings
    assert isinstance(got["structure"].iloc[0], Structure)

    # every worker that featurized loaded the model exactly once, for several partitions
    loads = client.run(_loads)
    assert sum(loads.values()) >= 1
    assert all(n <= 1 for n in loads.values()), loads


def test_task_graph_carries_no_weights(tiny_model_dir, frame):
    import cloudpickle

    featurizer = ClaspFeaturizer(tiny_model_dir)
    featurizer.get_model()  # loaded here: must still not be pickled
    weights = (tiny_model_dir / "model.safetensors").stat().st_size
    assert len(pickle.dumps(featurizer)) < 4096 < weights

    ddf = _to_dask(frame, 3)
    with_model = embed_dask_dataframe(ddf, "structure", featurizer)
    without = ddf.map_partitions(lambda p: p, meta=ddf._meta)
    size = len(cloudpickle.dumps(dict(with_model.__dask_graph__())))
    base = len(cloudpickle.dumps(dict(without.__dask_graph__())))
    assert size - base < 8192 < weights


def test_text_column_on_cluster(client, tiny_model_dir):
    texts = pd.DataFrame({"text": ["garnet", "ferroelectric oxide", "", "high pressure spinel"]})
    featurizer = ClaspTextFeaturizer(tiny_model_dir)
    expected = featurizer.featurize_dataframe(texts, "text", ignore_errors=True, pbar=False)
    got = embed_dask_dataframe(dd.from_pandas(texts, npartitions=2), "text", featurizer).compute()
    labels = featurizer.feature_labels()
    assert np.isnan(got[labels].to_numpy()[2]).all()
    np.testing.assert_allclose(
        got[labels].to_numpy(), expected[labels].to_numpy(), atol=1e-6, equal_nan=True
    )


def test_clear_errors(tiny_model_dir, frame, tiny_model):
    with dask.config.set({"dataframe.convert-string": True}):
        stringified = dd.from_pandas(frame, npartitions=2)
    with pytest.raises(ValueError, match="convert-string"):
        embed_dask_dataframe(stringified, "structure", ClaspFeaturizer(tiny_model_dir))
    with pytest.raises(ValueError, match="no column 'structures'"):
        embed_dask_dataframe(_to_dask(frame), "structures", ClaspFeaturizer(tiny_model_dir))
    with pytest.raises(TypeError, match="save_pretrained"):
        embed_dask_dataframe(_to_dask(frame), "structure", ClaspFeaturizer(tiny_model))


def test_partition_function_handles_empty_and_all_bad(tiny_model_dir):
    featurizer = ClaspFeaturizer(tiny_model_dir)
    empty = pd.DataFrame({"structure": pd.Series([], dtype=object)})
    out = featurize_partition(empty, featurizer, "structure")
    assert len(out) == 0 and list(out.columns)[1:] == featurizer.feature_labels()
    bad = pd.DataFrame({"structure": [Structure(Lattice.cubic(4.0), ["Md"], [[0, 0, 0]])]})
    out = featurize_partition(bad, featurizer, "structure")
    labels = featurizer.feature_labels()
    assert (out[labels].dtypes == np.float64).all() and out[labels].isna().all().all()
