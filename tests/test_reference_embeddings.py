"""Speed work must not move the vectors: the bundled model against stored reference embeddings.

``tests/fixtures/reference`` holds the bundled model's embeddings of the real CIF fixtures and of
32 AMCSD entries (16 with distance ties at the 12th-neighbour cut between different species),
computed before the speed work of issue 12 (``make_reference.py`` there says how). Every row must
come back within float tolerance, and the same rows must fail with the same reasons and carry
the same notes. The work runs in a fresh interpreter (the bundled model's thread pools stay out
of the pytest process, which later tests fork).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve().parent
REFERENCE = HERE / "fixtures" / "reference"

SCRIPT = r"""
import json, sys, warnings
import numpy as np
warnings.filterwarnings("ignore")
from pathlib import Path
from matminer_clasp.model.clasp import ClaspModel

reference, cifs, out = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[4]
with_amcsd = sys.argv[3] == "1"
rows = json.loads((reference / "rows.json").read_text())
keep, items = [], []
amcsd = {}
if with_amcsd:
    from matminer_clasp.structures import parse_cif
    from matminer_clasp.train.amcsd import read_amcsd_entries
    ids = [int(r["name"].split(":")[1]) for r in rows if r["name"].startswith("amcsd:")]
    for entry in read_amcsd_entries(ids=ids):
        amcsd[entry["amcsd_id"]] = parse_cif(entry["cif"], entry.get("formula"))[0]
for i, row in enumerate(rows):
    kind, name = row["name"].split(":", 1)
    if kind == "fixture":
        items.append(str(cifs / name)); keep.append(i)
    elif int(name) in amcsd:
        items.append(amcsd[int(name)]); keep.append(i)
model = ClaspModel.from_pretrained()
emb, report = model.encode_structures(items, batch_size=16, errors="nan", return_report=True)
result = [{"row": i, "error": str(report.errors[k]) if k in report.errors else None,
           "notes": report.notes.get(k, [])} for k, i in enumerate(keep)]
np.save(out + ".npy", emb)
Path(out + ".json").write_text(json.dumps(result))
"""


@pytest.mark.slow
@pytest.mark.parametrize("with_amcsd", [
    False,
    pytest.param(True, marks=pytest.mark.skipif(
        importlib.util.find_spec("larixite") is None, reason="larixite (AMCSD) is not installed")),
])
def test_bundled_model_reproduces_reference_embeddings(tmp_path, with_amcsd):
    out = str(tmp_path / "emb")
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(REFERENCE), str(HERE / "fixtures" / "real_cifs"),
         "1" if with_amcsd else "0", out],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    expected = np.load(REFERENCE / "embeddings.npy")
    rows = json.loads((REFERENCE / "rows.json").read_text())
    got = np.load(out + ".npy")
    found = json.loads(Path(out + ".json").read_text())
    assert len(found) == (len(rows) if with_amcsd else sum(
        r["name"].startswith("fixture:") for r in rows))
    assert len(found) > 20
    for k, row in enumerate(found):
        ref = rows[row["row"]]
        assert row["error"] == ref["error"], ref["name"]
        assert row["notes"] == ref["notes"], ref["name"]
        want = expected[row["row"]]
        if ref["error"] is None:
            np.testing.assert_allclose(got[k], want, atol=2e-5, rtol=0, err_msg=ref["name"])
        else:
            assert np.isnan(got[k]).all() and np.isnan(want).all()
