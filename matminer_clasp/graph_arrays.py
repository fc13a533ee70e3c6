"""Crystal graphs as numpy arrays: the torch-free half of :mod:`matminer_clasp.graph`.

:class:`GraphArrayBuilder` applies the structure policies (:mod:`matminer_clasp.structures`) and
finds the 12 nearest neighbours; :class:`~matminer_clasp.graph.CrystalGraphBuilder` wraps its
:class:`GraphArrays` into a ``torch_geometric`` ``Data``. The split lets graph-building worker
processes (:mod:`matminer_clasp.graph_pool`) run without importing torch: they send arrays back,
and the main process makes the same ``Data`` from them.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
from pymatgen.core import IStructure

from matminer_clasp.atom_features import composition_vector, site_features
from matminer_clasp.config import ClaspConfig
from matminer_clasp.errors import InvalidStructureError
from matminer_clasp.structures.read import to_structure
from matminer_clasp.structures.sites import check_structure, merge_close_sites
from matminer_clasp.structures.symmetry import find_spacegroup


class GraphArrays(NamedTuple):
    """One crystal graph as arrays (see :mod:`matminer_clasp.graph` for the fields)."""

    #: ``(n_atoms, 92)`` float32 occupancy-weighted CGCNN features.
    x: np.ndarray
    #: ``(n_atoms, M)`` int64 neighbour indices, each row in distance order.
    nbr_idx: np.ndarray
    #: ``(n_atoms, M)`` float32 neighbour distances in angstrom.
    nbr_dist: np.ndarray
    #: ``(101,)`` float32 fractional composition (index = Z).
    comp: np.ndarray
    #: International space-group number, 0 when not computed.
    spacegroup: int


class GraphArrayBuilder:
    """Structures -> :class:`GraphArrays` for a :class:`ClaspConfig` (no torch involved).

    Parameters
    ----------
    config
        Supplies ``radius``, ``max_num_nbr``, ``cell``, ``min_distance`` and whether the model
        needs neighbours and space groups.
    max_sites
        Structures with more sites (as given) are rejected; default: ``config.max_sites``.
    """

    def __init__(self, config: ClaspConfig | None = None, max_sites: int | None = None) -> None:
        self.config = config or ClaspConfig()
        self.max_sites = int(max_sites) if max_sites is not None else self.config.max_sites

    def validate(self, structure: Any) -> np.ndarray:
        """Raise :class:`InvalidStructureError` if ``structure`` cannot become a graph.

        Fast checks only: type, size, finite coordinates and cell, elements with features.
        Returns the composition vector the element check computed.
        """
        return check_structure(structure, self.max_sites)

    def build_arrays(self, structure: Any) -> tuple[GraphArrays, list[str]]:
        """The graph of one structure as arrays, and the policies' notes (``[]`` if none)."""
        comp = self.validate(structure)
        given = structure
        cfg = self.config
        # the input cell's neighbour list serves the graph only when that cell is kept; for a
        # conventional / primitive cell the split-site check is merge_close_sites' own
        pairs = self._pairs(structure) if cfg.uses_graph and cfg.cell == "as_is" else None
        if pairs is None or (pairs[2].size and float(pairs[2].min()) < cfg.min_distance):
            # sites this close: the split-site policy decides
            structure, notes = merge_close_sites(structure, cfg.min_distance)
            if structure is not given:
                pairs = None
        else:
            notes = []  # no two sites closer than min_distance: nothing to merge
        spacegroup = 0
        if cfg.cell != "as_is" or cfg.use_spacegroup:
            symmetry = find_spacegroup(structure, need_analyzer=cfg.cell != "as_is")
            notes += symmetry.notes
            spacegroup = symmetry.number
            if cfg.cell != "as_is" and symmetry.analyzer is None:
                notes.append(f"no {cfg.cell} cell without symmetry; the cell is used as given")
            elif cfg.cell == "conventional":
                structure = symmetry.analyzer.get_conventional_standard_structure()
                pairs = None
            elif cfg.cell == "primitive":
                structure = symmetry.analyzer.get_primitive_standard_structure()
                pairs = None
        species = [site.species for site in structure]
        n_atoms = len(structure)
        if cfg.uses_graph:
            nbr_idx, nbr_dist = self._neighbours(structure, pairs)
        else:
            nbr_idx = np.zeros((n_atoms, 0), dtype=np.int64)
            nbr_dist = np.zeros((n_atoms, 0), dtype=np.float64)
        if structure is not given:  # merged sites or another cell: its own composition
            comp = composition_vector(species)
        arrays = GraphArrays(site_features(species), nbr_idx, nbr_dist.astype(np.float32),
                             comp, int(spacegroup))
        return arrays, notes

    def _pairs(self, structure: IStructure) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Periodic neighbour pairs ``(centres, points, distances)`` within ``config.radius``.

        Computed once per structure: its shortest distance also says whether
        :func:`~matminer_clasp.structures.merge_close_sites` has anything to merge.
        """
        return periodic_pairs(structure, self.config.radius)

    def _neighbor_list(
        self, structure: IStructure, pairs: tuple[np.ndarray, ...] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Periodic neighbour pairs within the radius; raise if two sites still overlap.

        Split sites were merged before; what remains this close (a chain of near sites whose
        merged position lands on another) is reported rather than guessed at.
        """
        centres, points, dists = pairs if pairs is not None else self._pairs(structure)
        if dists.size and float(dists.min()) < self.config.min_distance:
            k = int(np.argmin(dists))
            raise InvalidStructureError(
                f"sites {int(centres[k])} and {int(points[k])} overlap: {float(dists[k]):.3g} A "
                f"apart (min_distance={self.config.min_distance} A)"
            )
        return centres, points, dists

    def _neighbours(
        self, structure: IStructure, pairs: tuple[np.ndarray, ...] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(n, M)`` neighbour indices and distances, padded as in the official code.

        Each centre's pairs keep the neighbour list's order and are sorted by distance with a
        stable sort, one row per centre. Distances that differ by less than
        :data:`TIE_TOLERANCE` count as ties and keep the list's order: symmetry-equivalent
        neighbours differ only by rounding noise, whose sign depends on the CPU and the numpy
        build, and which of them fills the last slot must not.
        """
        cfg = self.config
        n_atoms, m = len(structure), cfg.max_num_nbr
        centres, points, dists = self._neighbor_list(structure, pairs)
        if centres.size and not bool(np.all(centres[1:] >= centres[:-1])):
            order = np.argsort(centres, kind="stable")  # pymatgen's list is grouped already
            centres, points, dists = centres[order], points[order], dists[order]
        counts = np.bincount(centres, minlength=n_atoms)
        rank = np.arange(centres.size) - (np.cumsum(counts) - counts)[centres]
        width = max(int(counts.max(initial=0)), m)
        table = np.full((n_atoms, width), np.inf)
        table[centres, rank] = dists
        # the m nearest of each row in a stable sort's order (ties keep the list's order), from
        # a partial sort: every entry up to the row's m-th smallest distance, near ties
        # included, ordered by (row, distance, position); a few more than m per row, not all.
        # Runs of distances with gaps below TIE_TOLERANCE form one tie group, ordered by
        # position inside, so rounding noise cannot reorder equivalent neighbours.
        cut = np.partition(table, m - 1, axis=1)[:, m - 1 : m]
        rows, cols = np.nonzero((table <= cut + TIE_TOLERANCE) & np.isfinite(table))
        values = table[rows, cols]
        order = np.lexsort((cols, values, rows))
        rows, cols, values = rows[order], cols[order], values[order]
        new_group = np.ones(rows.size, dtype=bool)
        new_group[1:] = (rows[1:] != rows[:-1]) | (np.diff(values) >= TIE_TOLERANCE)
        order = np.lexsort((cols, np.cumsum(new_group)))
        rows, cols, values = rows[order], cols[order], values[order]
        starts = np.searchsorted(rows, np.arange(n_atoms))
        slot = np.arange(rows.size) - starts[rows]
        keep = slot < m
        nbr_dist = np.full((n_atoms, m), cfg.radius + 1.0)
        nbr_idx = np.zeros((n_atoms, m), dtype=np.int64)
        index = np.zeros((n_atoms, width), dtype=np.int64)
        index[centres, rank] = points
        nbr_dist[rows[keep], slot[keep]] = values[keep]
        nbr_idx[rows[keep], slot[keep]] = index[rows[keep], cols[keep]]
        return nbr_idx, nbr_dist


def periodic_pairs(structure: IStructure, radius: float) -> tuple[np.ndarray, ...]:
    """``(centres, points, distances)`` of all periodic pairs within ``radius``, self excluded.

    The pairs and their order are those of pymatgen's ``Structure.get_neighbor_list`` (the same
    ``find_points_in_spheres`` call), without its per-call Python overhead (a list of one
    boolean per pair, per-site coordinate lookups, the image offsets the graph does not use).
    """
    try:
        from pymatgen.optimization.neighbors import find_points_in_spheres
    except ImportError:  # pymatgen without its compiled helpers: its own fallback
        centres, points, _, dists = structure.get_neighbor_list(radius)
        return centres, points, dists
    coords = np.ascontiguousarray(structure.cart_coords, dtype=float)
    centres, points, _, dists = find_points_in_spheres(
        coords,
        coords,
        r=float(radius),
        pbc=np.ascontiguousarray(structure.pbc, dtype=np.int64),
        lattice=np.ascontiguousarray(structure.lattice.matrix, dtype=float),
        tol=NUMERICAL_TOL,
    )
    other = (centres != points) | (dists > NUMERICAL_TOL)  # get_neighbor_list's exclude_self
    return centres[other], points[other], dists[other]


#: pymatgen's ``get_neighbor_list`` default ``numerical_tol``.
NUMERICAL_TOL = 1e-8

#: Neighbour distances (A) closer than this are ties for the order of a crystal graph's
#: neighbours (far above floating-point noise, far below any physical difference).
TIE_TOLERANCE = 1e-8


def build_arrays_or_error(
    builder: GraphArrayBuilder, item: Any
) -> tuple[GraphArrays, list[str]] | InvalidStructureError:
    """Input (structure, dict, CIF text or path) -> arrays and notes, or why not (never raises).

    The worker-process twin of :func:`matminer_clasp.model.encoding.build_graph`: the same
    conversion, policies and error wording.
    """
    try:
        structure, notes = to_structure(item)
        arrays, more = builder.build_arrays(structure)
    except Exception as exc:  # one odd input never costs the others
        return as_invalid(exc)
    return arrays, notes + more


def as_invalid(exc: Exception) -> InvalidStructureError:
    """``exc`` as the :class:`InvalidStructureError` an input's row reports."""
    if isinstance(exc, InvalidStructureError):
        return exc
    error = InvalidStructureError(
        f"building the crystal graph failed: {type(exc).__name__}: {exc}"
    )
    error.__cause__ = exc
    return error
