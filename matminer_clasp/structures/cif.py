"""CIF text -> pymatgen ``Structure``, with the retries and repairs real CIFs need.

:func:`parse_cif` reads the first structure of a CIF the way every caller (featurizers, CLI,
index, training) does:

1. pymatgen's ``CifParser`` at its default tolerances; when it refuses the CIF (typically
   "Occupancy ... exceeded tolerance": symmetry copies of a site that differ by more than
   ``site_tolerance`` and so add up to more than one atom, or rounding in published
   occupancies), the settings of :data:`CIF_RETRIES` are tried in order, and the one that worked
   is recorded in a note, with how far the rescaled composition then is from the CIF's formula;
2. the composition check of :mod:`~matminer_clasp.structures.composition` when the CIF has no
   ``_atom_site_type_symbol`` (elements guessed from labels) or a formula is given;
3. the space group the CIF declares is kept in ``structure.properties`` (key
   :data:`~matminer_clasp.structures.symmetry.DECLARED_SPACEGROUP`) as the fallback of
   :func:`~matminer_clasp.structures.symmetry.find_spacegroup`.
"""

from __future__ import annotations

import io
import re
import warnings
from contextlib import redirect_stderr
from typing import Any

import numpy as np
from pymatgen.core import Structure
from pymatgen.io.cif import CifParser
from pymatgen.symmetry.groups import SpaceGroup

from matminer_clasp.errors import InvalidStructureError
from matminer_clasp.structures.composition import check_composition, composition_deviation
from matminer_clasp.structures.symmetry import DECLARED_SPACEGROUP

#: ``CifParser`` settings tried, in order, after the defaults refuse a CIF. pymatgen scales a
#: site whose occupancies add up to more than 1 but at most ``occupancy_tolerance`` back to 1.
#: Measured on AMCSD (164 of 9,275 CIFs refused at the defaults): 1.05 reads 90 (rounding in
#: the published occupancies), 1.5 seven more, 2.0 another 29 and 10.0 another 37 (sites that
#: symmetry copies onto themselves, or labels such as ``O-H1`` read as two species); a
#: ``site_tolerance`` above the default rescues none. One (a malformed number) stays refused.
CIF_RETRIES: tuple[dict[str, float], ...] = (
    {"occupancy_tolerance": 1.05},
    {"occupancy_tolerance": 1.5},
    {"occupancy_tolerance": 2.0},
    {"occupancy_tolerance": 10.0},
)
_NUMBER_TAGS = ("_space_group_it_number", "_symmetry_int_tables_number")
_SYMBOL_TAGS = ("_space_group_name_h-m_alt", "_symmetry_space_group_name_h-m")


def _parse_with(text: str, settings: dict[str, float]) -> tuple[list[Structure], CifParser, str]:
    """Structures pymatgen reads with ``settings``; also the parser and its first refusal."""
    with warnings.catch_warnings(record=True) as caught, redirect_stderr(io.StringIO()):
        warnings.simplefilter("always")
        parser = CifParser.from_str(text, **settings)
        try:
            structures = parser.parse_structures(primitive=False, on_error="warn")
        except ValueError:  # pymatgen raises when no structure at all could be read
            structures = []
    reasons = [str(w.message).strip().splitlines()[-1] for w in caught]
    reason = next((r for r in reasons if "ccupancy" in r), reasons[0] if reasons else "")
    found = re.search(r"occupancies \((\[[^\]]*\])\) sum to > 1", reason)
    if found:
        reason = f"site occupancies {found.group(1)} sum to more than 1"
    return structures, parser, reason


def _number_from_operations(parser: CifParser, lattice: Any) -> int | None:
    """The space group of the symmetry operations the CIF lists (spglib), or ``None``."""
    try:
        import spglib

        ops = parser.symmetry_operations
        rotations = np.array([np.rint(op.rotation_matrix) for op in ops], dtype="intc")
        translations = np.array([op.translation_vector % 1.0 for op in ops], dtype="double")
        found = spglib.get_spacegroup_type_from_symmetry(
            rotations, translations, lattice=lattice, symprec=1e-3
        )
        return int(found.number) if found is not None else None
    except Exception:  # noqa: BLE001 - operations that name no group are no declaration
        return None


def declared_spacegroup(
    data: dict[str, Any], parser: CifParser | None = None, lattice: Any = None
) -> int | None:
    """The space-group number a CIF declares.

    In order: the number tag; the group of its listed symmetry operations (AMCSD CIFs give
    only those and a Hermann-Mauguin symbol, written without bars, such as ``F m 3 m``, that
    pymatgen cannot read); the Hermann-Mauguin symbol.
    """
    lowered = {k.lower(): v for k, v in data.items()}
    for tag in _NUMBER_TAGS:
        value = lowered.get(tag)
        try:
            number = int(str(value).strip())
        except (TypeError, ValueError):
            continue
        if 1 <= number <= 230:
            return number
    if parser is not None:
        number = _number_from_operations(parser, lattice)
        if number is not None:
            return number
    for tag in _SYMBOL_TAGS:
        value = lowered.get(tag)
        if not isinstance(value, str) or not value.strip("?. '\""):
            continue
        try:
            with warnings.catch_warnings():  # "full symbol not available" is no news here
                warnings.simplefilter("ignore")
                return int(SpaceGroup(value.strip().strip("'\"").replace(" ", "")).int_number)
        except Exception:  # noqa: BLE001 - an unknown symbol is no declaration
            continue
    return None


def parse_cif(text: str, formula: str | None = None) -> tuple[Structure, list[str]]:
    """Parse the first structure of a CIF string (see the module docstring for the steps).

    Parameters
    ----------
    text
        The CIF's content.
    formula
        The expected formula (e.g. from a database record). Default: the CIF's own
        ``_chemical_formula_sum``, used only when the CIF has no ``_atom_site_type_symbol``.

    Returns
    -------
    (Structure, list of str)
        The structure and notes on what was retried or repaired (empty for a clean CIF).

    Raises
    ------
    InvalidStructureError
        When no setting reads a structure (with pymatgen's first reason), or the composition
        check rejects it.
    """
    if not isinstance(text, str) or not text.strip():
        raise InvalidStructureError("the CIF is empty")
    notes: list[str] = []
    structures, parser, first_reason = _parse_with(text, {})
    if not structures:
        for settings in CIF_RETRIES:
            structures, parser, _ = _parse_with(text, settings)
            if structures:
                used = ", ".join(f"{k}={v}" for k, v in settings.items())
                notes.append(f"read with {used} ({first_reason or 'refused at the defaults'})")
                break
    if not structures:
        detail = f": {first_reason}" if first_reason else ""
        raise InvalidStructureError(f"no structure could be read from the CIF{detail}")
    structure = structures[0]
    block = next(iter(parser.as_dict().values()), {})
    if formula is None and "_atom_site_type_symbol" not in text:
        value = block.get("_chemical_formula_sum")
        formula = value if isinstance(value, str) else None
    if formula:
        structure, note = check_composition(structure, formula)
        if note:
            notes.append(note)
    if notes and notes[0].startswith("read with"):
        deviation = composition_deviation(structure, formula or block.get("_chemical_formula_sum"))
        if deviation is not None and deviation > 0.01:
            notes[0] += f"; atomic fractions differ from the formula by up to {deviation:.2f}"
    declared = declared_spacegroup(block, parser, structure.lattice.matrix)
    if declared is not None:
        structure.properties = {**(structure.properties or {}), DECLARED_SPACEGROUP: declared}
    return structure, notes
