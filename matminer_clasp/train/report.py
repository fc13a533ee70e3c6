"""Writing an evaluation report: ``report.json`` (every number) and ``report.md`` (tables)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["write_report"]


def _fmt(value: Any, ci: Any = None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    text = f"{value:.3f}"
    return text + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def _jsonable(value: Any) -> Any:
    """``value`` with NaN / infinity as ``None`` and numpy scalars as Python numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    return value


def write_report(report: Mapping[str, Any], folder: str | Path) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` into ``folder``; return both paths.

    Parameters
    ----------
    report
        The dict of :func:`~matminer_clasp.train.evaluate.evaluate_model` (or
        ``evaluate_embeddings``).
    folder
        Created if missing.

    Returns
    -------
    (pathlib.Path, pathlib.Path)
        ``report.json`` (non-finite numbers as ``null``) and ``report.md`` (keyword tables per
        unit of analysis, then retrieval). The per-item arrays under ``"_items"``, if any, go
        to ``items.npz`` (:func:`~matminer_clasp.train.compare.save_items`), not to the JSON.
    """
    from matminer_clasp.train.compare import save_items

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    items = report.get("_items")
    report = {k: v for k, v in report.items() if k != "_items"}
    if items is not None:
        save_items(items, folder)

    json_path = folder / "report.json"
    json_path.write_text(json.dumps(_jsonable(report), indent=2) + "\n")
    lines = ["# CLaSP evaluation", "",
             f"{report.get('n_structures', '?')} structures, {report.get('n_titles', '?')} "
             "distinct titles. Intervals: 95% percentile bootstrap "
             f"({report.get('settings', {}).get('bootstrap_resamples', '?')} resamples).", ""]
    settings = report.get("settings", {})
    if "labels" in settings:
        lines += [f"Keyword positives: {settings['labels']}.", ""]
    if settings.get("templates"):
        templates = ", ".join(f"`{t}`" for t in settings["templates"])
        lines += [f"Keywords queried through the templates {templates}.", ""]
    for unit in ("per_structure", "per_title"):
        block = report.get(unit)
        if not block:
            continue
        lines += [f"## Zero-shot keywords, {unit.replace('_', ' ')}", "",
                  "| concept | positives | ROC-AUC | AP | random AP |", "|---|---|---|---|---|"]
        for name, row in block["concepts"].items():
            auc = _fmt(row["roc_auc"], row["roc_auc_ci95"])
            lines.append(f"| {name} | {row['n_positive']} | {auc} "
                         f"| {_fmt(row['ap'], row['ap_ci95'])} | {_fmt(row['prevalence'])} |")
        mean = block["mean"]
        lines += [f"| **mean ({mean['n_concepts']})** | | "
                  f"{_fmt(mean['roc_auc'], mean['roc_auc_ci95'])} | "
                  f"{_fmt(mean['ap'], mean['ap_ci95'])} | {_fmt(mean['random_ap'])} |", "",
                  "Random ROC-AUC is 0.5.", ""]
    if "retrieval" in report:
        lines += ["## Retrieval", "", "| direction | k | recall@k | random |", "|---|---|---|---|"]
        for direction, row in report["retrieval"].items():
            for key in row:
                if key.startswith("recall@"):
                    k = key.split("@")[1]
                    lines.append(f"| {direction.replace('_', ' ')} | {k} | {_fmt(row[key])} | "
                                 f"{_fmt(row[f'random@{k}'])} |")
        lines.append("")
    md_path = folder / "report.md"
    md_path.write_text("\n".join(lines))
    return json_path, md_path
