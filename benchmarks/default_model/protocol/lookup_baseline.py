"""A model-free baseline for the `amcsd` keywords: look the structure up in the training titles.

How far can knowing *what* a structure is take the title-label AP? This baseline knows each
structure's mineral name (AMCSD's ``mineral`` field: the species, or an element or compound name
for a synthetic phase) and its chemical system (the elements of its formula), and nothing else.
Its score for a keyword is the share of training structures with the same name whose titles
contain the keyword, backing off to the same chemical system when the name is not among the
training structures, then to all of them; each share is smoothed toward its back-off
(``(hits + m p_backoff) / (n + m)``, ``m = 2``). It is what memorising the training titles of
each species would earn; a model that beats it reads more from a structure than its name.

The labels, concepts and splits are those of ``matminer-clasp evaluate --keywords amcsd``
(title labels, at least 3 positive papers). The script reads the model's evaluation folders
(``report.json`` per split) to print the model's AP beside the baseline's.

Usage::

    python benchmarks/default_model/protocol/lookup_baseline.py \\
        --eval val=runs/protocol/eval/default_recipe/amcsd \\
               test=runs/protocol/eval_test/default_recipe/amcsd \\
        --out benchmarks/default_model/results/protocol_lookup_baseline.json
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

CONFIG = "benchmarks/default_model/protocol/split_s2026.yaml"
SMOOTHING = 2.0


def chemical_system(formula: object) -> str:
    """The sorted element symbols of a formula string (``"Al-O-Si"``), ``""`` when none."""
    if not isinstance(formula, str):
        return ""
    return "-".join(sorted(set(re.findall(r"[A-Z][a-z]?", formula))))


def lookup_scores(train_keys: list[tuple[str, str]], train_positive: np.ndarray,
                  keys: list[tuple[str, str]]) -> np.ndarray:
    """Smoothed share of positives among training structures of the same species / system.

    ``*_keys`` are ``(species, chemical system)`` pairs (``""`` where unknown).
    """
    prior = float(train_positive.mean())
    tables = []
    for level in range(2):
        n, hits = Counter(), Counter()
        for key, positive in zip(train_keys, train_positive):
            if key[level]:
                n[key[level]] += 1
                hits[key[level]] += int(positive)
        tables.append((n, hits))
    scores = np.empty(len(keys))
    for i, key in enumerate(keys):
        p = prior
        for level in (1, 0):  # chemical system backs off to the prior, species to the system
            n, hits = tables[level]
            if key[level] and n[key[level]]:
                p = (hits[key[level]] + SMOOTHING * p) / (n[key[level]] + SMOOTHING)
        scores[i] = p
    return scores


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from matminer_clasp.model.clasp import ClaspModel
    from matminer_clasp.train.config import TrainConfig
    from matminer_clasp.train.data import load_pairs
    from matminer_clasp.train.keywords import KEYWORD_PRESETS, keyword_labels
    from matminer_clasp.train.metrics import ranking_metrics
    from matminer_clasp.train.mineral_families import species_key

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--eval", nargs="+", required=True, metavar="SPLIT=FOLDER",
                        help="the model's `evaluate --keywords amcsd` folder of each split")
    parser.add_argument("--model", default="runs/protocol/default_recipe",
                        help="a model trained on the seed-2026 split (for its graph settings)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    config = ClaspModel.from_pretrained(args.model).config
    data = TrainConfig.from_file(CONFIG).data

    def side(split: str) -> tuple[list[str], list[tuple[str, str]]]:
        meta = load_pairs(data, config, split=split, show_progress_bar=False).meta
        keys = [(species_key(m), chemical_system(f)) for m, f in zip(meta["mineral"],
                                                                     meta["formula"])]
        return [str(t) for t in meta["title"]], keys

    train_titles, train_keys = side("train")
    keywords = KEYWORD_PRESETS["amcsd"]
    train_labels = keyword_labels(train_titles, keywords)
    result: dict[str, Any] = {"rule": __doc__.split("\n\n")[1].replace("\n", " "),
                              "smoothing": SMOOTHING, "splits": {}}
    for item in args.eval:
        split, folder = item.split("=", 1)
        report = json.loads((Path(folder) / "report.json").read_text())
        concepts = report["per_structure"]["concepts"]
        titles, keys = side(split)
        labels = keyword_labels(titles, keywords)
        rows = {}
        for concept, model_row in concepts.items():
            scores = lookup_scores(train_keys, train_labels[concept], keys)
            roc, ap = (float(np.ravel(v)[0]) for v in ranking_metrics(scores, labels[concept]))
            rows[concept] = {"lookup_roc_auc": roc, "lookup_ap": ap,
                             "model_roc_auc": model_row["roc_auc"], "model_ap": model_row["ap"]}
        mean = {k: float(np.mean([r[k] for r in rows.values()])) for k in next(iter(rows.values()))}
        result["splits"][split] = {"model": report.get("model"), "concepts": rows, "mean": mean,
                                   "with_mineral_name": float(np.mean([bool(k[0]) for k in keys]))}
        share = result["splits"][split]["with_mineral_name"]
        print(f"{split}: {len(titles)} structures, {100 * share:.0f} % with a mineral name")
        print("  concept        lookup ROC-AUC / AP    model ROC-AUC / AP")
        for concept, r in [*rows.items(), ("mean", mean)]:
            print(f"  {concept:13s} {r['lookup_roc_auc']:10.3f} / {r['lookup_ap']:.3f} "
                  f"{r['model_roc_auc']:12.3f} / {r['model_ap']:.3f}")
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
