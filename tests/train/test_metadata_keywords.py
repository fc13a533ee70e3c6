"""Keywords from an entry's metadata: mineral names and chemical classes (stage-2 captions)."""

from __future__ import annotations

import pytest

from matminer_clasp.train.metadata_keywords import (
    add_metadata_keywords,
    chemical_class,
    mineral_keyword,
)


@pytest.mark.parametrize("name, keyword", [
    ("Almandine", "Almandine"), ("Tapiolite-(Fe)", "Tapiolite-(Fe)"), ("Moissanite 3C",
    "Moissanite 3C"), ("Tin", "Tin"), ("Xenon", "Xenon"), ("SPINEL", "SPINEL"),
    (r'Ulv\"ospinel', "Ulvöspinel"),
    # AMCSD's names of synthetic compounds are formulas: no keyword
    ("Co Cu O2", None), ("SrFe2As2", None), ("CaB2O4(H2O)6", None), ("Bi F O2 Pb", None),
    ("Tl[(UO2)(PO4)](H2O)3", None), ("Fe", None), ("", None), (None, None),
])
def test_mineral_keyword(name, keyword):
    assert mineral_keyword(name) == keyword


@pytest.mark.parametrize("formula, keyword", [
    # real AMCSD formulas (fayalite, calcite, danalite, adamite, telluroperite, MgCl2*H2O, spinel)
    ("(Mn.6 Fe1.4) Si O4", "silicate"), ("Ca C O3", "carbonate"),
    ("Be3 Si3 O12 Fe4 S", "silicate"), ("As Zn2 O5 H", "arsenate"),
    ("Pb1.5 Te.5 O2 Cl", "chloride"), ("Mg Cl2 O H2", "chloride"),
    ("Mg.714 Fe.287 (Al1.206 Cr.794) O4", "oxide"), ("Fe3 O4 H", "hydroxide"),
    ("(Zn.66 Fe.34) S", "sulfide"), ("Ga N", "nitride"), ("Ag Mg", "intermetallic"),
    ("Xe", "element"), ("D2", "element"), (None, None), ("", None), ("x", None),
])
def test_chemical_class(formula, keyword):
    assert chemical_class(formula) == keyword


def test_metadata_keywords_go_in_front_once():
    fields = [{"mineral": "Forsterite", "formula": "Mg2 Si O4"},
              {"mineral": "Co Cu O2", "formula": "Co Cu O2"},
              {"mineral": None, "formula": None}]
    captions = ["olivine, high pressure", "silicate, oxide", "thermal expansion"]
    assert add_metadata_keywords(captions, fields) == captions
    assert add_metadata_keywords(captions, fields, mineral=True, chemistry=True) == [
        "Forsterite, silicate, olivine, high pressure",
        "silicate, oxide",  # a formula is no name, and "oxide" is already there
        "thermal expansion",
    ]
    assert add_metadata_keywords([""], fields[:1], mineral=True) == ["Forsterite"]
