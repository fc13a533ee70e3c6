"""Crystal graphs: pymatgen ``Structure`` -> ``torch_geometric.data.Data``.

Follows the official preprocessing (Toyota/clasp ``dataloaders/dataset_cgcnn.py``,
``ExportCrystalGraph``): the structure is converted to its conventional standard cell (optional
here), every site keeps its 12 nearest neighbours within 8 angstrom including periodic images,
sorted by distance; atoms with fewer neighbours are padded with neighbour index 0 at distance
``radius + 1`` (not masked, as in the original CGCNN). The Gaussian expansion of the distances is
done inside the model (:class:`~matminer_clasp.model.crystal.GaussianExpansion`) so that cached
graphs store one float per edge instead of 41.

Each graph holds

``x``            ``(n_atoms, 92)`` float32 occupancy-weighted CGCNN features
``edge_index``   ``(2, n_atoms * 12)`` int64, row = centre atom, blocks of 12 in distance order
``edge_dist``    ``(n_atoms * 12,)`` float32 neighbour distances in angstrom
``comp``         ``(1, 101)`` float32 fractional composition (index = Z)
``spacegroup``   ``(1,)`` int64 international space-group number, 0 when not computed (the
                 model does not use it); always 1-230 when computed (see ``find_spacegroup``)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from pymatgen.core import IStructure
from torch_geometric.data import Data

from matminer_clasp.atom_features import composition_vector, site_features
from matminer_clasp.config import ClaspConfig
from matminer_clasp.errors import InvalidStructureError
from matminer_clasp.structures.sites import check_structure, merge_close_sites
from matminer_clasp.structures.symmetry import find_spacegroup

#: Default bound on sites at inference (``encode_structures``); training uses ``max_sites``.
INFERENCE_MAX_SITES = 5000


class CrystalGraphBuilder:
    """Turn structures into crystal graphs for a given :class:`ClaspConfig`.

    Every structure first goes through the policies of :mod:`matminer_clasp.structures`:
    :func:`~matminer_clasp.structures.check_structure` (rejects only what is physically
    meaningless), :func:`~matminer_clasp.structures.merge_close_sites` (split sites closer than
    ``min_distance`` become one site) and, when the model needs it,
    :func:`~matminer_clasp.structures.find_spacegroup` (a tolerance ladder that always answers).
    :meth:`build` returns the notes those policies wrote; ``__call__`` only the graph.

    Parameters
    ----------
    config
        Supplies ``radius``, ``max_num_nbr``, ``cell``, ``min_distance`` and whether the model
        needs neighbours and space groups.
    max_sites
        Structures with more sites (as given) are rejected; default: ``config.max_sites`` (the
        training bound). Inference passes a larger bound (:data:`INFERENCE_MAX_SITES`).

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> nacl = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    >>> graph = CrystalGraphBuilder(ClaspConfig(cell="as_is"))(nacl)
    >>> tuple(graph.x.shape), tuple(graph.edge_index.shape)
    ((2, 92), (2, 24))
    """

    def __init__(self, config: ClaspConfig | None = None, max_sites: int | None = None) -> None:
        self.config = config or ClaspConfig()
        self.max_sites = int(max_sites) if max_sites is not None else self.config.max_sites

    def validate(self, structure: Any) -> None:
        """Raise :class:`InvalidStructureError` if ``structure`` cannot become a graph.

        Fast checks only: type, size, finite coordinates and cell, elements with features.
        """
        check_structure(structure, self.max_sites)

    def __call__(self, structure: Any) -> Data:
        """Build the graph of one structure (see the module docstring for its fields)."""
        return self.build(structure)[0]

    def build(self, structure: Any) -> tuple[Data, list[str]]:
        """Build the graph of one structure; also return the policies' notes (``[]`` if none)."""
        self.validate(structure)
        cfg = self.config
        structure, notes = merge_close_sites(structure, cfg.min_distance)
        spacegroup = 0
        if cfg.cell != "as_is" or cfg.use_spacegroup:
            symmetry = find_spacegroup(structure, need_analyzer=cfg.cell != "as_is")
            notes += symmetry.notes
            spacegroup = symmetry.number
            if cfg.cell != "as_is" and symmetry.analyzer is None:
                notes.append(f"no {cfg.cell} cell without symmetry; the cell is used as given")
            elif cfg.cell == "conventional":
                structure = symmetry.analyzer.get_conventional_standard_structure()
            elif cfg.cell == "primitive":
                structure = symmetry.analyzer.get_primitive_standard_structure()
        species = [site.species for site in structure]
        x = torch.from_numpy(site_features(species))
        comp = torch.from_numpy(composition_vector(species)).unsqueeze(0)
        n_atoms = len(structure)
        if cfg.uses_graph:
            nbr_idx, nbr_dist = self._neighbours(structure)
        else:
            nbr_idx = np.zeros((n_atoms, 0), dtype=np.int64)
            nbr_dist = np.zeros((n_atoms, 0), dtype=np.float32)
        m = nbr_idx.shape[1]
        centre = np.repeat(np.arange(n_atoms, dtype=np.int64), m)
        edge_index = torch.from_numpy(np.stack([centre, nbr_idx.reshape(-1)]))
        graph = Data(
            x=x,
            edge_index=edge_index,
            edge_dist=torch.from_numpy(nbr_dist.reshape(-1).astype(np.float32)),
            comp=comp,
            spacegroup=torch.tensor([spacegroup], dtype=torch.long),
            num_nodes=n_atoms,
        )
        return graph, notes

    def _neighbor_list(
        self, structure: IStructure, radius: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Periodic neighbour pairs within ``radius``; raise if two sites still overlap.

        Split sites were merged before; what remains this close (a chain of near sites whose
        merged position lands on another) is reported rather than guessed at.
        """
        centres, points, _, dists = structure.get_neighbor_list(radius)
        if dists.size and float(dists.min()) < self.config.min_distance:
            k = int(np.argmin(dists))
            raise InvalidStructureError(
                f"sites {int(centres[k])} and {int(points[k])} overlap: {float(dists[k]):.3g} A "
                f"apart (min_distance={self.config.min_distance} A)"
            )
        return centres, points, dists

    def _neighbours(self, structure: IStructure) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(n, M)`` neighbour indices and distances, padded as in the official code.

        Each centre's pairs keep the neighbour list's order and are sorted by distance with a
        stable sort (ties keep that order), one row per centre.
        """
        cfg = self.config
        n_atoms, m = len(structure), cfg.max_num_nbr
        centres, points, dists = self._neighbor_list(structure, cfg.radius)
        if centres.size and not bool(np.all(centres[1:] >= centres[:-1])):
            order = np.argsort(centres, kind="stable")  # pymatgen's list is grouped already
            centres, points, dists = centres[order], points[order], dists[order]
        counts = np.bincount(centres, minlength=n_atoms)
        rank = np.arange(centres.size) - (np.cumsum(counts) - counts)[centres]
        width = max(int(counts.max(initial=0)), m)
        table = np.full((n_atoms, width), np.inf)
        table[centres, rank] = dists
        order = np.argsort(table, axis=1, kind="stable")[:, :m]
        nbr_dist = np.take_along_axis(table, order, axis=1)
        table = np.zeros((n_atoms, width), dtype=np.int64)
        table[centres, rank] = points
        nbr_idx = np.take_along_axis(table, order, axis=1)
        missing = ~np.isfinite(nbr_dist)
        nbr_dist[missing] = cfg.radius + 1.0
        nbr_idx[missing] = 0
        return nbr_idx, nbr_dist


def gaussian_centres(config: ClaspConfig) -> np.ndarray:
    """Centres of the Gaussian distance expansion: 0, step, ..., radius (41 for the defaults)."""
    n = int(math.floor(config.radius / config.gaussian_step + 0.5)) + 1
    return np.arange(n, dtype=np.float64) * config.gaussian_step
