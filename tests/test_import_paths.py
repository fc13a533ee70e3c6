"""Text-only commands import neither the crystal side nor transformers' modelling code.

A query against an existing index (or a classification of stored embeddings) needs the text
half of the model only. Each command below runs in a fresh interpreter, which then lists the
modules it imported; the guarded ones cost seconds at start-up (``python -X importtime``:
torch_geometric ~5 s, transformers' BERT modelling ~3 s, pymatgen + spglib ~1 s).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from matminer_clasp.index import EmbeddingIndex

#: Top-level packages and modules a text-only command must not import.
FORBIDDEN = (
    "torch_geometric",
    "pymatgen",
    "matminer",
    "spglib",
    "matminer_clasp.graph",
    "matminer_clasp.structures",
    "matminer_clasp.model.clasp",
    "matminer_clasp.model.crystal",
    "matminer_clasp.model.ensemble",
    "transformers.modeling_utils",
    "transformers.models.bert.modeling_bert",
)

_RUNNER = """
import json, sys
from matminer_clasp.cli import main
code = main(json.loads(sys.argv[1]))
print("@@MODULES@@" + json.dumps(sorted(sys.modules)))
sys.exit(code)
"""


def _run(argv: list[str], tmp_path: Path) -> tuple[str, list[str]]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MATMINER_CLASP_CACHE": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-c", _RUNNER, json.dumps(argv)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out, _, modules = proc.stdout.rpartition("@@MODULES@@")
    return out, json.loads(modules)


def _forbidden(modules: list[str]) -> list[str]:
    return [m for m in modules if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)]


@pytest.fixture()
def tiny_index(tiny_model, tiny_model_dir, structures, tmp_path) -> Path:
    items = list(structures.values())
    index = EmbeddingIndex.build(items, ids=list(structures), model=tiny_model)
    index.model = str(tiny_model_dir)
    return index.save(tmp_path / "index")


def test_screen_on_an_index_is_text_only(tiny_index, tiny_model_dir, tmp_path):
    out, modules = _run(["screen", "garnet", "--index", str(tiny_index),
                         "--model", str(tiny_model_dir), "--top-k", "3"], tmp_path)
    assert "rank" in out
    assert _forbidden(modules) == []


def test_classify_on_stored_embeddings_is_text_only(tiny_model, tiny_model_dir, structures,
                                                    tmp_path):
    emb = tiny_model.encode_structures(list(structures.values()))
    table = pd.DataFrame(emb, columns=[f"clasp_{i}" for i in range(emb.shape[1])])
    table.insert(0, "id", list(structures))
    table.to_parquet(tmp_path / "emb.parquet")
    out, modules = _run(["classify", str(tmp_path / "emb.parquet"), "--labels",
                         "garnet,spinel", "--model", str(tiny_model_dir)], tmp_path)
    assert "p_garnet" in out and np.all([name in out for name in structures])
    assert _forbidden(modules) == []


def test_bundled_amcsd_screen_parses_no_cif_and_is_text_only(tmp_path):
    out, modules = _run(["screen", "garnet", "--amcsd", "--top-k", "10"], tmp_path)
    assert _forbidden(modules) == []
    assert "larixite" not in {m.split(".")[0] for m in modules}  # the database was not read
    assert not (tmp_path / "cache").exists() or not any((tmp_path / "cache").iterdir())
    garnets = {"Andradite", "Grossular", "Pyrope", "Almandine", "Spessartine", "Uvarovite",
               "Goldmanite", "Majorite", "Henritermierite", "Hibschite", "Katoite", "Kimzeyite",
               "Schorlomite", "Calderite", "Knorringite", "Morimotoite", "Menzerite-(Y)"}
    hits = [line for line in out.splitlines() if any(g in line for g in garnets)]
    assert len(hits) >= 8, out
