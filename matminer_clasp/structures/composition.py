"""The composition check that repairs misread element labels in CIFs.

CIFs without ``_atom_site_type_symbol`` (AMCSD's, many older ones) leave pymatgen to guess each
element from its site label, and it sometimes guesses wrong: ``NH4`` becomes nihonium, ``CO3``
cobalt, ``BI`` bismuth, ``OSi1`` osmium. :func:`check_composition` compares the parsed elements
with the CIF's ``_chemical_formula_sum`` and maps such sites back to the formula element their
label starts with, or rejects the structure when it cannot.
"""

from __future__ import annotations

from pymatgen.core import Composition, Element, Structure

from matminer_clasp.errors import InvalidStructureError

#: Elements a mineral formula lists that X-ray structures routinely leave out (unlocated H).
OPTIONAL_ELEMENTS = frozenset({"H", "D"})
#: Elements absent from the formula are kept (not a misread label) below this atomic fraction.
TRACE_FRACTION = 0.01


def formula_elements(formula: str) -> set[str]:
    """The element symbols of a formula string such as ``"(Mg1.2 Fe.8) Si O4"``.

    Raises whatever pymatgen's ``Composition`` raises for a formula it cannot read.
    """
    comp = Composition(formula.replace(" ", ""))
    return {el.symbol for el in comp.elements}


def _repair_symbol(symbol: str, allowed: set[str]) -> str | None:
    """Map a misread element to a formula element it was read from (``Nh`` -> ``N``)."""
    matches = [el for el in allowed if symbol.lower().startswith(el.lower())]
    return max(matches, key=len) if matches else None


def check_composition(structure: Structure, formula: str | None) -> tuple[Structure, str]:
    """Check a parsed structure's elements against the entry's formula; repair misread sites.

    Parameters
    ----------
    structure
        The structure as pymatgen parsed it.
    formula
        The entry's ``_chemical_formula_sum`` (``None``/empty: nothing to check).

    Returns
    -------
    (Structure, str)
        The structure (a repaired copy when needed) and a note: ``""`` when the elements agree,
        ``"repaired Nh->N"`` when misread species were mapped back to formula elements,
        ``"missing H"`` when only hydrogen is absent (unlocated H atoms).

    Raises
    ------
    InvalidStructureError
        When elements absent from the formula remain after repair (unless they are trace
        amounts, below :data:`TRACE_FRACTION` of the atoms), or formula elements other than H
        are missing from the structure.
    """
    if not formula or not formula.strip():
        return structure, ""
    try:
        allowed = formula_elements(formula)
    except Exception:
        return structure, f"formula {formula!r} not understood; not checked"
    found = {el.symbol for el in structure.composition.elements}
    notes = []
    extra = found - allowed
    mapping: dict[str, str | None] = {}
    if extra:
        mapping = {sym: _repair_symbol(sym, allowed) for sym in extra}
        unmapped = sorted(sym for sym, new in mapping.items() if new is None)
        comp = structure.composition.element_composition
        trace = sum(comp[sym] for sym in unmapped) / max(comp.num_atoms, 1e-12)
        if unmapped and trace >= TRACE_FRACTION:
            raise InvalidStructureError(
                f"elements {unmapped} of the parsed structure are not in the formula {formula!r}"
            )
        if unmapped:  # explicit trace substituents the formula rounds away: kept, noted
            notes.append(f"trace elements {','.join(unmapped)} absent from the formula kept")
            mapping = {sym: new for sym, new in mapping.items() if new is not None}
    if extra and mapping:
        species = []
        for site in structure:
            occ: dict[str, float] = {}
            for sp, amount in site.species.items():
                sym = sp.symbol if hasattr(sp, "symbol") else str(sp)
                sym = mapping.get(sym, sym)
                occ[sym] = occ.get(sym, 0.0) + amount
            species.append({Element(k): v for k, v in occ.items()})
        structure = Structure(
            structure.lattice, species, structure.frac_coords,
            site_properties=None, labels=[site.label for site in structure],
        )
        notes.append("repaired " + ",".join(f"{k}->{v}" for k, v in sorted(mapping.items())))
        found = {el.symbol for el in structure.composition.elements}
    missing = allowed - found
    if missing - OPTIONAL_ELEMENTS:
        raise InvalidStructureError(
            f"formula {formula!r} lists {sorted(missing - OPTIONAL_ELEMENTS)}, absent from the "
            "parsed structure"
        )
    if missing:
        notes.append("missing " + ",".join(sorted(missing)))
    return structure, "; ".join(notes)


def composition_deviation(structure: Structure, formula: object) -> float | None:
    """Largest difference of an element's atomic fraction between structure and formula.

    Hydrogen is left out (X-ray structures rarely locate it); ``None`` when there is no formula
    or it cannot be read.
    """
    if not isinstance(formula, str) or not formula.strip():
        return None
    try:
        expected = Composition(formula.replace(" ", ""))
    except Exception:  # noqa: BLE001 - an unreadable formula gives no comparison
        return None
    skip = {str(el) for el in OPTIONAL_ELEMENTS}
    want = {str(el): amt for el, amt in expected.element_composition.items() if str(el) not in skip}
    have = {str(el): amt for el, amt in structure.composition.element_composition.items()
            if str(el) not in skip}
    n_want, n_have = sum(want.values()), sum(have.values())
    if not n_want or not n_have:
        return None
    return max(abs(have.get(el, 0.0) / n_have - want.get(el, 0.0) / n_want)
               for el in set(want) | set(have))
