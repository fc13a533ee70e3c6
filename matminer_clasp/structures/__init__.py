"""The one door for inputs: whatever a user holds becomes a checked pymatgen ``Structure``.

Every caller -- featurizers, ``screen`` / ``EmbeddingIndex``, the CLI, Dask and training -- reads
its inputs through this package, so a CIF that one of them can read, repair or rescue, all can.

``read``         :func:`to_structure` (one object, dict, JSON, CIF text or file) and
                 :func:`read_structures` (folders, files, tables -> one row per input)
``cif``          :func:`parse_cif`: pymatgen's parser with recorded tolerance retries, the
                 composition repair and the CIF's declared space group
``composition``  :func:`check_composition`: misread element labels mapped back to the formula
``sites``        :func:`check_structure` (what is physically meaningless) and
                 :func:`merge_close_sites` (the split-site policy)
``symmetry``     :func:`find_spacegroup`: spglib tolerance ladder, then the CIF, then P1

The graph builder (:mod:`matminer_clasp.graph`) applies the site and symmetry policies to every
structure it is given; the notes they return travel with each embedding
(:class:`~matminer_clasp.model.encoding.EncodeReport`).
"""

from matminer_clasp.structures.cif import CIF_RETRIES, parse_cif
from matminer_clasp.structures.composition import check_composition
from matminer_clasp.structures.read import (
    read_structure_file,
    read_structures,
    structure_files,
    to_structure,
)
from matminer_clasp.structures.sites import check_structure, merge_close_sites
from matminer_clasp.structures.symmetry import SYMPREC_LADDER, find_spacegroup

__all__ = [
    "CIF_RETRIES",
    "SYMPREC_LADDER",
    "check_composition",
    "check_structure",
    "find_spacegroup",
    "merge_close_sites",
    "parse_cif",
    "read_structure_file",
    "read_structures",
    "structure_files",
    "to_structure",
]
