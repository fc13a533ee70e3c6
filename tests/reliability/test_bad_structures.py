"""Catalogue of bad structure inputs: each gives its own clear error, or a NaN row with the error
kept under ``ignore_errors`` / ``return_errors``, and every other row stays intact."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pymatgen.core import DummySpecies, Lattice, Molecule, Structure

from matminer_clasp.errors import InvalidStructureError
from matminer_clasp.model import ClaspModel


def _good() -> Structure:
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )


def _nan_coords() -> Structure:
    return Structure(Lattice.cubic(4.0), ["Cu", "Cu"], [[0, 0, 0], [np.nan, 0.5, 0.5]])


def _too_many_sites() -> Structure:
    s = Structure(Lattice.cubic(3.0), ["Fe"], [[0, 0, 0]])
    s.make_supercell([18, 16, 18])  # 5,184 sites > the inference bound of 5,000
    return s


BAD = {
    "molecule": (Molecule(["C", "O"], [[0, 0, 0], [0, 0, 1.13]]), "Molecule"),
    "empty": (Structure(Lattice.cubic(4.0), [], []), "no sites"),
    "too_many_sites": (_too_many_sites(), "max_sites"),
    "nan_coordinates": (_nan_coords(), "NaN"),
    "dummy_species": (
        Structure(Lattice.cubic(4.0), [DummySpecies("X"), "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        "dummy",
    ),
    "element_without_features": (
        Structure(Lattice.cubic(4.0), ["Og", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        "no CGCNN atom features",
    ),
    "none": (None, "got None"),
    "string": ("NaCl", "neither CIF text"),
    "dict": ({"lattice": 1}, "type dict"),
}

VALID_ODDITIES = {
    "one_atom": Structure(Lattice.cubic(2.87), ["Fe"], [[0, 0, 0]]),
    "huge_lattice": Structure(Lattice.cubic(500.0), ["Fe", "O"], [[0, 0, 0], [0.003, 0, 0]]),
    # two atoms on one spot (a duplicated CIF site): merged into one site, with a note
    "overlapping_atoms": Structure(Lattice.cubic(4.0), ["Cu", "Cu"], [[0, 0, 0], [0.001, 0, 0]]),
    "disordered_with_vacancies": Structure(
        Lattice.cubic(4.2), [{"Mg": 0.4, "Fe": 0.3}, {"O": 0.9}], [[0, 0, 0], [0.5, 0.5, 0.5]]
    ),
}


@pytest.fixture(scope="module")
def model(rel_model_dir) -> ClaspModel:
    return ClaspModel.from_pretrained(rel_model_dir)


@pytest.mark.parametrize("name", list(BAD))
def test_bad_structure_raises_specific_error(model, name):
    structure, words = BAD[name]
    with pytest.raises(InvalidStructureError, match=words):
        model.encode_structures([_good(), structure])
    with pytest.raises(InvalidStructureError, match="structure 1"):
        model.encode_structures([_good(), structure])


@pytest.mark.parametrize("name", list(VALID_ODDITIES))
def test_valid_oddities_give_unit_vectors(model, name):
    emb = model.encode_structures([VALID_ODDITIES[name]])
    assert np.isfinite(emb).all()
    assert abs(np.linalg.norm(emb) - 1) < 1e-5


def test_featurize_dataframe_keeps_every_good_row(rel_model_dir, model):
    from matminer_clasp.featurizers import ClaspFeaturizer

    good = [_good(), VALID_ODDITIES["one_atom"], VALID_ODDITIES["disordered_with_vacancies"]]
    column = []
    for i, (structure, _) in enumerate(BAD.values()):
        column += [good[i % 3], structure]
    df = pd.DataFrame({"structure": column, "n": range(len(column))})
    feat = ClaspFeaturizer(model=str(rel_model_dir))
    out = feat.featurize_dataframe(
        df, "structure", ignore_errors=True, return_errors=True, pbar=False
    )
    labels = feat.feature_labels()
    values = out[labels].to_numpy(dtype=float)
    bad_rows = np.arange(1, len(column), 2)
    good_rows = np.arange(0, len(column), 2)
    assert np.isnan(values[bad_rows]).all()
    expected = model.encode_structures([column[i] for i in good_rows])
    np.testing.assert_allclose(values[good_rows], expected, atol=1e-5)
    errors = out[[c for c in out.columns if c.endswith("Exceptions")][0]]
    for row, (_, words) in zip(bad_rows, BAD.values()):
        assert words.lower() in str(errors.iloc[row]).lower()
    assert errors.iloc[good_rows].isna().all() or (errors.iloc[good_rows] == "").all()
    assert list(out["n"]) == list(range(len(column)))


def test_featurize_dataframe_raises_naming_the_row(rel_model_dir):
    from matminer_clasp.featurizers import ClaspFeaturizer

    df = pd.DataFrame({"structure": [_good(), _good(), BAD["molecule"][0]]})
    with pytest.raises(Exception, match="2"):
        ClaspFeaturizer(model=str(rel_model_dir)).featurize_dataframe(df, "structure", pbar=False)
