"""The 92-d CGCNN atom features and occupancy-weighted site features.

The table is read at run time from the copy that matminer installs
(``matminer/utils/data_files/cgcnn_atom_feature.json``, keys ``"1"`` .. ``"100"`` = Z), which is
value-identical to CGCNN's ``atom_init.json`` and to the table of the official CLaSP code
(``models/cgcnn_atom_features.py``).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
from pymatgen.core import Composition, DummySpecies, Element, Species

from matminer_clasp.errors import InvalidStructureError

N_ATOM_FEATURES = 92
MAX_Z = 100


@lru_cache(maxsize=1)
def atom_feature_table() -> np.ndarray:
    """Return the CGCNN table as a read-only float32 array of shape ``(101, 92)``.

    Row ``Z`` holds the features of element ``Z``; row 0 is all zeros (unused).
    """
    import matminer

    path = Path(matminer.__file__).parent / "utils" / "data_files" / "cgcnn_atom_feature.json"
    raw = json.loads(path.read_text())
    table = np.zeros((MAX_Z + 1, N_ATOM_FEATURES), dtype=np.float32)
    for key, row in raw.items():
        table[int(key)] = np.asarray(row, dtype=np.float32)
    table.setflags(write=False)
    return table


def _atomic_number(specie: object, where: str) -> int:
    """Return Z of an ``Element``/``Species``; raise for dummy species or Z beyond the table."""
    if isinstance(specie, Element | Species) and not isinstance(specie, DummySpecies):
        z = int(specie.Z)
    else:  # DummySpecies and anything else pymatgen may hold
        raise InvalidStructureError(
            f"{where}: species {specie!s} is not a chemical element (dummy species have no "
            "CGCNN atom features)"
        )
    if not 1 <= z <= MAX_Z:
        raise InvalidStructureError(
            f"{where}: element {specie!s} (Z={z}) has no CGCNN atom features (Z 1-{MAX_Z} only)"
        )
    return z


def site_features(compositions: list[Composition]) -> np.ndarray:
    """Occupancy-weighted atom features for a list of site compositions.

    Parameters
    ----------
    compositions
        One :class:`~pymatgen.core.Composition` per site (``site.species``). An ordered site has a
        single element with occupancy 1; a disordered site several, with occupancies summing to at
        most 1. The feature vector is ``sum(occupancy * row(Z))`` without renormalisation, as in the
        official code, so a partially vacant site has a proportionally shorter vector.

    Returns
    -------
    numpy.ndarray
        Array of shape ``(n_sites, 92)``, float32.
    """
    table = atom_feature_table()
    out = np.empty((len(compositions), N_ATOM_FEATURES), dtype=np.float32)
    rows: dict[tuple, np.ndarray] = {}  # sites with equal species share one row
    for i, comp in enumerate(compositions):
        items = tuple(comp.items())
        row = rows.get(items)
        if row is None:
            if len(items) == 1 and items[0][1] == 1:
                row = table[_atomic_number(items[0][0], f"site {i}")]
            else:
                acc = np.zeros(N_ATOM_FEATURES, dtype=np.float64)
                for specie, occupancy in items:
                    acc += float(occupancy) * table[_atomic_number(specie, f"site {i}")]
                row = acc.astype(np.float32)
            rows[items] = row
        out[i] = row
    return out


def composition_vector(compositions: list[Composition]) -> np.ndarray:
    """Fractional element vector of a structure, shape ``(101,)``, index = Z, summing to 1.

    Vacancies are ignored (fractions are over the atoms present).
    """
    known: dict[tuple, list[int]] = {}  # atomic numbers of each distinct site composition
    zs: list[int] = []
    amounts: list[float] = []
    for i, comp in enumerate(compositions):
        items = tuple(comp.items())
        z = known.get(items)
        if z is None:
            z = known[items] = [_atomic_number(specie, f"site {i}") for specie, _ in items]
        zs.extend(z)
        amounts.extend(float(occupancy) for _, occupancy in items)
    vec = np.zeros(MAX_Z + 1, dtype=np.float32)
    # in site order, one float32 addition at a time (as a loop of vec[z] += amount)
    np.add.at(vec, np.asarray(zs, dtype=np.intp), np.asarray(amounts, dtype=np.float32))
    total = vec.sum()
    if total > 0:
        vec /= total
    return vec
