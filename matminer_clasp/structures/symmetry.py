"""Space-group numbers that never fail: a ladder of spglib tolerances, then the CIF, then P1.

spglib (through pymatgen's ``SpacegroupAnalyzer``) gives up on some experimental structures at
the default ``symprec=0.01`` -- typically split sites or positions refined to a slightly lower
symmetry -- while a tighter tolerance finds the group. :func:`find_spacegroup` tries
:data:`SYMPREC_LADDER` in order, then the space group the CIF declares (kept by
:func:`matminer_clasp.structures.parse_cif` in ``structure.properties``), then P1 (number 1), and
says in a note which rung answered whenever it was not the first. A structure spglib handles at
0.01 gets exactly the number it always got.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

from pymatgen.core import IStructure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

#: spglib tolerances tried in order (angstrom); the first is pymatgen's default.
SYMPREC_LADDER = (0.01, 1e-3, 1e-4)
#: ``structure.properties`` key holding the space-group number a CIF declares.
DECLARED_SPACEGROUP = "cif_spacegroup_number"


@dataclass
class SymmetryResult:
    """What :func:`find_spacegroup` found.

    Attributes
    ----------
    number
        International space-group number, 1-230.
    analyzer
        The ``SpacegroupAnalyzer`` that answered (``None`` for the CIF / P1 fallbacks, for which
        no standard cell can be derived).
    notes
        Empty when spglib answered at the default tolerance; otherwise what was used and why.
    """

    number: int
    analyzer: SpacegroupAnalyzer | None
    notes: list[str] = field(default_factory=list)


def find_spacegroup(structure: IStructure) -> SymmetryResult:
    """Space group of ``structure`` by the ladder described in the module docstring."""
    failures = []
    for symprec in SYMPREC_LADDER:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                analyzer = SpacegroupAnalyzer(structure, symprec=symprec)
                number = int(analyzer.get_space_group_number())
        except Exception as exc:  # spglib failures surface as many exception types
            failures.append(f"symprec={symprec}: {type(exc).__name__}")
            continue
        if 1 <= number <= 230:
            notes = [] if not failures else [
                f"space group {number} found at symprec={symprec} ({'; '.join(failures)})"
            ]
            return SymmetryResult(number, analyzer, notes)
        failures.append(f"symprec={symprec}: number {number}")
    tried = "; ".join(failures)
    declared = (structure.properties or {}).get(DECLARED_SPACEGROUP)
    if isinstance(declared, int) and 1 <= declared <= 230:
        return SymmetryResult(
            declared, None, [f"spglib failed ({tried}); using the CIF's space group {declared}"]
        )
    return SymmetryResult(1, None, [f"spglib failed ({tried}); using P1"])
