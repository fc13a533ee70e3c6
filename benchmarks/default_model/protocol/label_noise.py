"""How much of the `amcsd` keyword score is label noise? A mineral-group audit (issue 14).

The `amcsd` keyword labels come from titles: a structure is a positive for *garnet* when its
paper's title says *garnet*. A paper on almandine under a German title (*Granat*), or on the
thermal expansion of pyrope, reports a garnet whose title does not say so: the label calls it a
negative, and a model that recognises the structure is penalised for ranking it high.

For the five structure-defined families of the set (garnet, olivine, pyroxene, spinel,
perovskite) this script counts such structures with a second, independent label: membership of
the entry's mineral species (AMCSD's ``mineral`` field) in the family, from the lists below
(IMA group and supergroup members; names that contain the family word, such as *ulvospinel* or
*hydrogarnet*, count too). Synthetic compounds carry formulas instead of names, so the audit
finds a lower bound of the unlabelled members. It reads the ``items.npz`` of
``matminer-clasp evaluate --keywords amcsd --out`` and prints, per family and model:

- ``title``: structures labelled positive by their title; ``members``: family members by name;
  ``unlabelled``: members whose title does not say the family word;
- ``ap_title``: the model's AP against the title labels (as in every report);
- ``ap_either``: its AP when a member also counts as positive (title *or* species);
- ``top20_members``: of the 20 highest-scored title-negatives, how many are family members;
- ``oracle_ap``: the AP against title labels of a perfect species classifier (score 1 for every
  member, 0 otherwise, random order within): what recognising the family exactly would earn.

Usage::

    python benchmarks/default_model/protocol/label_noise.py \\
        runs/protocol/eval/default_recipe/amcsd [more eval folders] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import re
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score

#: Mineral species of each structure-defined family (lower case, no suffix, no accents).
FAMILIES: dict[str, frozenset[str]] = {
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


def species(name: str | None) -> str:
    """A mineral name reduced for lookup: lower case, no accents, no ``-(Y)`` suffix."""
    text = unicodedata.normalize("NFKD", name or "").encode("ascii", "ignore").decode()
    return re.sub(r"-?\([^)]*\)", "", text).strip().lower()


def is_member(family: str, name: str | None) -> bool:
    """Whether a mineral name belongs to ``family`` (listed, or the family word in its name)."""
    s = species(name)
    return bool(s) and (s in FAMILIES[family] or family in s)


def minerals_by_id() -> dict[str, str | None]:
    """AMCSD id (``amcsd-N``) -> mineral name, from the installed database."""
    from matminer_clasp.train.amcsd import read_amcsd_entries

    return {e["id"]: e.get("mineral") for e in read_amcsd_entries()}


def audit(folder: Path, minerals: dict[str, str | None], top: int = 20) -> dict[str, Any]:
    """The audit of one evaluation folder (its ``items.npz``), per family in its concepts."""
    items = np.load(folder / "items.npz", allow_pickle=False)
    ids = [str(i) for i in items["ids"]]
    concepts = [str(c) for c in items["concepts"]]
    rng = np.random.default_rng(0)
    out: dict[str, Any] = {}
    for family in FAMILIES:
        if family not in concepts:
            continue
        j = concepts.index(family)
        scores = items["scores"][:, j].astype(float)
        title = items["labels"][:, j].astype(bool)
        member = np.array([is_member(family, minerals.get(i)) for i in ids])
        either = title | member
        negatives = np.flatnonzero(~title)
        top_neg = negatives[np.argsort(-scores[negatives])[:top]]
        oracle = [average_precision_score(title, member + 1e-6 * rng.random(len(ids)))
                  for _ in range(200)]
        out[family] = {
            "title": int(title.sum()), "members": int(member.sum()),
            "unlabelled": int((member & ~title).sum()),
            "ap_title": float(average_precision_score(title, scores)),
            "ap_either": float(average_precision_score(either, scores)),
            f"top{top}_members": int(member[top_neg].sum()),
            "oracle_ap": float(np.mean(oracle)),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("folders", nargs="+", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    minerals = minerals_by_id()
    result = {str(f): audit(f, minerals) for f in args.folders}
    for folder, rows in result.items():
        print(folder)
        print("  family      title members unlabelled  ap_title ap_either top20_members oracle_ap")
        for family, r in rows.items():
            print(f"  {family:10s} {r['title']:6d} {r['members']:7d} {r['unlabelled']:10d} "
                  f"{r['ap_title']:9.3f} {r['ap_either']:9.3f} {r['top20_members']:13d} "
                  f"{r['oracle_ap']:9.3f}")
        mean = {k: np.mean([r[k] for r in rows.values()]) for k in
                ("ap_title", "ap_either", "oracle_ap")}
        print(f"  mean over the {len(rows)} families: ap_title {mean['ap_title']:.3f}, "
              f"ap_either {mean['ap_either']:.3f}, oracle_ap {mean['oracle_ap']:.3f}")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
