"""The protocol's ablation table: every lever's paired gain on validation, and the rule's verdict.

Each row is one comparison that decided a lever (the arbiter named in the model report: where a
lever was run over several stage-2 draws or seeds, the comparison with each side averaged over
them). The numbers come from the collected results
(``benchmarks/default_model/results/protocol_val_*.json``, written by ``collect.py`` from
``matminer-clasp compare`` outputs), so the table is regenerated, not typed. The verdict applies
the decision rule fixed before the first lever: *kept* when the paired 95 % interval of at least
one headline metric (``amcsd`` AP, ``auto`` AP, text→structure recall@10) lies above zero and none
lies wholly below zero.

The test split of seed 2026 was evaluated once (``run_final_test.sh``); :func:`test_tables`
renders its models and comparisons from ``results/protocol_test.json`` the same way, for the
block between the ``test-table`` markers.

Usage::

    python benchmarks/default_model/protocol/ablation_table.py            # print the table
    python benchmarks/default_model/protocol/ablation_table.py --check docs/model-report.md
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parents[1] / "results"
START, END = "<!-- ablation-table:start -->", "<!-- ablation-table:end -->"
TEST_START, TEST_END = "<!-- test-table:start -->", "<!-- test-table:end -->"

#: (session, lever, against, results file, comparison name); in the order of the report.
ROWS = (
    (1, "CosFace s = 3, m = 0.5 instead of InfoNCE", "composition baseline, 2 seeds each",
     "protocol_val.json", "cosface2_vs_composition2"),
    (2, "hard negatives: chemical-system batches", "composition baseline, 2 seeds each",
     "protocol_val_chemsys.json", "chemsys2_vs_composition2"),
    (2, "a third graph member (seed 44)", "the recipe", "protocol_val_member_count.json",
     "recipe_3g2c_vs_default_recipe"),
    (2, "a third graph member (seed 45)", "the recipe", "protocol_val_member_count.json",
     "recipe_3g2c_s45_vs_default_recipe"),
    (3, "distillation from CHGNet, weight 0.5 (stage 1)", "graph member, 2 seeds each",
     "protocol_val_graph_levers.json", "distill_vs_plain_both"),
    (3, "distillation from CHGNet, weight 0.1 (stage 1)", "graph member, 2 seeds each",
     "protocol_val_graph_levers.json", "distill_w01_vs_plain_both"),
    (3, "hard negatives on the graph member (stage 1)", "graph member, 2 seeds each",
     "protocol_val_graph_levers.json", "chemsys_vs_plain_both"),
    (3, "two more composition members (2 + 4)", "the recipe", "protocol_val_comp_members.json",
     "recipe_2g4c_vs_default_recipe"),
    (4, "mineral names in the stage-2 captions", "the recipe, 2 stage-2 draws each",
     "protocol_val_mineral_reseed.json", "recipe_mineral_both_vs_default_recipe_both"),
    (4, "chemical class in the stage-2 captions", "the recipe",
     "protocol_val_chemistry_keywords.json", "recipe_chem_vs_default_recipe"),
    (4, "mineral names and chemical class", "the recipe", "protocol_val_chemistry_keywords.json",
     "recipe_minchem_vs_default_recipe"),
    (4, "mineral names, 3 + 4 members (seed 44)", "the recipe", "protocol_val_mineral_members.json",
     "recipe_mineral_3g4c_s44_vs_default_recipe"),
    (5, "weight interpolation, alpha = 0.5", "the recipe, 2 stage-2 draws each",
     "protocol_val_interpolation.json", "recipe_wise05_both_vs_default_recipe_both"),
    (5, "prompt templates at query time", "the recipe, 2 stage-2 draws each",
     "protocol_val_interpolation.json", "recipe_templates_both_vs_default_recipe_both"),
    (5, "keyword sampling 0.5", "the recipe, 3 stage-2 draws each",
     "protocol_val_keyword_sampling_r3.json", "recipe_ksamp_three_vs_default_recipe_three"),
    (5, "keyword sampling 0.5 + interpolation 0.5", "the recipe, 2 stage-2 draws each",
     "protocol_val_keyword_sampling.json", "recipe_ksamp_wise05_both_vs_default_recipe_both"),
    (6, "text encoder tuned (top 2 layers, 2e-5)", "composition member, 2 seeds each",
     "protocol_val_text_tuning.json", "comp_textft_both_vs_comp_member_both"),
    (6, "sigmoid loss (SigLIP), both stages", "composition member, 2 seeds each",
     "protocol_val_siglip.json", "comp_siglip_both_vs_comp_member_both"),
    (7, "a soup of the three stage-2 draws (weights averaged)", "the recipe, 3 stage-2 draws",
     "protocol_val_soup.json", "recipe_soup_vs_recipe_three"),
    (0, "reference: another training seed", "composition baseline, seed 42",
     "protocol_val.json", "s43_vs_s42"),
    (0, "reference: another stage-2 draw", "the recipe", "protocol_val_mineral_reseed.json",
     "recipe_r2_vs_default_recipe"),
)
#: The test split (seed 2026, evaluated once): (model, its three stage-2 draws) and
#: (comparison, against, name in protocol_test.json); each side averaged over its three draws.
TEST_MODELS = (
    ("the candidate: the recipe with keyword sampling 0.5",
     ("recipe_ksamp", "recipe_ksamp_r2", "recipe_ksamp_r3")),
    ("the candidate, keywords through the templates",
     ("recipe_ksamp_templates", "recipe_ksamp_r2_templates", "recipe_ksamp_r3_templates")),
    ("the recipe (the current default, trained on this split)",
     ("default_recipe", "recipe_r2", "recipe_r3")),
    ("the recipe, keywords through the templates",
     ("default_recipe_templates", "recipe_r2_templates", "recipe_r3_templates")),
    ("the candidate's composition members only", ("comp_ksamp", "comp_ksamp_r2", "comp_ksamp_r3")),
)
TEST_ROWS = (
    ("the candidate", "the recipe", "final_vs_recipe"),
    ("the candidate, templates", "the recipe, templates", "final_templates_vs_recipe_templates"),
    ("the candidate, templates", "the recipe", "final_templates_vs_recipe"),
    ("the recipe, templates", "the recipe", "recipe_templates_vs_recipe"),
    ("the candidate", "its composition members only", "final_vs_comp"),
)
#: Columns: (keyword set, metric, header).
COLUMNS = (("amcsd", "roc_auc", "`amcsd` ROC-AUC"), ("amcsd", "ap", "`amcsd` AP"),
           ("auto", "roc_auc", "`auto` ROC-AUC"), ("auto", "ap", "`auto` AP"),
           ("amcsd", "text_to_structure_recall@10", "text→structure R@10"),
           ("amcsd", "structure_to_text_recall@10", "structure→text R@10"))
HEADLINE = (("amcsd", "ap"), ("auto", "ap"), ("amcsd", "text_to_structure_recall@10"))


def _diff(comparison: dict[str, Any], keywords: str, metric: str) -> tuple[float, float, float]:
    block = comparison[keywords]["metrics"][metric]
    low, high = block["diff_ci95"]
    return block["diff"], low, high


def verdict(comparison: dict[str, Any]) -> str:
    """The decision rule on one comparison: ``"kept"`` or ``"not kept"``."""
    intervals = [_diff(comparison, k, m)[1:] for k, m in HEADLINE]
    gains = any(low > 0 for low, _ in intervals)
    losses = any(high < 0 for _, high in intervals)
    return "kept" if gains and not losses else "not kept"


def _markdown(head: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table's lines: header, rule, rows."""
    return [f"| {' | '.join(head)} |", "|" + "---|" * len(head),
            *(f"| {' | '.join(cells)} |" for cells in rows)]


