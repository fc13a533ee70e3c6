"""Collect the protocol's validation numbers into one small JSON (no per-resample arrays).

Usage (see run.sh)::

    python benchmarks/default_model/protocol/collect.py \\
        --out benchmarks/default_model/results/protocol_val.json \\
        --eval composition=runs/protocol/eval/composition_stage2 \\
        --compare cosface_vs_composition=runs/protocol/eval/compare_cosface_vs_composition

``--eval NAME=FOLDER`` reads ``FOLDER/<keyword set>/report.json`` for every keyword-set folder;
``--compare NAME=PREFIX`` reads ``PREFIX_<keyword set>.json`` (``matminer-clasp compare --out``;
keyword-set names hold no underscore, so ``PREFIX_templates_amcsd.json`` of a longer name is
not read as a keyword set).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def _mean(block: dict[str, Any]) -> dict[str, Any]:
    m = block["mean"]
    return {k: m.get(k) for k in ("n_concepts", "roc_auc", "roc_auc_ci95", "ap", "ap_ci95",
                                  "random_ap")}


def summarize(report: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of one ``report.json``."""
    out = {k: report.get(k) for k in ("model", "split", "split_seed", "n_structures", "n_titles",
                                      "keyword_set")}
    out["templates"] = report.get("settings", {}).get("templates")  # None: keywords as written
    out["per_structure"] = _mean(report["per_structure"])
    out["per_title"] = _mean(report["per_title"])
    out["concepts"] = {k: {"n_positive": v["n_positive"], "roc_auc": v["roc_auc"], "ap": v["ap"]}
                       for k, v in report["per_structure"]["concepts"].items()}
    out["positive_papers"] = {k: report["positive_papers"][k] for k in out["concepts"]}
    out["retrieval"] = {d: {k: v for k, v in row.items() if k.startswith(("recall", "random"))}
                        for d, row in report.get("retrieval", {}).items()}
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--eval", nargs="+", default=[], metavar="NAME=FOLDER")
    parser.add_argument("--compare", nargs="*", default=[], metavar="NAME=PREFIX")
    args = parser.parse_args(argv)
    result: dict[str, Any] = {"models": {}, "comparisons": {}}
    for item in args.eval:
        name, folder = item.split("=", 1)
        result["models"][name] = {
            sub.name: summarize(json.loads((sub / "report.json").read_text()))
            for sub in sorted(Path(folder).iterdir()) if (sub / "report.json").is_file()}
    for item in args.compare:
        name, prefix = item.split("=", 1)
        for path in sorted(Path(prefix).parent.glob(Path(prefix).name + "_*.json")):
            keywords = path.stem[len(Path(prefix).name) + 1:]
            if "_" in keywords:  # another comparison whose name extends this one
                continue
            data = json.loads(path.read_text())
            data["settings"].pop("concepts", None)
            result["comparisons"].setdefault(name, {})[keywords] = data
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
