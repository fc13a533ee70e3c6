"""A training process killed with SIGKILL mid-epoch resumes with nothing lost, and the featurizer
works inside a user's multiprocessing pool and in matminer's MultipleFeaturizer."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matminer.featurizers.base import MultipleFeaturizer
from matminer.featurizers.structure import DensityFeatures

from matminer_clasp.featurizers import ClaspFeaturizer
from matminer_clasp.model import ClaspModel
from matminer_clasp.train.trainer import fit
from tests.conftest import _structures
from tests.train.test_trainer import _splits, base_config, make_pairs, record, tiny_model_with_vocab

ROOT = Path(__file__).resolve().parents[2]

DRIVER = textwrap.dedent(
    """
    import json, os, signal, sys
    from matminer_clasp.model import ClaspModel
    from matminer_clasp.train.trainer import fit
    from tests.reliability.test_kill_and_pools import _splits, make_pairs

    cfg = json.loads(sys.argv[1])
    pairs = make_pairs(ClaspModel.from_pretrained(cfg["init_from"]))

    def die(row):
        if row["split"] == "train" and row["step"] == int(sys.argv[2]):
            os.kill(os.getpid(), signal.SIGKILL)  # no clean-up, no finally blocks

    fit(cfg, pairs=pairs, splits=_splits(pairs), callbacks=[die])
    """
)


@pytest.mark.slow
def test_sigkill_mid_epoch_then_resume_loses_nothing(tmp_path):
    import json

    model_dir = tmp_path / "model"
    tiny_model_with_vocab(tmp_path).save_pretrained(model_dir)
    pairs = make_pairs(ClaspModel.from_pretrained(model_dir))
    common = dict(max_steps=10, checkpoint_every=4, loss="infonce", precision="fp32",
                  schedule="cosine", warmup_steps=2)
    # 18 training pairs, batch 4 -> 4 steps per epoch: step 7 is in the middle of epoch 2
    full, cb = record()
    fit(base_config(tmp_path / "full", model_dir, **common), pairs=pairs,
        splits=_splits(pairs), callbacks=[cb])

    cfg = base_config(tmp_path / "killed", model_dir, **common)
    proc = subprocess.run([sys.executable, "-c", DRIVER, json.dumps(cfg), "7"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert (tmp_path / "killed" / "checkpoint-4").is_dir()
    assert not (tmp_path / "killed" / "checkpoint-8").exists()

    resumed, cb = record()
    fit({**cfg, "resume": True}, pairs=pairs, splits=_splits(pairs), callbacks=[cb])
    assert [r["step"] for r in resumed] == [5, 6, 7, 8, 9, 10]
    np.testing.assert_allclose([r["loss"] for r in resumed], [r["loss"] for r in full[4:]],
                               atol=1e-6)
    steps = pd.read_csv(tmp_path / "killed" / "metrics.csv")
    assert steps.loc[steps.split == "train", "step"].tolist() == list(range(1, 11))


def _featurize_one(args):
    folder, structure = args
    return ClaspFeaturizer(model=folder).featurize(structure)


def test_featurizer_in_a_user_multiprocessing_pool(rel_model_dir):
    structures = list(_structures().values())
    expected = ClaspFeaturizer(model=str(rel_model_dir)).featurize_many(structures, pbar=False)
    ctx = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    with ctx.Pool(2) as pool:
        got = pool.map(_featurize_one, [(str(rel_model_dir), s) for s in structures])
    np.testing.assert_allclose(np.array(got), np.array(expected), atol=1e-6)


def test_featurizer_in_multiple_featurizer_with_bad_rows(rel_model_dir):
    # (matminer's DensityFeatures itself fails on disordered sites, so those are left out)
    structures = [s for s in _structures().values() if s.is_ordered]
    df = pd.DataFrame({"structure": [*structures[:2], None, *structures[2:]]})
    clasp = ClaspFeaturizer(model=str(rel_model_dir))
    multi = MultipleFeaturizer([clasp, DensityFeatures()])
    out = multi.featurize_dataframe(df, "structure", ignore_errors=True, pbar=False)
    values = out[clasp.feature_labels()].to_numpy(dtype=float)
    assert np.isnan(values[2]).all()
    good = [0, 1, 3, 4]
    np.testing.assert_allclose(values[good], clasp.featurize_many(structures, pbar=False),
                               atol=1e-6)
    assert np.isfinite(out["density"].to_numpy(dtype=float)[good]).all()