def _comparison_cells(comparison: dict[str, Any]) -> list[str]:
    """The paired gain of every column, intervals that exclude zero in bold."""
    return [_cell(*_diff(comparison, k, m)) for k, m, _ in COLUMNS]


def _cell(value: float, low: float, high: float) -> str:
    text = f"{value:+.3f} [{low:+.3f}, {high:+.3f}]".replace("-", "−")
    return f"**{text}**" if low > 0 or high < 0 else text


def table(results: Path = RESULTS) -> str:
    """The ablation table as Markdown (intervals that exclude zero in bold)."""
    head = ["session", "lever", "against"] + [c[2] for c in COLUMNS] + ["rule"]
    cache: dict[str, dict[str, Any]] = {}
    rows = []
    for session, lever, against, name, key in ROWS:
        if name not in cache:
            cache[name] = json.loads((results / name).read_text())["comparisons"]
        comparison = cache[name][key]
        rule = verdict(comparison) if session else "(spread)"
        rows.append([str(session or "–"), lever, against, *_comparison_cells(comparison), rule])
    return "\n".join(_markdown(head, rows)) + "\n"


def _model_value(report: dict[str, Any], keywords: str, metric: str) -> float:
    if metric in ("roc_auc", "ap"):
        return report[keywords]["per_structure"][metric]
    direction = metric.rsplit("_recall", 1)[0]
    return report[keywords]["retrieval"][direction]["recall@10"]


def test_tables(results: Path = RESULTS) -> str:
    """The test split's models (mean of three draws, and their range) and paired comparisons."""
    data = json.loads((results / "protocol_test.json").read_text())
    models = []
    for label, draws in TEST_MODELS:
        cells = []
        for keywords, metric, _ in COLUMNS:
            values = [_model_value(data["models"][d], keywords, metric) for d in draws]
            mean = sum(values) / len(values)
            cells.append(f"{mean:.3f} ({min(values):.3f}-{max(values):.3f})")
        models.append([label, *cells])
    comparisons = [[a, b, *_comparison_cells(data["comparisons"][key]),
                    verdict(data["comparisons"][key])] for a, b, key in TEST_ROWS]
    lines = _markdown(["model (test split of seed 2026, 3 stage-2 draws)"]
                      + [c[2] for c in COLUMNS], models)
    lines += ["", *_markdown(["A", "B"] + [c[2] for c in COLUMNS] + ["rule"], comparisons)]
    return "\n".join(lines) + "\n"


def embedded(text: str, start: str = START, end: str = END) -> str:
    """The table between the start and end markers of a document."""
    if start not in text or end not in text:
        raise ValueError(f"the document has no {start} ... {end} block")
    return text.split(start, 1)[1].split(end, 1)[0].strip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--check", type=Path, nargs="*", default=[],
                        help="documents whose embedded tables must equal the regenerated ones")
    parser.add_argument("--test", action="store_true",
                        help="print the test split's tables instead of the ablation table")
    args = parser.parse_args(argv)
    blocks = {(START, END): table(), (TEST_START, TEST_END): test_tables()}
    if not args.check:
        print(blocks[(TEST_START, TEST_END)] if args.test else blocks[(START, END)], end="")
        return 0
    stale = [f"{doc} ({start})" for doc in args.check for (start, end), fresh in blocks.items()
             if embedded(doc.read_text(), start, end) != fresh]
    for doc in stale:
        print(f"{doc}: a table differs from the results; paste the output of "
              "ablation_table.py (--test for the test split) between its markers", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
