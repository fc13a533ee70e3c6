"""Checks and repairs of a structure's sites before it becomes a graph.

:func:`check_structure` rejects what is physically meaningless (no sites, NaN or infinite
coordinates, a degenerate cell, dummy species or elements without CGCNN features).
:func:`merge_close_sites` is the split-site policy: experimental CIFs often describe one
disordered position as two or more sites a few hundredths of an angstrom apart (each partially
occupied), and symmetry expansion can leave near-duplicate atoms. Sites closer than a tolerance
are merged into one site at their occupancy-weighted mean position whose species are the sum of
theirs; a merged site whose occupancies add up to more than 1 (two full atoms on one spot) is
scaled back to 1. The merge is reported as a note, never silently.

pymatgen's ``Structure.merge_sites`` does not serve here: with ``mode="sum"`` it raises as soon
as the merged occupancy exceeds 1, and it averages positions without occupancy weights.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pymatgen.core import Composition, IStructure, Molecule, Structure

from matminer_clasp.atom_features import composition_vector
from matminer_clasp.errors import InvalidStructureError

#: Occupancy above 1 that counts as rounding in a CIF rather than two atoms on one spot.
OCCUPANCY_SLACK = 1e-3


def _describe(obj: Any) -> str:
    return "None" if obj is None else f"an object of type {type(obj).__name__}"


def check_structure(structure: Any, max_sites: int | None = None) -> np.ndarray:
    """Raise :class:`InvalidStructureError` unless ``structure`` is a usable periodic structure.

    Parameters
    ----------
    structure
        The object to check.
    max_sites
        Reject structures with more sites than this (``None``: no bound).

    Returns
    -------
    numpy.ndarray
        The structure's composition vector (:func:`~matminer_clasp.atom_features.
        composition_vector`), computed to check its elements; the graph builder reuses it.
    """
    if isinstance(structure, Molecule):
        raise InvalidStructureError(
            "got a pymatgen Molecule; CLaSP needs a periodic Structure (wrap the molecule in a "
            "box with Molecule.get_boxed_structure if that is what you mean)"
        )
    if not isinstance(structure, IStructure):
        raise InvalidStructureError(f"expected a pymatgen Structure, got {_describe(structure)}")
    n_sites = len(structure)
    if n_sites == 0:
        raise InvalidStructureError("the structure has no sites")
    if max_sites is not None and n_sites > max_sites:
        raise InvalidStructureError(
            f"the structure has {n_sites} sites, more than max_sites={max_sites} (pass a larger "
            "max_sites to encode_structures, or raise it in the model config)"
        )
    matrix = structure.lattice.matrix
    if not np.all(np.isfinite(matrix)):
        raise InvalidStructureError("the lattice has NaN or infinite entries")
    volume = abs(float(np.linalg.det(matrix)))
    if not volume > 1e-6:
        raise InvalidStructureError(f"the lattice is degenerate (volume {volume:.3g} A^3)")
    bad = np.flatnonzero(~np.isfinite(structure.frac_coords).all(axis=1))
    if bad.size:
        raise InvalidStructureError(
            f"site {int(bad[0])} has NaN or infinite coordinates ({bad.size} such sites)"
        )
    return composition_vector([site.species for site in structure])  # dummy / unknown elements


def close_pairs(structure: IStructure, tol: float) -> tuple[np.ndarray, ...]:
    """Pairs of sites (periodic images included) closer than ``tol`` angstrom.

    Returns ``(i, j, image, distance)`` arrays, each pair once with ``i < j`` (a site close to
    its own periodic image is left out: the cell is then smaller than ``tol``, which
    :func:`check_structure`'s volume test or the graph itself handles).
    """
    centres, points, images, dists = structure.get_neighbor_list(tol)
    keep = centres < points
    return centres[keep], points[keep], images[keep], dists[keep]


def merge_close_sites(
    structure: IStructure, tol: float
) -> tuple[IStructure, list[str]]:
    """Merge sites closer than ``tol`` angstrom (split sites); return the structure and notes.

    Parameters
    ----------
    structure
        A checked structure (see :func:`check_structure`).
    tol
        Sites closer than this are one position (the model config's ``min_distance``).

    Returns
    -------
    (IStructure or Structure, list of str)
        ``structure`` itself and ``[]`` when no two sites are that close; otherwise a new
        ``Structure`` with each group of close sites replaced by one site (occupancy-weighted
        mean position, summed species, occupancy capped at 1) and one note describing the merge.
    """
    i, j, images, dists = close_pairs(structure, tol)
    if i.size == 0:
        return structure, []
    n = len(structure)
    parent = np.arange(n)

    def root(a: int) -> int:
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return a

    # fractional positions, unwrapped within each group (shift = lattice image of the partner)
    frac = structure.frac_coords
    shift = np.zeros((n, 3))
    adjacency: dict[int, list[tuple[int, np.ndarray]]] = {}
    for a, b, image in zip(i.tolist(), j.tolist(), images):
        adjacency.setdefault(a, []).append((b, image))
        adjacency.setdefault(b, []).append((a, -image))
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    groups: dict[int, list[int]] = {}
    for a in range(n):
        groups.setdefault(root(a), []).append(a)
    seen = np.zeros(n, dtype=bool)
    for start, members in groups.items():
        if len(members) == 1:
            continue
        seen[start] = True
        stack = [start]
        while stack:  # breadth of a few sites: walk the close-pair graph from the first site
            a = stack.pop()
            for b, image in adjacency.get(a, []):
                if not seen[b]:
                    seen[b] = True
                    shift[b] = shift[a] + image
                    stack.append(b)
    species, coords, scaled, merged = [], [], 0, 0
    for start in sorted(groups):
        members = groups[start]
        if len(members) == 1:
            species.append(structure[start].species)
            coords.append(frac[start])
            continue
        merged += len(members)
        comp = sum((structure[a].species for a in members), Composition())
        weights = np.array([max(structure[a].species.num_atoms, 1e-8) for a in members])
        pos = frac[members] + shift[members]
        coords.append((weights[:, None] * pos).sum(0) / weights.sum())
        total = comp.num_atoms
        if total > 1 + OCCUPANCY_SLACK:
            comp = Composition({sp: amt / total for sp, amt in comp.items()})
            scaled += 1
        species.append(comp)
    new = Structure(structure.lattice, species, np.asarray(coords) % 1.0)
    note = (
        f"merged {merged} sites closer than {tol} A into {merged - (n - len(new))} "
        f"(split sites; closest pair {float(dists.min()):.3g} A)"
    )
    if scaled:
        note += f"; {scaled} merged site(s) had occupancy above 1, scaled to 1"
    return new, [note]
