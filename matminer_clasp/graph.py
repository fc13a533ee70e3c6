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
from torch_geometric.data import Data

from matminer_clasp.config import ClaspConfig
from matminer_clasp.graph_arrays import GraphArrayBuilder, GraphArrays

#: Default bound on sites at inference (``encode_structures``); training uses ``max_sites``.
INFERENCE_MAX_SITES = 5000


class CrystalGraphBuilder(GraphArrayBuilder):
    """Turn structures into crystal graphs for a given :class:`ClaspConfig`.

    Every structure first goes through the policies of :mod:`matminer_clasp.structures`:
    :func:`~matminer_clasp.structures.check_structure` (rejects only what is physically
    meaningless), :func:`~matminer_clasp.structures.merge_close_sites` (split sites closer than
    ``min_distance`` become one site) and, when the model needs it,
    :func:`~matminer_clasp.structures.find_spacegroup` (a tolerance ladder that always answers).
    :meth:`build` returns the notes those policies wrote; ``__call__`` only the graph. The array
    work is :meth:`~matminer_clasp.graph_arrays.GraphArrayBuilder.build_arrays` (torch-free);
    :func:`graph_from_arrays` makes the ``Data``.

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

    def __call__(self, structure: Any) -> Data:
        """Build the graph of one structure (see the module docstring for its fields)."""
        return self.build(structure)[0]

    def build(self, structure: Any) -> tuple[Data, list[str]]:
        """Build the graph of one structure; also return the policies' notes (``[]`` if none)."""
        arrays, notes = self.build_arrays(structure)
        return graph_from_arrays(arrays), notes


def graph_from_arrays(arrays: GraphArrays) -> Data:
    """The ``Data`` of :class:`~matminer_clasp.graph_arrays.GraphArrays` (fields: module doc)."""
    n_atoms, m = arrays.nbr_idx.shape
    centre = np.repeat(np.arange(n_atoms, dtype=np.int64), m)
    edge_index = torch.from_numpy(np.stack([centre, arrays.nbr_idx.reshape(-1)]))
    return Data(
        x=torch.from_numpy(arrays.x),
        edge_index=edge_index,
        edge_dist=torch.from_numpy(arrays.nbr_dist.reshape(-1)),
        comp=torch.from_numpy(arrays.comp).unsqueeze(0),
        spacegroup=torch.tensor([arrays.spacegroup], dtype=torch.long),
        num_nodes=n_atoms,
    )


def gaussian_centres(config: ClaspConfig) -> np.ndarray:
    """Centres of the Gaussian distance expansion: 0, step, ..., radius (41 for the defaults)."""
    n = int(math.floor(config.radius / config.gaussian_step + 0.5)) + 1
    return np.arange(n, dtype=np.float64) * config.gaussian_step
