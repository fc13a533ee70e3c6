"""Mineral species of the structure-defined families, for labels a structure can show.

A keyword label from a title (official protocol) calls a garnet a negative for *garnet* when its
paper's title names the species instead (*pyrope at high pressure*) or is German (*Granat*).
The model report's label audit found that most family members of AMCSD are of that kind.
:func:`species_positives` gives the second label set the report recommends beside the title
labels: a structure is also a positive for a family when its mineral species (AMCSD's
``mineral`` field) belongs to it.

Follow a label: ``pairs.meta["mineral"]`` -> :func:`species_key` (lower case, no accents, no
``-(Y)`` suffix) -> membership of :data:`FAMILY_SPECIES` (IMA group and supergroup members), or
the family word inside the name (*ulvospinel*, *hydrogarnet*). AMCSD names many synthetic
phases by an element or compound (*Iron*, *Cobalt*) instead of a species, so these labels still
miss some members: they are a lower bound.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence

import numpy as np

__all__ = ["FAMILY_SPECIES", "species_key", "is_family_member", "species_positives"]

#: Mineral species of each structure-defined family (lower case, no suffix, no accents).
FAMILY_SPECIES: dict[str, frozenset[str]] = {
    "garnet": frozenset({
        "almandine", "pyrope", "spessartine", "grossular", "andradite", "uvarovite", "majorite",
        "knorringite", "calderite", "goldmanite", "kimzeyite", "schorlomite", "morimotoite",
        "katoite", "hibschite", "hydrogrossular", "henritermierite", "menzerite", "momoiite",
        "eringaite", "skiagite", "khoharite", "blythite", "kerimasite", "toturite",
        "irinarassite", "hutcheonite", "bitikleite", "usturite", "dzhuluite", "elbrusite",
        "yafsoanite", "cryolithionite", "berzeliite", "manganberzeliite", "palenzonaite",
        "schaferite", "wadalite", "holtstamite"}),
    "olivine": frozenset({
        "forsterite", "fayalite", "tephroite", "monticellite", "kirschsteinite",
        "glaucochroite", "liebenbergite", "laihunite"}),
    "pyroxene": frozenset({
        "enstatite", "ferrosilite", "clinoenstatite", "clinoferrosilite", "protoenstatite",
        "orthoenstatite", "pigeonite", "diopside", "hedenbergite", "augite", "aegirine-augite",
        "johannsenite", "petedunnite", "esseneite", "davisite", "grossmanite", "kushiroite",
        "burnettite", "jadeite", "aegirine", "omphacite", "kosmochlor", "jervisite",
        "namansilite", "natalyite", "spodumene", "kanoite", "donpeacorite", "hypersthene",
        "bronzite", "fassaite", "ferroaugite", "titanaugite"}),
    "spinel": frozenset({
        "hercynite", "gahnite", "galaxite", "magnesiochromite", "chromite", "cochromite",
        "nichromite", "manganochromite", "zincochromite", "magnetite", "magnesioferrite",
        "franklinite", "jacobsite", "trevorite", "maghemite", "qandilite", "coulsonite",
        "magnesiocoulsonite", "vuorelainenite", "ringwoodite", "ahrensite", "hausmannite",
        "hetaerolite", "brunogeierite", "titanomagnetite", "linnaeite", "carrollite", "greigite",
        "violarite", "polydymite", "siegenite", "daubreelite", "indite", "kalininite",
        "cuproiridsite", "cuprorhodsite", "florensovite", "cadmoindite", "fletcherite",
        "bornhardtite", "trustedtite", "tyrrellite"}),
    "perovskite": frozenset({
        "tausonite", "loparite", "lakargiite", "megawite", "bridgmanite", "macedonite",
        "latrappite", "lueshite", "isolueshite", "neighborite", "parascandolaite"}),
}


def species_key(name: object) -> str:
    """A mineral name reduced for lookup: lower case, no accents, no ``-(Y)`` suffix.

    Missing names (``None``, NaN, empty) give ``""``.
    """
    if not isinstance(name, str):
        return ""
    text = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return re.sub(r"-?\([^)]*\)", "", text).strip().lower()


def is_family_member(family: str, name: object) -> bool:
    """Whether a mineral name belongs to ``family`` (listed, or the family word in its name).

    Raises
    ------
    KeyError
        When ``family`` is not one of :data:`FAMILY_SPECIES`.
    """
    return _key_in_family(family, species_key(name))


def _key_in_family(family: str, key: str) -> bool:
    return bool(key) and (key in FAMILY_SPECIES[family] or family in key)


def species_positives(
    minerals: Sequence[object], concepts: Iterable[str]
) -> dict[str, np.ndarray]:
    """Per family among ``concepts``: which structures' mineral species belong to it.

    Parameters
    ----------
    minerals
        ``(n,)`` mineral names (AMCSD's ``mineral`` field; ``None`` where there is none).
    concepts
        Concept names; those that are not families are left out of the result.

    Returns
    -------
    dict
        ``family -> (n,)`` boolean array.
    """
    keys = [species_key(m) for m in minerals]
    return {family: np.array([_key_in_family(family, k) for k in keys], dtype=bool)
            for family in concepts if family in FAMILY_SPECIES}
