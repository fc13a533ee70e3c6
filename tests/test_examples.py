"""Every script in examples/ runs to completion in fast mode with a tiny model folder.

Each example is started the way a user starts it (``python examples/X.py``, a fresh process),
with ``MATMINER_CLASP_EXAMPLE_FAST=1`` and ``--model <tiny folder>``; the test checks the exit
status and a line of the expected output.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

pytestmark = pytest.mark.slow

HAS_AMCSD = importlib.util.find_spec("larixite") is not None
needs_amcsd = pytest.mark.skipif(not HAS_AMCSD, reason="larixite (AMCSD) is not installed")

#: script -> (extra arguments, texts the output must contain)
CASES = {
    "01_quickstart_featurize.py": (
        [], ["cosine similarity (structure x word)", "NaN row for water"]
    ),
    "02_zero_shot_screen_amcsd.py": (
        ["--max-items", "80"], ["top 10 for 'garnet'", "zero-shot family accuracy"]
    ),
    "03_finetune_small_model.py": ([], ["trained model written to", "before:", "after:"]),
    "04_convert_official_checkpoint.py": (
        [], ["SYNTHETIC checkpoint", "max |converted - source|"]
    ),
    "05_dask_embedding.py": ([], ["cluster: 2 workers", "max |dask - single process|"]),
}


def test_every_example_is_tested():
    scripts = sorted(p.name for p in EXAMPLES.glob("*.py"))
    assert scripts == sorted(CASES), "add new examples to CASES"


def _run(script: str, args: list[str], tmp_path: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env.update(
        MATMINER_CLASP_EXAMPLE_FAST="1",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",
        MPLBACKEND="Agg",
        MATMINER_CLASP_CACHE=str(tmp_path / "cache"),
        # forked Dask workers start at once; spawned ones re-import torch (slow on 2 cores)
        DASK_DISTRIBUTED__WORKER__MULTIPROCESSING_METHOD="fork",
    )
    return subprocess.run(
        [sys.executable, str(EXAMPLES / script), *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )


@pytest.mark.parametrize(
    "script",
    [
        pytest.param(name, marks=needs_amcsd) if "amcsd" in name or name.startswith("03")
        else name
        for name in CASES
    ],
)
def test_example_runs(script, tiny_model_dir, tmp_path):
    args, expected = CASES[script]
    model_args = [] if script.startswith("04") else ["--model", str(tiny_model_dir)]
    proc = _run(script, [*model_args, *args], tmp_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"{script} failed:\n{output[-4000:]}"
    for text in expected:
        assert text in proc.stdout, f"{script}: {text!r} not in output:\n{output[-4000:]}"
