"""Keywords from an entry's metadata: its mineral name and its chemical class.

Stage-2 captions are keywords extracted from the paper's title
(:func:`~matminer_clasp.train.captions.keyword_captions`). A title often does not name what a
structure is: a pyrope paper may never say *garnet*, a silicate paper rarely says *silicate*.
Entries carry more than their title, and two fields describe the structure itself:

- the mineral name (AMCSD's ``mineral`` field, a CIF's ``_chemical_name_mineral``):
  :func:`mineral_keyword`, switched on by ``DataConfig.mineral_keywords``;
- the formula, from which :func:`chemical_class` names a coarse class (``"silicate"``,
  ``"sulfide"``, ``"oxide"``, ...), switched on by ``DataConfig.chemistry_keywords``.

:func:`add_metadata_keywords` puts them in front of the title keywords.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from pymatgen.core.periodic_table import Element

from matminer_clasp.structures.composition import formula_elements
from matminer_clasp.train.captions import KEYWORD_SEPARATOR, decode_cif_markup

_LETTER_RUN = re.compile(r"[^\W\d_]+")
_SYMBOL_RUN = re.compile(r"(?:[A-Z][a-z]?)+")

#: Oxyanion formers, in order of precedence: with oxygen, a compound holding one is named by it.
OXYANION_CLASSES = (("Si", "silicate"), ("P", "phosphate"), ("As", "arsenate"), ("S", "sulfate"),
                    ("Se", "selenate"), ("C", "carbonate"), ("B", "borate"), ("N", "nitrate"),
                    ("Ge", "germanate"))
#: Anions without oxygen, in order of precedence.
ANION_CLASSES = (("S", "sulfide"), ("Se", "selenide"), ("Te", "telluride"), ("F", "fluoride"),
                 ("Cl", "chloride"), ("Br", "bromide"), ("I", "iodide"), ("As", "arsenide"),
                 ("Sb", "antimonide"), ("N", "nitride"), ("C", "carbide"), ("B", "boride"),
                 ("H", "hydride"))
_HALIDES = (("F", "fluoride"), ("Cl", "chloride"), ("Br", "bromide"), ("I", "iodide"))


def _is_symbol_run(run: str) -> bool:
    """Whether a run of letters spells element symbols only (``"SrFe"``, ``"CaB"``)."""
    if not _SYMBOL_RUN.fullmatch(run):
        return False
    return all(Element.is_valid_symbol(sym) for sym in re.findall(r"[A-Z][a-z]?", run))


def mineral_keyword(name: str | None) -> str | None:
    """The mineral name of an entry as a keyword, or ``None`` where it is a formula.

    AMCSD's ``mineral`` field (and a CIF's ``_chemical_name_mineral``) holds a mineral name
    (``"Almandine"``, ``"Tapiolite-(Fe)"``, ``"Moissanite 3C"``) or, for synthetic compounds, a
    formula (``"Co Cu O2"``, ``"SrFe2As2"``). A name counts when one of its runs of letters is a
    word of at least three letters that does not spell element symbols; markup is decoded.

    Examples
    --------
    >>> mineral_keyword("Tapiolite-(Fe)"), mineral_keyword("Cr Gd O4"), mineral_keyword("TaS2")
    ('Tapiolite-(Fe)', None, None)
    """
    if not name or not isinstance(name, str):
        return None
    text = decode_cif_markup(name).strip(" .;:,\"'`*")
    words = [r for r in _LETTER_RUN.findall(text) if len(r) >= 3 and not _is_symbol_run(r)]
    return text if words else None


def chemical_class(formula: str | None) -> str | None:
    """The chemical class of a compound from its formula, as a keyword, or ``None``.

    A coarse version of the mineralogical classes (Strunz, Dana), decided by the elements alone
    (deuterium and tritium count as hydrogen): with oxygen, the first oxyanion former of
    :data:`OXYANION_CLASSES` names the class (``"silicate"``, ``"carbonate"``, ...), else a
    halogen (``"chloride"`` for an oxychloride or a hydrated chloride), else ``"hydroxide"``
    (with H) or ``"oxide"``; without oxygen, the first anion of :data:`ANION_CLASSES`
    (``"sulfide"``, ``"fluoride"``, ``"nitride"``, ...), or ``"element"`` for one element and
    ``"intermetallic"`` for the rest. Mixed-anion compounds get one class by precedence, so the
    keyword is a description, not a classification. A formula pymatgen cannot read gives ``None``.

    Examples
    --------
    >>> chemical_class("(Mg.6 Fe1.4) Si O4"), chemical_class("Mg Cl2 O H2"), chemical_class("Ag Mg")
    ('silicate', 'chloride', 'intermetallic')
    """
    if not formula or not formula.strip():
        return None
    try:
        elements = {"H" if s in ("D", "T") else s for s in formula_elements(formula)}
    except Exception:  # pymatgen raises several types for an unreadable formula
        return None
    if not elements:
        return None
    if len(elements) == 1:
        return "element"
    if "O" in elements:
        for symbol, name in OXYANION_CLASSES:
            if symbol in elements:
                return name
        for symbol, name in _HALIDES:
            if symbol in elements:
                return name
        return "hydroxide" if "H" in elements else "oxide"
    for symbol, name in ANION_CLASSES:
        if symbol in elements:
            return name
    return "intermetallic"


def _with_keyword(caption: str, keyword: str | None) -> str:
    """A keyword caption with ``keyword`` first, unless it is ``None`` or already there."""
    if keyword is None or keyword.lower() in {k.lower() for k in caption.split(KEYWORD_SEPARATOR)}:
        return caption
    return f"{keyword}{KEYWORD_SEPARATOR}{caption}" if caption else keyword


def add_metadata_keywords(captions: Sequence[str], fields: Sequence[Mapping[str, Any]], *,
                          mineral: bool = False, chemistry: bool = False) -> list[str]:
    """Keyword captions with the mineral name and/or the chemical class in front.

    Parameters
    ----------
    captions
        Keyword captions (``"kw1, kw2, ..."``), one per entry.
    fields
        Each entry's metadata (:func:`~matminer_clasp.train.sources.entry_fields`): ``mineral``
        and ``formula`` are read.
    mineral, chemistry
        Add :func:`mineral_keyword` / :func:`chemical_class`. With both, the caption reads
        ``"<mineral>, <class>, <title keywords>"``; a keyword the caption already holds
        (case-insensitive) is not added again, and an entry without one is left as it is.
    """
    out = list(captions)
    if chemistry:
        out = [_with_keyword(c, chemical_class(f.get("formula"))) for c, f in zip(out, fields)]
    if mineral:
        out = [_with_keyword(c, mineral_keyword(f.get("mineral"))) for c, f in zip(out, fields)]
    return out
