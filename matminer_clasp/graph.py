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
``spacegroup``   ``(1,)`` int64 international space-group number, 0 when not computed
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from pymatgen.core import IStructure, Molecule
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer
from torch_geometric.data import Data

from matminer_clasp.atom_features import composition_vector, site_features
from matminer_clasp.config import ClaspConfig
from matminer_clasp.errors import InvalidStructureError


def _describe(obj: Any) -> str:
    return "None" if obj is None else f"an object of type {type(obj).__name__}"


class CrystalGraphBuilder:
    """Turn structures into crystal graphs for a given :class:`ClaspConfig`.

    Parameters
    ----------
    config
        Supplies ``radius``, ``max_num_nbr``, ``cell``, ``max_sites``, ``min_distance`` and whether
        the model needs neighbours and space groups.

    Examples
    --------
    >>> from pymatgen.core import Lattice, Structure
    >>> nacl = Structure(Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    >>> graph = CrystalGraphBuilder(ClaspConfig(cell="as_is"))(nacl)
    >>> tuple(graph.x.shape), tuple(graph.edge_index.shape)
    ((2, 92), (2, 24))
    """

    def __init__(self, config: ClaspConfig | None = None) -> None:
        self.config = config or ClaspConfig()

    def validate(self, structure: Any) -> None:
        """Raise :class:`InvalidStructureError` if ``structure`` cannot become a graph.

        Fast checks only (type, size, finite coordinates, elements with features); overlapping
        atoms are found while the neighbour list is built.
        """
        if isinstance(structure, Molecule):
            raise InvalidStructureError(
                "got a pymatgen Molecule; CLaSP needs a periodic Structure (wrap the molecule in a "
                "box with Molecule.get_boxed_structure if that is what you mean)"
            )
        if not isinstance(structure, IStructure):
            raise InvalidStructureError(
                f"expected a pymatgen Structure, got {_describe(structure)}"
            )
        n_sites = len(structure)
        if n_sites == 0:
            raise InvalidStructureError("the structure has no sites")
        if n_sites > self.config.max_sites:
            raise InvalidStructureError(
                f"the structure has {n_sites} sites, more than max_sites={self.config.max_sites} "
                "(raise max_sites in the model config to allow it)"
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
        # raises for dummy species / elements without features
        composition_vector([site.species for site in structure])

    def __call__(self, structure: Any) -> Data:
        """Build the graph of one structure (see the module docstring for its fields)."""
        self.validate(structure)
        cfg = self.config
        spacegroup = 0
        if cfg.cell != "as_is" or cfg.use_spacegroup:
            try:
                sga = SpacegroupAnalyzer(structure)
                spacegroup = int(sga.get_space_group_number())
                if cfg.cell == "conventional":
                    structure = sga.get_conventional_standard_structure()
                elif cfg.cell == "primitive":
                    structure = sga.get_primitive_standard_structure()
            except Exception as exc:  # spglib failures surface as many exception types
                needs = [f"cell={cfg.cell!r}"] if cfg.cell != "as_is" else []
                needs += ["use_spacegroup=True"] if cfg.use_spacegroup else []
                raise InvalidStructureError(
                    f"symmetry analysis failed ({type(exc).__name__}: {exc}); the model config "
                    f"needs it for {' and '.join(needs)}"
                ) from exc
        species = [site.species for site in structure]
        x = torch.from_numpy(site_features(species))
        comp = torch.from_numpy(composition_vector(species)).unsqueeze(0)
        n_atoms = len(structure)
        if cfg.uses_graph:
            nbr_idx, nbr_dist = self._neighbours(structure)
        else:  # no neighbours needed, but overlapping atoms are still invalid input
            self._neighbor_list(structure, cfg.min_distance)
            nbr_idx = np.zeros((n_atoms, 0), dtype=np.int64)
            nbr_dist = np.zeros((n_atoms, 0), dtype=np.float32)
        m = nbr_idx.shape[1]
        centre = np.repeat(np.arange(n_atoms, dtype=np.int64), m)
        edge_index = torch.from_numpy(np.stack([centre, nbr_idx.reshape(-1)]))
        return Data(
            x=x,
            edge_index=edge_index,
            edge_dist=torch.from_numpy(nbr_dist.reshape(-1).astype(np.float32)),
            comp=comp,
            spacegroup=torch.tensor([spacegroup], dtype=torch.long),
            num_nodes=n_atoms,
        )

    def _neighbor_list(
        self, structure: IStructure, radius: float
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Periodic neighbour pairs within ``radius``; raise if two sites overlap."""
        centres, points, _, dists = structure.get_neighbor_list(radius)
        if dists.size and float(dists.min()) < self.config.min_distance:
            k = int(np.argmin(dists))
            raise InvalidStructureError(
                f"sites {int(centres[k])} and {int(points[k])} overlap: {float(dists[k]):.3g} A "
                f"apart (min_distance={self.config.min_distance} A)"
            )
        return centres, points, dists

    def _neighbours(self, structure: IStructure) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(n, M)`` neighbour indices and distances, padded as in the official code."""
        cfg = self.config
        n_atoms, m = len(structure), cfg.max_num_nbr
        centres, points, dists = self._neighbor_list(structure, cfg.radius)
        order = np.lexsort((dists, centres))  # by centre, then distance (stable)
        centres, points, dists = centres[order], points[order], dists[order]
        counts = np.bincount(centres, minlength=n_atoms)
        starts = np.cumsum(counts) - counts
        rank = np.arange(centres.size) - starts[centres]
        keep = rank < m
        nbr_idx = np.zeros((n_atoms, m), dtype=np.int64)
        nbr_dist = np.full((n_atoms, m), cfg.radius + 1.0, dtype=np.float64)
        nbr_idx[centres[keep], rank[keep]] = points[keep]
        nbr_dist[centres[keep], rank[keep]] = dists[keep]
        return nbr_idx, nbr_dist


def gaussian_centres(config: ClaspConfig) -> np.ndarray:
    """Centres of the Gaussian distance expansion: 0, step, ..., radius (41 for the defaults)."""
    n = int(math.floor(config.radius / config.gaussian_step + 0.5)) + 1
    return np.arange(n, dtype=np.float64) * config.gaussian_step
