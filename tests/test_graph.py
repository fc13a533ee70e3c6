"""Crystal graphs against an independent brute-force periodic neighbour search."""

from __future__ import annotations

import json
from pathlib import Path

import matminer
import numpy as np
import pytest
from pymatgen.core import DummySpecies, Lattice, Molecule, Structure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

from matminer_clasp.config import ClaspConfig
from matminer_clasp.errors import InvalidStructureError
from matminer_clasp.graph import CrystalGraphBuilder

RADIUS, M, PAD_DIST = 8.0, 12, 9.0
NAMES = ["rocksalt", "diamond", "hexagonal", "triclinic", "disordered"]


# ---------------------------------------------------------------- independent reference code
def matminer_table() -> dict[int, np.ndarray]:
    """The CGCNN table straight from matminer's data file (keys are Z)."""
    path = Path(matminer.__file__).parent / "utils" / "data_files" / "cgcnn_atom_feature.json"
    raw = json.loads(path.read_text())
    return {int(k): np.asarray(v, dtype=np.float64) for k, v in raw.items()}


def reference_features(structure: Structure) -> np.ndarray:
    """Occupancy-weighted sum of table rows per site, no renormalisation."""
    table = matminer_table()
    return np.stack([
        sum(occ * table[sp.Z] for sp, occ in site.species.items())
        for site in structure
    ])


def brute_force_neighbours(
    structure: Structure, radius: float = RADIUS, m: int = M
) -> tuple[np.ndarray, np.ndarray]:
    """12 nearest periodic neighbours within ``radius`` of every site, padded with (0, radius+1).

    Loops over every lattice translation that can reach within ``radius``: the number of images
    along axis a is ceil(radius / d_a) + 1, with d_a the spacing of the lattice planes
    normal to the reciprocal vector a*.
    """
    lat = structure.lattice.matrix
    cart = structure.cart_coords
    recip = np.linalg.inv(lat).T  # rows are a*, b*, c* (without 2 pi)
    reach = [int(np.ceil(radius * np.linalg.norm(r))) + 1 for r in recip]
    shifts = np.array(
        [(i, j, k) for i in range(-reach[0], reach[0] + 1) for j in range(-reach[1], reach[1] + 1)
         for k in range(-reach[2], reach[2] + 1)],
        dtype=float,
    ) @ lat
    n = len(structure)
    idx = np.zeros((n, m), dtype=np.int64)
    dist = np.full((n, m), radius + 1.0)
    for i in range(n):
        # candidates: every site j in every image
        vec = cart[None, :, :] + shifts[:, None, :] - cart[i]
        d = np.linalg.norm(vec, axis=2)  # (n_shifts, n)
        js = np.broadcast_to(np.arange(n), d.shape)
        d, js = d.ravel(), js.ravel()
        keep = (d <= radius) & (d > 1e-8)
        d, js = d[keep], js[keep]
        order = np.argsort(d, kind="stable")[:m]
        idx[i, : order.size] = js[order]
        dist[i, : order.size] = d[order]
    return idx, dist


def conventional(structure: Structure) -> Structure:
    return SpacegroupAnalyzer(structure).get_conventional_standard_structure()


def _graph_arrays(graph) -> tuple[np.ndarray, np.ndarray]:
    n = graph.x.shape[0]
    return graph.edge_index[1].numpy().reshape(n, M), graph.edge_dist.numpy().reshape(n, M)


# ---------------------------------------------------------------- neighbour lists
@pytest.mark.parametrize("cell", ["as_is", "conventional"])
@pytest.mark.parametrize("name", NAMES)
def test_neighbours_match_brute_force(structures, name, cell):
    s = structures[name]
    graph = CrystalGraphBuilder(ClaspConfig(cell=cell))(s)
    ref_s = s if cell == "as_is" else conventional(s)
    assert graph.x.shape == (len(ref_s), 92)
    assert graph.edge_index.shape == (2, len(ref_s) * M)
    # row of edge_index is the centre atom, in blocks of 12
    np.testing.assert_array_equal(
        graph.edge_index[0].numpy(), np.repeat(np.arange(len(ref_s)), M)
    )
    idx, dist = _graph_arrays(graph)
    ref_idx, ref_dist = brute_force_neighbours(ref_s)
    np.testing.assert_allclose(dist, ref_dist, atol=1e-5)  # sorted, first 12
    assert np.all(np.diff(dist, axis=1) >= -1e-6)
    # neighbour identities agree wherever the distance is not tied with the 12th neighbour
    for i in range(len(ref_s)):
        inner = ref_dist[i] < ref_dist[i, -1] - 1e-4
        assert sorted(idx[i][inner].tolist()) == sorted(ref_idx[i][inner].tolist())
    # the features follow the (converted) structure's site order
    np.testing.assert_allclose(graph.x.numpy(), reference_features(ref_s), atol=1e-6)


