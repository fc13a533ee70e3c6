"""Property-based tests: any valid periodic structure gives a finite unit vector that does not
depend on how the crystal is written down (site order, origin, choice of supercell)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pymatgen.core import Lattice, Structure

from matminer_clasp.model import ClaspModel

ELEMENTS = [
    "H",
    "Li",
    "C",
    "O",
    "Na",
    "Mg",
    "Al",
    "Si",
    "S",
    "Cl",
    "Ca",
    "Ti",
    "Fe",
    "Cu",
    "Zn",
    "Sr",
    "Ba",
    "La",
    "Pb",
    "U",
]


@st.composite
def structures(draw) -> Structure:
    a, b, c = (draw(st.floats(3.0, 7.0)) for _ in range(3))
    alpha, beta, gamma = (draw(st.floats(70.0, 110.0)) for _ in range(3))
    lattice = Lattice.from_parameters(a, b, c, alpha, beta, gamma)
    n = draw(st.integers(1, 5))
    species = [draw(st.sampled_from(ELEMENTS)) for _ in range(n)]
    coords = [[draw(st.floats(0.0, 0.999)) for _ in range(3)] for _ in range(n)]
    structure = Structure(lattice, species, coords)
    # hypothesis may put two sites on top of each other: that is a documented error, not a property
    if n > 1:
        dist = structure.distance_matrix + np.eye(n) * 100
        if dist.min() < 0.8:
            structure = Structure(lattice, species[:1], coords[:1])
    return structure


@pytest.fixture(scope="module")
def model(rel_model_dir) -> ClaspModel:
    return ClaspModel.from_pretrained(rel_model_dir)


COMMON = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


@COMMON
@given(structure=structures())
def test_finite_unit_norm(model, structure):
    emb = model.encode_structures([structure])
    assert emb.shape == (1, model.config.embedding_dim)
    assert np.isfinite(emb).all()
    assert abs(np.linalg.norm(emb) - 1.0) < 1e-5


@COMMON
@given(structure=structures(), seed=st.integers(0, 2**16))
def test_invariant_to_site_order(model, structure, seed):
    order = np.random.default_rng(seed).permutation(len(structure))
    shuffled = Structure.from_sites([structure[i] for i in order])
    a, b = model.encode_structures([structure, shuffled])
    np.testing.assert_allclose(a, b, atol=1e-5)


@COMMON
@given(structure=structures(), shift=st.tuples(*(st.floats(-1.0, 1.0) for _ in range(3))))
def test_invariant_to_translation(model, structure, shift):
    moved = structure.copy()
    moved.translate_sites(list(range(len(moved))), shift, frac_coords=True, to_unit_cell=True)
    a, b = model.encode_structures([structure, moved])
    np.testing.assert_allclose(a, b, atol=1e-5)


@COMMON
@given(
    structure=structures(), scaling=st.sampled_from([(2, 1, 1), (1, 2, 1), (1, 1, 3), (2, 2, 1)])
)
def test_invariant_to_supercell(model, structure, scaling):
    assert model.config.cell == "as_is"
    supercell = structure.copy()
    supercell.make_supercell(scaling)
    a, b = model.encode_structures([structure, supercell])
    np.testing.assert_allclose(a, b, atol=1e-5)
