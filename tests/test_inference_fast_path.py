"""The eval-mode CGCNN path (distinct distances, one convolution per class of equivalent atoms)
gives the training path's numbers, on hand-made and on real AMCSD / COD structures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from pymatgen.core import Lattice, Structure
from torch_geometric.data import Batch

import matminer_clasp.model.crystal as crystal
from matminer_clasp.config import ClaspConfig
from matminer_clasp.graph import CrystalGraphBuilder
from matminer_clasp.model import equivalent_atoms as eq
from matminer_clasp.structures import read_structure_file
from tests.conftest import make_tiny_model

CIFS = Path(__file__).parent / "fixtures" / "real_cifs"


def _inputs(structures: list[Structure]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    builder = CrystalGraphBuilder(ClaspConfig(cell="as_is"))
    batch = Batch.from_data_list([builder(s) for s in structures])
    n = batch.x.shape[0]
    _, dist_idx = torch.unique(batch.edge_dist, return_inverse=True)
    return batch.x, batch.edge_index[1].view(n, 12), dist_idx.view(n, 12)


def _rocksalt() -> Structure:
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )


def test_symmetry_copies_form_one_class_per_site():
    nacl = _rocksalt()  # conventional cell: 4 Na + 4 Cl
    reps, classes = eq.equivalent_atoms(*_inputs([nacl]))
    assert reps.numel() == 2
    species = [site.specie.symbol for site in nacl]
    for k in range(2):
        members = {species[i] for i in torch.nonzero(classes == k).flatten().tolist()}
        assert len(members) == 1
    assert sorted(classes[reps].tolist()) == [0, 1]


def test_a_moved_atom_breaks_its_class():
    nacl = _rocksalt()
    nacl.translate_sites([0], [0.01, 0.0, 0.0])  # one Na off its site
    reps, classes = eq.equivalent_atoms(*_inputs([nacl]))
    assert reps.numel() > 2
    assert int((classes == classes[0]).sum()) == 1  # the moved atom stands alone


def test_equal_environments_across_structures_share_a_class():
    nacl = _rocksalt()
    reps, _ = eq.equivalent_atoms(*_inputs([nacl, nacl.copy()]))
    assert reps.numel() == 2


def test_an_unverified_partition_is_refused(monkeypatch):
    # a hash that merges everything: the verification must catch it
    monkeypatch.setattr(eq, "_classes", lambda keys: (torch.zeros_like(keys), 1))
    assert eq.equivalent_atoms(*_inputs([_rocksalt()])) is None


def _real_structures() -> list[Structure]:
    out = []
    for path in sorted(CIFS.glob("*.cif")):
        try:
            out.append(read_structure_file(path)[0])
        except Exception:  # noqa: BLE001 - the unreadable fixtures are tested elsewhere
            continue
    return out


@pytest.fixture(scope="module")
def graph_model(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("fast"), crystal_encoder="cgcnn+composition")


def _tower_outputs(model, structures, fast: bool) -> np.ndarray:
    graphs = [g for g in model.build_graphs(structures, ignore_errors=True)
              if not isinstance(g, Exception)]
    batch = Batch.from_data_list(graphs)
    context = torch.no_grad() if fast else torch.enable_grad()
    with context:
        return model.crystal_tower(batch).detach().numpy()


def test_fast_path_equals_training_path_on_real_cifs(graph_model, structures, monkeypatch):
    items = _real_structures() + list(structures.values())
    assert len(items) > 20
    found = []

    def recorded(*args):
        found.append(eq.equivalent_atoms(*args))
        return found[-1]

    monkeypatch.setattr(crystal, "equivalent_atoms", recorded)
    fast = _tower_outputs(graph_model, items, fast=True)
    (classes,) = found
    assert classes is not None and classes[0].numel() < classes[1].numel() / 2  # really reduced
    slow = _tower_outputs(graph_model, items, fast=False)  # eval mode, autograd on: every edge
    np.testing.assert_allclose(fast, slow, atol=2e-5, rtol=1e-5)


def test_unverified_partition_falls_back_to_every_atom(graph_model, structures, monkeypatch):
    items = list(structures.values())
    expected = _tower_outputs(graph_model, items, fast=True)
    calls = []

    def refuse(*args):
        calls.append(1)
        return None

    monkeypatch.setattr(crystal, "equivalent_atoms", refuse)
    got = _tower_outputs(graph_model, items, fast=True)
    assert calls
    np.testing.assert_allclose(got, expected, atol=2e-5, rtol=1e-5)


def test_other_float_types_convolve_every_atom():
    x, nbr, dist = _inputs([_rocksalt()])
    assert eq.equivalent_atoms(x.double(), nbr, dist) is None
    assert eq.equivalent_atoms(x.half(), nbr, dist) is None
