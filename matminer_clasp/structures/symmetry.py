"""Space-group numbers that never fail: a ladder of spglib tolerances, then the CIF, then P1.

spglib (through pymatgen's ``SpacegroupAnalyzer``) gives up on some experimental structures at
the default ``symprec=0.01`` -- typically split sites or positions refined to a slightly lower
symmetry -- while a tighter tolerance finds the group. :func:`find_spacegroup` tries
:data:`SYMPREC_LADDER` in order, then the space group the CIF declares (kept by
:func:`matminer_clasp.structures.parse_cif` in ``structure.properties``), then P1 (number 1), and
says in a note which rung answered whenever it was not the first. A structure spglib handles at
0.01 gets exactly the number it always got from this ladder.

When only the number is wanted (``need_analyzer=False``, the graph builder with ``cell="as_is"``)
the first rung asks moyopy (the Rust port of spglib's algorithm, about 3-4x faster here) and
falls back to the spglib ladder above whenever moyopy does not answer with a number 1-230, so the
notes of a failing structure are spglib's. moyopy is asked *without* an angle tolerance. With
pymatgen's 5 degrees it never returned on AMCSD 14071 (a 21R diamond polytype, a = 2.52 A,
c = 43.2 A; tests/fixtures/real_cifs/symmetry_hang-amcsd14071.cif): it grew to 15 GB within
minutes, the failure mode of large angle tolerances in moyopy (spglib/moyo#43), and a call into
Rust cannot be interrupted. Without it moyopy answered on every AMCSD entry as parsed (1.1 ms on
average against spglib's 3.8 ms) and gave spglib's number (symprec 0.01, 5 degrees) on 9,247 of
the 9,274; of the others, 9 are entries spglib itself fails on at 0.01, and on 18 moyopy finds a
subgroup (e.g. 141 for 227, 65 for 221) because their lattice is within 5 degrees but not within
symprec of the more symmetric one.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field

from pymatgen.core import IStructure
from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

# moyopy logs through Python logging ("moyo.*"); its warnings about operations it omits are
# about its own orbits, which are not used here, so they never reach the last-resort handler
logging.getLogger("moyo").addHandler(logging.NullHandler())

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


def find_spacegroup(structure: IStructure, need_analyzer: bool = True) -> SymmetryResult:
    """Space group of ``structure`` by the ladder described in the module docstring.

    With ``need_analyzer=False`` the result's ``analyzer`` may be ``None`` even when spglib would
    answer (moyopy found the number; no standard cell is derived).
    """
    if not need_analyzer:
        number = _moyopy_number(structure, SYMPREC_LADDER[0])
        if number is not None:
            return SymmetryResult(number, None, [])
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


def species_numbers(structure: IStructure) -> list[int]:
    """Type numbers of the sites exactly as pymatgen's ``SpacegroupAnalyzer`` assigns them.

    A site gets the number of the first earlier composition it equals (``Composition ==``, with
    its tolerance and quirks), else the next new number. When every site holds one species at
    occupancy 1, equality is that of the species, looked up in a dict.
    """
    compositions = [site.species for site in structure]
    single = [tuple(comp.items()) for comp in compositions]
    if all(len(items) == 1 and items[0][1] == 1 for items in single):
        first: dict[object, int] = {}
        return [first.setdefault(items[0][0], len(first) + 1) for items in single]
    unique: list[object] = []
    numbers = []
    known: dict[tuple, int] = {}  # site contents whose answer no longer changes
    for comp, items in zip(compositions, single):
        number = known.get(items)
        if number is None:
            if comp in unique:
                number = unique.index(comp) + 1
            else:
                unique.append(comp)
                number = len(unique)
            if comp == comp:  # equality decided by contents: equal contents, equal answer
                known[items] = number
        numbers.append(number)
    return numbers


def _moyopy_number(structure: IStructure, symprec: float) -> int | None:
    """Number from moyopy at ``symprec``; ``None``: not installed, failed, magnetic."""
    if "magmom" in structure.site_properties or any(
        getattr(sp, "spin", None) is not None for sp in structure.types_of_species
    ):
        return None  # spglib then sees magnetic moments too; leave those to it
    try:
        import moyopy

        cell = moyopy.Cell(structure.lattice.matrix.tolist(), structure.frac_coords.tolist(),
                           species_numbers(structure))
        # no angle tolerance: with pymatgen's 5 degrees moyopy never returned on AMCSD 14071
        # (see the module docstring); moyopy then compares lattice vectors with symprec alone
        dataset = moyopy.MoyoDataset(cell, symprec=symprec)
        number = int(dataset.number)
    except Exception:  # noqa: BLE001 - any failure: the spglib ladder decides, with its notes
        return None
    return number if 1 <= number <= 230 else None
