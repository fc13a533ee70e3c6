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
finds a lower bound of the unlabelled members. The lists live in
:mod:`matminer_clasp.train.mineral_families`, which ``matminer-clasp evaluate --labels
title-or-species`` uses too. It reads the ``items.npz`` of
``matminer-clasp evaluate --keywords amcsd --out`` and prints, per family and model:

- ``title``: structures labelled positive by their title; ``members``: family members by name;
  ``unlabelled``: members whose title does not say the family word;
- ``ap_title``: the model's AP against the title labels (as in every report);
- ``ap_either``: its AP when a member also counts as positive (title *or* species);
- ``top20_members``: of the 20 highest-scored title-negatives, how many are family members;
- ``oracle_ap``: the AP against title labels of a perfect species classifier (score 1 for every
  member, 0 otherwise, random order within): what recognising the family exactly would earn.

For the chemistry words of the set (silicate, sulfide, carbonate) it compares the model with a
one-line rule instead: the compound's class from its formula
(:func:`matminer_clasp.train.metadata_keywords.chemical_class`, the class that
``chemistry_keywords`` adds to stage-2 captions), as ROC-AUC and AP against the title labels
(``rule_roc_auc``, ``rule_ap``, next to the model's ``roc_auc`` and ``ap_title``).

Usage::

    python benchmarks/default_model/protocol/label_noise.py \\
        runs/protocol/eval/default_recipe/amcsd [more eval folders] [--out FILE.json]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from folder_audit import run_audit  # a sibling module: run this file as a script
from sklearn.metrics import average_precision_score

from matminer_clasp.train.mineral_families import FAMILY_SPECIES, species_positives

#: Chemistry words of the `amcsd` set and the class of :func:`chemical_class` that defines them.
CHEMISTRY = ("silicate", "sulfide", "carbonate")


def entries_by_id() -> dict[str, dict[str, Any]]:
    """AMCSD id (``amcsd-N``) -> its ``mineral`` and ``formula``, from the installed database."""
    from matminer_clasp.train.amcsd import read_amcsd_entries

    return {e["id"]: {"mineral": e.get("mineral"), "formula": e.get("formula")}
            for e in read_amcsd_entries()}


def _ap_in_random_order(labels: np.ndarray, hits: np.ndarray, rng: np.random.Generator,
                        draws: int = 200) -> float:
    """Mean AP of a yes/no score (``hits``), in random order within yes and within no."""
    return float(np.mean([average_precision_score(labels, hits + 1e-6 * rng.random(len(hits)))
                          for _ in range(draws)]))


def audit(folder: Path, entries: dict[str, dict[str, Any]], top: int = 20) -> dict[str, Any]:
    """The audit of one evaluation folder (its ``items.npz``), per concept it holds."""
    from sklearn.metrics import roc_auc_score

    from matminer_clasp.train.metadata_keywords import chemical_class

    items = np.load(folder / "items.npz", allow_pickle=False)
    ids = [str(i) for i in items["ids"]]
    concepts = [str(c) for c in items["concepts"]]
    rng = np.random.default_rng(0)
    columns = {c: (items["scores"][:, j].astype(float), items["labels"][:, j].astype(bool))
               for j, c in enumerate(concepts)}
    out: dict[str, Any] = {}
    families = [f for f in FAMILY_SPECIES if f in columns]
    members = species_positives([entries.get(i, {}).get("mineral") for i in ids], families)
    for family, member in members.items():
        scores, title = columns[family]
        either = title | member
        negatives = np.flatnonzero(~title)
        top_neg = negatives[np.argsort(-scores[negatives])[:top]]
        out[family] = {
            "title": int(title.sum()), "members": int(member.sum()),
            "unlabelled": int((member & ~title).sum()),
            "ap_title": float(average_precision_score(title, scores)),
            "ap_either": float(average_precision_score(either, scores)),
            f"top{top}_members": int(member[top_neg].sum()),
            "oracle_ap": _ap_in_random_order(title, member, rng),
        }
    for word in (w for w in CHEMISTRY if w in columns):
        scores, title = columns[word]
        rule = np.array([chemical_class(entries.get(i, {}).get("formula")) == word for i in ids])
        out[word] = {
            "title": int(title.sum()), "rule_positive": int(rule.sum()),
            "roc_auc": float(roc_auc_score(title, scores)),
            "ap_title": float(average_precision_score(title, scores)),
            "rule_roc_auc": float(roc_auc_score(title, rule)),  # ties: half credit
            "rule_ap": _ap_in_random_order(title, rule, rng),
        }
    return out


def show(rows: dict[str, Any]) -> None:
    """Print one folder's audit: the families, their mean, then the chemistry words."""
    families = {k: r for k, r in rows.items() if k in FAMILY_SPECIES}
    print("  family      title members unlabelled  ap_title ap_either top20_members oracle_ap")
    for family, r in families.items():
        print(f"  {family:10s} {r['title']:6d} {r['members']:7d} {r['unlabelled']:10d} "
              f"{r['ap_title']:9.3f} {r['ap_either']:9.3f} {r['top20_members']:13d} "
              f"{r['oracle_ap']:9.3f}")
    mean = {k: np.mean([r[k] for r in families.values()]) for k in
            ("ap_title", "ap_either", "oracle_ap")}
    print(f"  mean over the {len(families)} families: ap_title {mean['ap_title']:.3f}, "
          f"ap_either {mean['ap_either']:.3f}, oracle_ap {mean['oracle_ap']:.3f}")
    print("  chemistry   title rule_positive  roc_auc rule_roc_auc  ap_title  rule_ap")
    for word, r in rows.items():
        if word in CHEMISTRY:
            print(f"  {word:10s} {r['title']:6d} {r['rule_positive']:13d} "
                  f"{r['roc_auc']:8.3f} {r['rule_roc_auc']:12.3f} {r['ap_title']:9.3f} "
                  f"{r['rule_ap']:8.3f}")


def main() -> None:
    entries = entries_by_id()
    run_audit(__doc__.split("\n")[0], lambda folder: audit(folder, entries), show)


if __name__ == "__main__":
    main()