def test_sparse_cell_is_padded_with_atom_zero():
    s = Structure(Lattice.cubic(30.0), ["Cu"], [[0.1, 0.2, 0.3]])
    graph = CrystalGraphBuilder(ClaspConfig(cell="as_is"))(s)
    idx, dist = _graph_arrays(graph)
    assert idx.shape == (1, M)
    assert np.all(idx == 0)
    assert np.all(dist == PAD_DIST)


def test_partially_padded_neighbour_list():
    # simple cubic 6.5 A: 6 neighbours at 6.5 A, the next shell (9.19 A) is beyond 8 A
    s = Structure(Lattice.cubic(6.5), ["Cs"], [[0, 0, 0]])
    graph = CrystalGraphBuilder(ClaspConfig(cell="as_is"))(s)
    idx, dist = _graph_arrays(graph)
    ref_idx, ref_dist = brute_force_neighbours(s)
    np.testing.assert_allclose(dist, ref_dist, atol=1e-5)
    n_real = int((ref_dist[0] < RADIUS + 0.5).sum())
    assert n_real == 6
    assert np.all(idx[:, n_real:] == 0) and np.all(dist[:, n_real:] == PAD_DIST)


# ---------------------------------------------------------------- atom features
def test_features_are_matminer_rows(structures):
    table = matminer_table()
    s = structures["triclinic"]
    graph = CrystalGraphBuilder(ClaspConfig(cell="as_is"))(s)
    for i, site in enumerate(s):
        np.testing.assert_array_equal(graph.x[i].numpy(), table[site.specie.Z].astype(np.float32))


def test_oxidation_states_are_ignored():
    plain = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    ionic = plain.copy()
    ionic.add_oxidation_state_by_element({"Na": 1, "Cl": -1})
    builder = CrystalGraphBuilder(ClaspConfig(cell="as_is"))
    np.testing.assert_array_equal(builder(plain).x.numpy(), builder(ionic).x.numpy())


def test_disordered_sites_are_occupancy_weighted(structures):
    table = matminer_table()
    graph = CrystalGraphBuilder(ClaspConfig(cell="as_is"))(structures["disordered"])
    x = graph.x.numpy()
    np.testing.assert_allclose(x[0], 0.5 * table[26] + 0.5 * table[27], atol=1e-6)
    np.testing.assert_allclose(x[2], 0.75 * table[28], atol=1e-6)
    # the vacancy shrinks the vector: no renormalisation
    assert np.linalg.norm(x[2]) == pytest.approx(0.75 * np.linalg.norm(table[28]), rel=1e-6)


# ---------------------------------------------------------------- cells
def test_primitive_rock_salt_becomes_eight_atom_conventional_cell():
    prim = Structure(
        Lattice.from_parameters(3.988, 3.988, 3.988, 60, 60, 60), ["Na", "Cl"],
        [[0, 0, 0], [0.5, 0.5, 0.5]],
    )
    assert len(prim) == 2
    conv_graph = CrystalGraphBuilder(ClaspConfig(cell="conventional"))(prim)
    assert conv_graph.x.shape[0] == 8
    assert conv_graph.spacegroup.item() == 225
    as_is = CrystalGraphBuilder(ClaspConfig(cell="as_is"))(prim)
    assert as_is.x.shape[0] == 2
    # same local environment either way: 6 Cl at a/2 then 12 Na at a/sqrt(2)
    np.testing.assert_allclose(_graph_arrays(conv_graph)[1][0], _graph_arrays(as_is)[1][0],
                               atol=1e-4)


def test_primitive_cell_option(structures):
    graph = CrystalGraphBuilder(ClaspConfig(cell="primitive"))(structures["rocksalt"])
    assert graph.x.shape[0] == 2


# ---------------------------------------------------------------- documented errors
def _bad_inputs() -> dict[str, tuple[object, str]]:
    lat = Lattice.cubic(4.0)
    return {
        "molecule": (Molecule(["H", "H"], [[0, 0, 0], [0, 0, 0.74]]), "Molecule"),
        "empty": (Structure(lat, [], []), "no sites"),
        "nan": (Structure(lat, ["Na", "Cl"], [[0, 0, 0], [np.nan, 0.5, 0.5]]), "site 1.*NaN"),
        "dummy": (Structure(lat, ["Na", DummySpecies("X")], [[0, 0, 0], [0.5, 0.5, 0.5]]),
                  "site 1.*not a chemical element"),
        "no_features": (Structure(lat, ["Md"], [[0, 0, 0]]), "Md.*no CGCNN atom features"),
        "none": (None, "got None"),
        "string": ("NaCl", "type str"),
        "dict": ({"lattice": [], "sites": []}, "type dict"),
    }


