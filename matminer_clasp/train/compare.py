"""Paired bootstrap comparison of two models evaluated on the same structures.

``matminer-clasp evaluate`` writes, beside ``report.json``, the per-item numbers behind it
(``items.npz``: each structure's id, title group, keyword scores and labels, and the retrieval
ranks). :func:`paired_bootstrap` resamples the items once and scores **both** models on every
resample, so the interval is that of the difference itself (the models' errors on the same
structures are correlated; two separate intervals would overstate the uncertainty).

Resampling unit (``resample``):

* ``"title"`` (default): distinct titles (papers) are drawn with replacement and each brings all
  of its structures (a cluster bootstrap: structures of one paper are not independent).
* ``"structure"``: structures are drawn with replacement (the unit of the per-model intervals in
  ``report.json``).

On a resample, a structure's weight is the number of times it (its title) was drawn. The keyword
metrics are the weighted ROC-AUC / AP per concept of :func:`~.metrics.ranking_metrics`, averaged
over the concepts; structure->text recall@k is the weighted mean of the structures' hits;
text->structure recall@k weights each caption query by the mean weight of its structures, so
structures and their titles are resampled jointly. Ranks are those of the full split (the
candidate pool is not re-ranked on a resample). At unit weights every number equals the report's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from matminer_clasp.train.metrics import ranking_metrics

__all__ = ["ITEMS_FILE", "save_items", "load_items", "paired_bootstrap", "compare_reports",
           "format_comparison"]

#: Per-item arrays of an evaluation, next to ``report.json``.
ITEMS_FILE = "items.npz"

_KEYS = ("ids", "group", "concepts", "scores", "labels", "caption_of", "s2t_rank", "queries",
         "t2s_rank")


def save_items(items: Mapping[str, np.ndarray], folder: str | Path) -> Path:
    """Write the per-item arrays of an evaluation to ``folder/items.npz`` (no pickle)."""
    path = Path(folder) / ITEMS_FILE
    arrays = {k: np.asarray(items[k]) for k in _KEYS if k in items}
    for key in ("ids", "concepts"):  # plain unicode arrays, readable without pickle
        arrays[key] = np.asarray([str(x) for x in arrays[key]], dtype=str)
    np.savez_compressed(path, **arrays)
    return path


def load_items(folder: str | Path) -> dict[str, np.ndarray]:
    """Read ``items.npz`` from an evaluation folder (or the file itself)."""
    path = Path(folder)
    path = path / ITEMS_FILE if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: rerun `matminer-clasp evaluate` (it writes "
                                f"{ITEMS_FILE} beside report.json)")
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def _check_same_items(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> None:
    if a["ids"].shape != b["ids"].shape or not np.array_equal(a["ids"], b["ids"]):
        raise ValueError("the two evaluations are not of the same structures in the same order "
                         "(evaluate both with the same --config and --split)")
    if not np.array_equal(a["concepts"], b["concepts"]):
        raise ValueError("the two evaluations used different keyword concepts: "
                         f"{a['concepts'].tolist()} vs {b['concepts'].tolist()}")
    for key in ("labels", "group", "caption_of", "queries"):
        if not np.array_equal(a[key], b[key]):
            raise ValueError(f"the two evaluations differ in {key!r} (different titles or "
                             "captions for the same structures, or different --labels rules)")


def _weights(items: Mapping[str, np.ndarray], n_boot: int, seed: int, resample: str
             ) -> np.ndarray:
    """``(1 + n_boot, n)`` structure weights: unit weights first, then the resamples."""
    rng = np.random.default_rng(seed)
    group = np.asarray(items["group"], dtype=np.int64)
    n = len(group)
    if resample == "structure":
        units, unit_of = n, np.arange(n)
    elif resample == "title":
        units, unit_of = int(group.max()) + 1 if n else 0, group
    else:
        raise ValueError(f"resample={resample!r}; expected 'title' or 'structure'")
    counts = np.stack([np.bincount(rng.integers(0, units, units), minlength=units)
                       for _ in range(n_boot)]) if n_boot else np.zeros((0, units))
    return np.vstack([np.ones((1, n)), counts[:, unit_of]])


def _metrics(items: Mapping[str, np.ndarray], w: np.ndarray, ks: tuple[int, ...]
             ) -> dict[str, np.ndarray]:
    """Every compared metric of one model under each row of weights ``w``."""
    scores, labels = np.asarray(items["scores"], float), np.asarray(items["labels"], bool)
    auc = np.full((len(w), scores.shape[1]), np.nan)
    ap = np.full_like(auc, np.nan)
    for j in range(scores.shape[1]):
        auc[:, j], ap[:, j] = ranking_metrics(scores[:, j], labels[:, j], w)
    with np.errstate(invalid="ignore"):
        out = {"roc_auc": np.nanmean(auc, axis=1) if scores.shape[1] else auc[:, 0],
               "ap": np.nanmean(ap, axis=1) if scores.shape[1] else ap[:, 0]}
    cap, queries = np.asarray(items["caption_of"]), np.asarray(items["queries"])
    sums = np.zeros((len(w), int(cap.max()) + 1 if len(cap) else 0))
    for r in range(len(w)):
        sums[r] = np.bincount(cap, weights=w[r], minlength=sums.shape[1])
    query_w = sums[:, queries] / np.bincount(cap, minlength=sums.shape[1])[queries]
    for k in ks:
        s2t_hit, t2s_hit = items["s2t_rank"] < k, items["t2s_rank"] < k
        out[f"text_to_structure_recall@{k}"] = (query_w @ t2s_hit) / query_w.sum(axis=1)
        out[f"structure_to_text_recall@{k}"] = (w @ s2t_hit) / w.sum(axis=1)
    return out


Items = Mapping[str, np.ndarray]


def _as_list(items: Items | Sequence[Items]) -> list[Items]:
    return [items] if isinstance(items, Mapping) else list(items)


def paired_bootstrap(
    items_a: Items | Sequence[Items],
    items_b: Items | Sequence[Items],
    n_boot: int = 1000,
    seed: int = 0,
    resample: str = "title",
    ks: tuple[int, ...] = (10,),
) -> dict[str, Any]:
    """Differences A - B of the mean keyword ROC-AUC / AP and recall@k, with paired intervals.

    Parameters
    ----------
    items_a, items_b
        Per-item arrays (:func:`load_items`) of two evaluations of the same structures, or a
        list of them per side (runs of one recipe with different training seeds): a side's
        value is then the mean of its runs' values on every resample, so a recipe is compared
        over its seeds.
    n_boot, seed
        Resamples and their seed.
    resample
        ``"title"`` (papers with all their structures) or ``"structure"``.
    ks
        Recall cut-offs.

    Returns
    -------
    dict
        ``{"metrics": {name: {"a", "b", "diff", "diff_ci95", "p_a_not_better"}}, "settings"}``:
        point values at unit weights, the 95 % percentile interval of the resampled
        differences, and the share of resamples where A does not beat B.
    """
    runs_a, runs_b = _as_list(items_a), _as_list(items_b)
    if not runs_a or not runs_b:
        raise ValueError("paired_bootstrap needs at least one evaluation on each side")
    first = runs_a[0]
    for other in [*runs_a[1:], *runs_b]:
        _check_same_items(first, other)
    w = _weights(first, n_boot, seed, resample)
    ma, mb = ({name: np.mean([m[name] for m in side], axis=0)
               for name in side[0]}
              for side in ([_metrics(r, w, ks) for r in runs] for runs in (runs_a, runs_b)))
    metrics = {}
    for name in ma:
        diff = ma[name] - mb[name]
        boot = diff[1:][np.isfinite(diff[1:])]
        metrics[name] = {
            "a": float(ma[name][0]), "b": float(mb[name][0]), "diff": float(diff[0]),
            "diff_ci95": [float(np.percentile(boot, 2.5)), float(np.percentile(boot, 97.5))]
            if len(boot) else None,
            "p_a_not_better": float(np.mean(boot <= 0)) if len(boot) else None,
        }
    settings = {"bootstrap_resamples": int(n_boot), "seed": int(seed), "resample": resample,
                "n_runs_a": len(runs_a), "n_runs_b": len(runs_b),
                "n_structures": int(len(first["ids"])),
                "n_titles": int(len(np.unique(first["group"]))),
                "concepts": [str(c) for c in first["concepts"]],
                "interval": "paired percentile 95%", "keyword_level": "per structure"}
    return {"metrics": metrics, "settings": settings}


def _folders(spec: str | Path | Sequence[str | Path]) -> list[Path]:
    """One folder, a comma-separated list of folders, or a sequence of them."""
    if isinstance(spec, (str, Path)):
        return [Path(p) for p in str(spec).split(",") if p]
    return [Path(p) for p in spec]


def compare_reports(
    folder_a: str | Path | Sequence[str | Path], folder_b: str | Path | Sequence[str | Path],
    n_boot: int = 1000, seed: int = 0, resample: str = "title",
) -> dict[str, Any]:
    """:func:`paired_bootstrap` of ``matminer-clasp evaluate`` output folders.

    Each side is one folder or several (a comma-separated string or a list: runs of one recipe
    with different training seeds, averaged).
    """
    side_folders = {"a": _folders(folder_a), "b": _folders(folder_b)}
    out = paired_bootstrap([load_items(f) for f in side_folders["a"]],
                           [load_items(f) for f in side_folders["b"]], n_boot, seed, resample)
    for side, folders in side_folders.items():
        out[side] = ",".join(str(f) for f in folders)
        reports = [json.loads((f / "report.json").read_text()) for f in folders
                   if (f / "report.json").is_file()]
        if reports:
            out[f"{side}_model"] = ",".join(str(r.get("model")) for r in reports)
            out[f"{side}_split"] = reports[0].get("split")
            out[f"{side}_split_seed"] = reports[0].get("split_seed")
    return out


def format_comparison(result: Mapping[str, Any]) -> str:
    """A Markdown table of :func:`paired_bootstrap` / :func:`compare_reports` output."""
    st = result["settings"]
    runs = (f" (mean of {st.get('n_runs_a', 1)} vs {st.get('n_runs_b', 1)} runs)"
            if st.get("n_runs_a", 1) > 1 or st.get("n_runs_b", 1) > 1 else "")
    lines = [f"A = {result.get('a', 'A')}, B = {result.get('b', 'B')}{runs}: "
             f"{st['n_structures']} structures, {st['n_titles']} titles, "
             f"{len(st['concepts'])} concepts; paired bootstrap over {st['resample']}s "
             f"({st['bootstrap_resamples']} resamples)", "",
             "| metric | A | B | A - B [95 % paired CI] | P(A <= B) |", "|---|---|---|---|---|"]
    for name, row in result["metrics"].items():
        ci = row["diff_ci95"]
        ci_text = f" [{ci[0]:+.3f}, {ci[1]:+.3f}]" if ci else ""
        p = "n/a" if row["p_a_not_better"] is None else f"{row['p_a_not_better']:.3f}"
        lines.append(f"| {name} | {row['a']:.3f} | {row['b']:.3f} | {row['diff']:+.3f}{ci_text} "
                     f"| {p} |")
    return "\n".join(lines) + "\n"
