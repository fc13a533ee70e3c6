"""The one door for inputs on real structures: AMCSD and COD CIFs with the odd cases real data has.

The fixtures (``tests/fixtures/real_cifs``, described in its README and ``cases.json``) are real
CIFs copied unchanged: split sites, structures spglib cannot analyse at its default tolerance,
CIFs pymatgen refuses at its default occupancy tolerance, entries over 500 sites, misread element
labels, trace elements, one malformed CIF, and ordinary AMCSD and COD entries.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from pymatgen.core import Lattice, Structure
from pymatgen.io.cif import CifParser

from matminer_clasp.config import ClaspConfig
from matminer_clasp.errors import InvalidStructureError
from matminer_clasp.graph import CrystalGraphBuilder
from matminer_clasp.structures import (
    find_spacegroup,
    merge_close_sites,
    parse_cif,
    read_structures,
    to_structure,
)
from matminer_clasp.structures import symmetry as symmetry_mod
from matminer_clasp.structures.sites import close_pairs

FIXTURES = Path(__file__).parent / "fixtures" / "real_cifs"
CASES = json.loads((FIXTURES / "cases.json").read_text())
FUSED = ClaspConfig(cell="as_is", crystal_encoder="cgcnn+composition", use_spacegroup=True)


def _files(category: str) -> list[str]:
    return sorted(name for name, case in CASES.items() if case["category"] == category)


def _text(name: str) -> str:
    return (FIXTURES / name).read_text()


def _pymatgen_default(name: str) -> list[Structure]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return CifParser.from_str(_text(name)).parse_structures(primitive=False)
        except ValueError:
            return []


@pytest.mark.parametrize("name", _files("ordinary") + _files("cod"))
def test_clean_cifs_need_no_repair(name):
    structure, notes = parse_cif(_text(name))
    assert notes == []
    graph, graph_notes = CrystalGraphBuilder(FUSED).build(structure)
    assert graph_notes == []
    assert int(graph.spacegroup) == CASES[name]["declared_spacegroup_number"]
    assert structure.composition == _pymatgen_default(name)[0].composition


@pytest.mark.parametrize("name", _files("split_site"))
def test_split_sites_are_merged_with_a_note(name):
    structure, _ = parse_cif(_text(name))
    assert close_pairs(structure, 0.1)[0].size  # the CIF really has sites < 0.1 A apart
    merged, notes = merge_close_sites(structure, 0.1)
    assert len(notes) == 1 and notes[0].startswith("merged")
    assert close_pairs(merged, 0.1)[0].size == 0
    assert len(merged) < len(structure)
    if "scaled to 1" not in notes[0]:  # partial sites: the atoms are kept, not invented or lost
        before = structure.composition.element_composition
        after = merged.composition.element_composition
        for el in before:
            assert after[el] == pytest.approx(before[el], rel=1e-6)
    assert max(site.species.num_atoms for site in merged) <= 1 + 1e-6
    graph, graph_notes = CrystalGraphBuilder(FUSED).build(structure)
    assert graph_notes == notes and graph.num_nodes == len(merged)


@pytest.mark.parametrize("name", _files("symmetry_fail"))
def test_symmetry_failures_get_a_space_group(name):
    structure, _ = parse_cif(_text(name))
    result = find_spacegroup(structure)  # spglib fails at 0.01 on the structure as parsed
    assert 1 <= result.number <= 230
    assert "symprec=0.01" in result.notes[0]
    # the builder merges the near-duplicate sites first; spglib then finds the declared group
    graph, notes = CrystalGraphBuilder(FUSED).build(structure)
    assert int(graph.spacegroup) == CASES[name]["declared_spacegroup_number"]
    assert any(n.startswith("merged") for n in notes)


def test_symmetry_falls_back_to_the_cif_then_p1(monkeypatch):
    structure, _ = parse_cif(_text("ordinary-amcsd789.cif"))

    class Failing:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("spglib gave up")

    monkeypatch.setattr(symmetry_mod, "SpacegroupAnalyzer", Failing)
    monkeypatch.setattr(symmetry_mod, "_moyopy_number", lambda *args: None)  # the fast path too
    result = find_spacegroup(structure)
    assert result.number == 154 and result.analyzer is None
    assert "using the CIF's space group 154" in result.notes[0]
    plain = Structure(structure.lattice, structure.species, structure.frac_coords)
    result = find_spacegroup(plain)  # no CIF declaration: P1
    assert result.number == 1 and "using P1" in result.notes[0]
    graph, notes = CrystalGraphBuilder(FUSED).build(plain)  # never an error
    assert int(graph.spacegroup) == 1 and notes


@pytest.mark.parametrize("name", _files("occupancy_tolerance"))
def test_cifs_pymatgen_refuses_are_read_with_a_recorded_tolerance(name):
    assert _pymatgen_default(name) == []
    structure, notes = parse_cif(_text(name))
    assert notes[0].startswith(f"read with {CASES[name]['parsed_with']}")
    assert max(site.species.num_atoms for site in structure) <= 1 + 1e-6


@pytest.mark.parametrize("name", _files("label_repair"))
def test_misread_labels_are_repaired_from_the_cifs_own_formula(name):
    structure, notes = parse_cif(_text(name))
    assert CASES[name]["composition_note"] in notes
    wrong = CASES[name]["composition_note"].split()[1].split("->")[0]
    assert wrong not in {el.symbol for el in structure.composition.elements}


def test_trace_elements_are_kept_with_a_note():
    structure, notes = parse_cif(_text("trace_elements-amcsd18576.cif"))
    assert notes == ["trace elements Cr,Fe,Ni absent from the formula kept"]
    assert {"Ag", "Cu", "Fe"} <= {el.symbol for el in structure.composition.elements}


def test_a_malformed_cif_names_pymatgens_reason():
    with pytest.raises(InvalidStructureError, match=r"convert string to float: '6\.4235,'"):
        parse_cif(_text("parse_error-amcsd19001.cif"))


@pytest.mark.parametrize("name", _files("large"))
def test_large_structures_embed_at_inference_but_not_in_training(name, tiny_model):
    structure, _ = parse_cif(_text(name))
    assert len(structure) > 500
    with pytest.raises(InvalidStructureError, match="max_sites=500"):
        CrystalGraphBuilder(ClaspConfig(cell="as_is"))(structure)  # the training bound
    emb = tiny_model.encode_structures([structure])
    assert np.isfinite(emb).all()
    with pytest.raises(InvalidStructureError, match="max_sites=100"):
        tiny_model.encode_structures([structure], max_sites=100)


def test_read_structures_keeps_every_file_and_names_the_bad_one(tiny_model):
    records = read_structures(FIXTURES)
    assert len(records) == len(CASES)
    bad = records[records["structure"].isna()]
    assert list(bad["id"]) == ["parse_error-amcsd19001"]
    assert "6.4235" in bad["error"].iloc[0]
    noted = dict(zip(records["id"], records["note"]))
    assert noted["label_repair-amcsd9319"] == "repaired Nh->N"
    assert noted["ordinary-amcsd789"] is None
    good = records[records["structure"].notna()]
    emb, report = tiny_model.encode_structures(
        list(good["structure"]), ids=list(good["id"]), errors="raise", return_report=True)
    assert np.isfinite(emb).all() and not report.errors
    noted_ids = {good["id"].iloc[i] for i in report.notes}
    assert {f[:-4] for f in _files("split_site") + _files("symmetry_fail")} <= noted_ids


def test_to_structure_reads_every_form_of_one_structure(tmp_path):
    text = _text("ordinary-amcsd789.cif")
    path = tmp_path / "quartz.cif"
    path.write_text(text)
    reference, _ = parse_cif(text)
    for given in (text, path, str(path), reference, reference.as_dict(),
                  json.dumps(reference.as_dict())):
        structure, _ = to_structure(given)
        assert structure.composition == reference.composition and len(structure) == 9
    with pytest.raises(InvalidStructureError, match="neither CIF text"):
        to_structure("quartz")
    with pytest.raises(InvalidStructureError, match="'missing.cif' does not exist"):
        to_structure("missing.cif")
    with pytest.raises(InvalidStructureError, match="got None"):
        to_structure(None)


def test_merge_handles_a_group_across_the_cell_boundary():
    lat = Lattice.cubic(5.0)
    split = Structure(lat, [{"Fe": 0.5}, {"Fe": 0.5}, "O"],
                      [[0.999, 0.5, 0.5], [0.003, 0.5, 0.5], [0.5, 0.0, 0.0]])
    merged, notes = merge_close_sites(split, 0.1)
    assert len(merged) == 2 and notes
    fe = next(site for site in merged if site.species.elements[0].symbol == "Fe")
    # occupancy-weighted mean of x = -0.001 and 0.003 (unwrapped), not of 0.999 and 0.003
    assert fe.frac_coords[0] % 1.0 == pytest.approx(0.001, abs=1e-9)
    assert fe.species.num_atoms == pytest.approx(1.0)


@pytest.mark.parametrize("name", sorted(n for n in CASES if CASES[n]["category"] != "parse_error"))
def test_the_declared_space_group_is_kept_for_the_fallback(name):
    from matminer_clasp.structures.symmetry import DECLARED_SPACEGROUP

    structure, _ = parse_cif(_text(name))
    assert structure.properties[DECLARED_SPACEGROUP] == CASES[name]["declared_spacegroup_number"]


def test_moyopy_fast_path_agrees_with_the_spglib_ladder():
    """The number-only path (moyopy first) gives the spglib ladder's number and notes."""
    for path in sorted(FIXTURES.glob("*.cif")):
        if path.name.startswith("parse_error"):
            continue
        structure, _ = merge_close_sites(to_structure(str(path))[0], 0.1)
        full = find_spacegroup(structure)
        fast = find_spacegroup(structure, need_analyzer=False)
        assert (fast.number, fast.notes) == (full.number, full.notes), path.name
        assert full.analyzer is not None or fast.analyzer is None


def test_space_group_of_the_polytype_that_hung_moyopy_returns():
    """AMCSD 14071 made moyopy (5 degree angle tolerance) run forever: a child process with a
    deadline, so a regression fails here instead of hanging the suite."""
    code = (
        "import sys; from matminer_clasp.structures import read_structure_file;"
        "from matminer_clasp.graph_arrays import GraphArrayBuilder;"
        "from matminer_clasp.config import ClaspConfig;"
        "s = read_structure_file(sys.argv[1])[0];"
        "a, notes = GraphArrayBuilder(ClaspConfig(cell='as_is', use_spacegroup=True,"
        " crystal_encoder='cgcnn+composition')).build_arrays(s);"
        "print(a.spacegroup, notes)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(FIXTURES / "symmetry_hang-amcsd14071.cif")],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    expected = CASES["symmetry_hang-amcsd14071.cif"]["spglib_spacegroup"]["0.01"]
    assert done.stdout.split()[0] == str(expected)