@pytest.mark.parametrize("case", list(_bad_inputs()))
def test_documented_errors(case):
    obj, pattern = _bad_inputs()[case]
    with pytest.raises(InvalidStructureError, match=pattern):
        CrystalGraphBuilder(ClaspConfig(cell="as_is"))(obj)


def test_too_many_sites(structures):
    s = structures["rocksalt"]  # 8 sites
    with pytest.raises(InvalidStructureError, match="8 sites.*max_sites=4"):
        CrystalGraphBuilder(ClaspConfig(cell="as_is", max_sites=4))(s)
    # the limit applies to the structure as given, before the cell conversion (official order)
    prim = s.get_primitive_structure()
    graph = CrystalGraphBuilder(ClaspConfig(cell="conventional", max_sites=4))(prim)
    assert graph.x.shape[0] == 8


def test_invalid_structure_error_is_a_value_error():
    with pytest.raises(ValueError):
        CrystalGraphBuilder()(None)


# ---------------------------------------------------------------- model-level invariances
def _model_emb(model, structures):
    return model.encode_structures(structures, batch_size=8)


def test_embedding_invariant_to_supercell_and_site_order(tiny_model, structures):
    assert tiny_model.config.cell == "as_is"
    rng = np.random.default_rng(1)
    for name in ["rocksalt", "hexagonal", "triclinic", "disordered"]:
        s = structures[name]
        sup = s.copy()
        sup.make_supercell([2, 1, 1])
        perm = rng.permutation(len(s))
        shuffled = Structure.from_sites([s[int(i)] for i in perm])
        emb = _model_emb(tiny_model, [s, sup, shuffled])
        np.testing.assert_allclose(emb[1], emb[0], atol=1e-5, err_msg=f"{name} supercell")
        np.testing.assert_allclose(emb[2], emb[0], atol=1e-5, err_msg=f"{name} site order")


@pytest.mark.parametrize("encoder", ["cgcnn", "composition"])
def test_overlapping_atoms_are_merged_with_a_note_on_every_path(encoder):
    lat = Lattice.cubic(4.0)
    overlapping = Structure(lat, ["Cu", "Cu"], [[0, 0, 0], [0.001, 0, 0]])
    single = Structure(lat, ["Cu"], [[0.0005, 0, 0]])
    builder = CrystalGraphBuilder(ClaspConfig(crystal_encoder=encoder, cell="as_is"))
    graph, notes = builder.build(overlapping)
    assert len(notes) == 1 and "merged 2 sites" in notes[0] and "scaled to 1" in notes[0]
    ref, ref_notes = builder.build(single)
    assert ref_notes == [] and graph.num_nodes == 1
    for key in ("x", "comp", "edge_dist"):
        np.testing.assert_allclose(graph[key].numpy(), ref[key].numpy(), atol=1e-5)


def test_equidistant_neighbours_do_not_follow_rounding_noise(monkeypatch):
    """Which of several equidistant neighbours fills the last slot must not depend on the last
    bits of the distances (they differ between CPUs and numpy builds). A real COD CIF with
    species-changing ties at the 12th neighbour; noise of 1e-12 A, far below TIE_TOLERANCE."""
    import matminer_clasp.graph_arrays as graph_arrays
    from matminer_clasp.structures import read_structures

    path = Path(__file__).parent / "fixtures" / "real_cifs" / "cod-2100862.cif"
    structure = read_structures(path)["structure"].iloc[0]
    builder = graph_arrays.GraphArrayBuilder(ClaspConfig(cell="as_is"))
    centres, points, dists = graph_arrays.periodic_pairs(structure, builder.config.radius)
    rng = np.random.default_rng(0)

    def neighbour_sets() -> set[bytes]:
        seen = set()
        for _ in range(20):
            noisy = dists + rng.uniform(-1e-12, 1e-12, dists.shape)
            idx, _ = builder._neighbours(structure, (centres, points, noisy))
            seen.add(idx.tobytes())
        return seen

    assert len(neighbour_sets()) == 1
    monkeypatch.setattr(graph_arrays, "TIE_TOLERANCE", 0.0)  # the exact-distance rule
    assert len(neighbour_sets()) > 1  # ... which noise does reorder
