"""Evaluation: the paper's zero-shot keyword task and caption retrieval, with reports.

Zero-shot keywords (official ``eval_scripts/eval_zero_shot_roc.py``, fact sheet 7.1): a structure
is a positive for a concept when its paper title mentions one of the concept's variations; its
score is the highest cosine between the structure embedding and the embeddings of the bare
variation strings. ROC-AUC and average precision are reported per concept and as their mean,
with percentile bootstrap intervals (structures resampled with replacement, the same resamples
for every concept so that the interval of the mean is valid).

Two units of analysis are reported:

* ``per_structure``: every structure counts once (the official protocol).
* ``per_title``: structures sharing a title (one paper often reports several structures) are
  merged into one item whose embedding is the renormalised **mean** of their unit embeddings;
  this stops prolific papers from dominating the metric.

Retrieval: text->structure recall@k ranks all evaluated structures for every distinct caption;
a hit is *any* structure with that caption in the top k. Structure->text recall@k ranks the
distinct captions for every structure. Random baselines are reported beside every number:
ROC-AUC 0.5, AP = prevalence, structure->text recall@k = k / n_distinct, text->structure
recall@k = mean over captions of ``1 - C(n - r, k) / C(n, k)`` (``r`` structures share it).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "DEFAULT_KEYWORDS",
    "AMCSD_KEYWORDS",
    "AMCSD_EXTENDED_KEYWORDS",
    "STRUCTURE_FAMILIES",
    "KEYWORD_PRESETS",
    "PAPER_CONCEPTS",
    "normalize_text",
    "keyword_pattern",
    "keyword_labels",
    "keyword_counts",
    "ranking_metrics",
    "retrieval_recall",
    "evaluate_embeddings",
    "evaluate_model",
    "write_report",
    "add_evaluate_arguments",
    "evaluate_cli",
]

#: The paper's six concepts and their variations (official eval script, fact sheet 7.1).
PAPER_CONCEPTS: dict[str, tuple[str, ...]] = {
    "ferromagnetic": ("ferromagnetic", "ferromagnetism"),
    "ferroelectric": ("ferroelectric", "ferroelectricity"),
    "semiconductor": ("semiconductor", "semiconductive", "semiconductivity"),
    "electroluminescence": ("electroluminescence", "electroluminescent"),
    "thermoelectric": ("thermoelectric", "thermoelectricity"),
    "superconductor": ("superconductor", "superconductive", "superconductivity"),
}

#: Paper concepts plus mineral and chemistry keywords for mineral corpora such as AMCSD. The
#: final list (concepts with >= 50 positive titles) is chosen with :func:`keyword_counts`.
DEFAULT_KEYWORDS: dict[str, tuple[str, ...]] = {
    **PAPER_CONCEPTS,
    "magnetic": ("magnetic", "magnetism"),
    "superconduct": ("superconduct",),
    "high pressure": ("high pressure",),
    "high temperature": ("high temperature",),
    "spinel": ("spinel",),
    "perovskite": ("perovskite",),
    "garnet": ("garnet",),
    "olivine": ("olivine",),
    "pyroxene": ("pyroxene", "clinopyroxene", "orthopyroxene"),
    "amphibole": ("amphibole",),
    "feldspar": ("feldspar",),
    "zeolite": ("zeolite",),
    "mica": ("mica",),
    "silicate": ("silicate",),
    "sulfide": ("sulfide", "sulphide"),
    "carbonate": ("carbonate",),
    "phosphate": ("phosphate",),
    "sulfate": ("sulfate", "sulphate"),
    "borate": ("borate",),
    "arsenate": ("arsenate",),
    "hydroxide": ("hydroxide",),
    "oxide": ("oxide",),
    "hydrous": ("hydrous", "hydrated"),
    "new mineral": ("new mineral",),
    "phase transition": ("phase transition",),
}

#: The keyword set of the bundled model's report and targets: ten mineral-family, chemistry and
#: property words with at least 50 positive structures among the usable AMCSD pairs. Five are
#: structure-defined families (:data:`STRUCTURE_FAMILIES`); the other five are chemistry or
#: topic words. See docs/model-report.md for their counts.
AMCSD_KEYWORDS: dict[str, tuple[str, ...]] = {
    k: DEFAULT_KEYWORDS[k]
    for k in ("spinel", "perovskite", "garnet", "olivine", "pyroxene", "silicate", "sulfide",
              "carbonate", "superconduct", "magnetic")
}

#: Families defined by a crystal structure rather than by a chemistry.
STRUCTURE_FAMILIES: tuple[str, ...] = ("garnet", "pyroxene", "perovskite", "spinel", "olivine")

#: :data:`AMCSD_KEYWORDS` plus every other concept with at least 50 positive AMCSD structures,
#: including process and topic words that a structure can hardly show ("high pressure",
#: "new mineral"; "mica" and "hydrous" left out: as substrings they match "chemical" and
#: "anhydrous").
AMCSD_EXTENDED_KEYWORDS: dict[str, tuple[str, ...]] = {
    **AMCSD_KEYWORDS,
    **{k: DEFAULT_KEYWORDS[k]
       for k in ("phosphate", "oxide", "high pressure", "high temperature", "phase transition",
                 "new mineral")},
}

#: Named keyword sets for ``matminer-clasp evaluate --keywords NAME``.
KEYWORD_PRESETS: dict[str, dict[str, tuple[str, ...]]] = {
    "amcsd": AMCSD_KEYWORDS,
    "amcsd-extended": AMCSD_EXTENDED_KEYWORDS,
    "paper": PAPER_CONCEPTS,
    "all": DEFAULT_KEYWORDS,
}

_DASHES = str.maketrans({c: "-" for c in "\u2010\u2011\u2012\u2013\u2014\u2212"})


def normalize_text(text: str) -> str:
    """Lower-case, map Unicode dashes to ``-``, then delete hyphens and collapse whitespace."""
    text = str(text).translate(_DASHES).lower().replace("-", "")
    return re.sub(r"\s+", " ", text).strip()


def keyword_pattern(keyword: str) -> re.Pattern[str]:
    """Compile the matching rule of one keyword (applied to :func:`normalize_text` output).

    Rules: case-insensitive substring match (as in the official script, so ``"magnetic"`` is
    found in ``"ferromagnetic"`` and ``"spinel"`` in ``"spinels"``); a space or hyphen in the
    keyword matches a space, a hyphen or nothing (``"high pressure"`` finds ``"high-pressure"``
    and ``"highpressure"``); hyphens inside title words are ignored (``"thermo-electric"``
    contains ``"thermoelectric"``); a plural keyword also finds its singular (``"spinels"``,
    ``"batteries"`` find ``"spinel"``, ``"battery"``) and a keyword ending in ``y`` finds the
    ``-ies`` plural.
    """
    words = [w for w in re.split(r"[\s\-]+", keyword.translate(_DASHES).lower()) if w]
    if not words:
        raise ValueError(f"empty keyword {keyword!r}")
    last = words[-1]
    if last.endswith("ies") and len(last) > 4:
        tail = re.escape(last[:-3]) + "(?:y|ies)"
    elif last.endswith("y") and len(last) > 2:
        tail = re.escape(last[:-1]) + "(?:y|ies)"
    elif last.endswith("s") and not last.endswith("ss") and len(last) > 3:
        tail = re.escape(last[:-1])
    else:
        tail = re.escape(last)
    return re.compile(" ?".join([*map(re.escape, words[:-1]), tail]))


def _as_keywords(
    keywords: Mapping[str, Sequence[str]] | Sequence[str] | None,
) -> dict[str, tuple[str, ...]]:
    if keywords is None:
        return dict(DEFAULT_KEYWORDS)
    if isinstance(keywords, Mapping):
        return {str(k): (v,) if isinstance(v, str) else tuple(v) for k, v in keywords.items()}
    return {str(k): (str(k),) for k in keywords}


def keyword_labels(
    texts: Sequence[str], keywords: Mapping[str, Sequence[str]] | Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """Boolean positives per concept: the text matches any of the concept's variations."""
    normalized = [normalize_text(t) for t in texts]
    out = {}
    for concept, variations in _as_keywords(keywords).items():
        patterns = [keyword_pattern(v) for v in variations]
        out[concept] = np.array([any(p.search(t) for p in patterns) for t in normalized], bool)
    return out


def keyword_counts(
    titles: Sequence[str], keywords: Mapping[str, Sequence[str]] | Sequence[str] | None = None
) -> pd.Series:
    """Number of titles matching each concept, largest first (to pick concepts with >= 50)."""
    labels = keyword_labels(titles, keywords)
    return pd.Series({k: int(v.sum()) for k, v in labels.items()}).sort_values(ascending=False)


# ---------------------------------------------------------------------------- metrics
def ranking_metrics(
    scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """ROC-AUC and average precision, optionally for many weightings of the items at once.

    Parameters
    ----------
    scores, labels
        ``(n,)`` scores (higher = more positive) and boolean labels.
    weights
        ``(R, n)`` non-negative item weights (bootstrap counts), or ``None`` for unit weights.

    Returns
    -------
    (auc, ap)
        Arrays of shape ``(R,)`` (``(1,)`` without weights); NaN where a weighting has no
        positive or no negative. Ties are handled as scikit-learn does (AUC counts a tie as
        half; AP steps at each distinct score), so unit weights reproduce ``roc_auc_score``
        and ``average_precision_score``.
    """
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels, dtype=bool)
    weights = np.ones((1, len(scores))) if weights is None else np.atleast_2d(weights)
    order = np.argsort(-scores, kind="stable")
    s, y, w = scores[order], labels[order], weights[:, order].astype(np.float64)
    starts = np.r_[0, np.flatnonzero(np.diff(s) != 0) + 1]
    pos = np.add.reduceat(w * y, starts, axis=1)
    neg = np.add.reduceat(w * ~y, starts, axis=1)
    n_pos, n_neg = pos.sum(axis=1), neg.sum(axis=1)
    tp, fp = np.cumsum(pos, axis=1), np.cumsum(neg, axis=1)
    below = n_neg[:, None] - fp
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (pos * (below + 0.5 * neg)).sum(axis=1) / (n_pos * n_neg)
        precision = np.where(tp + fp > 0, tp / np.maximum(tp + fp, 1e-300), 0.0)
        ap = (pos * precision).sum(axis=1) / n_pos
    bad = (n_pos == 0) | (n_neg == 0)
    auc[bad] = np.nan
    ap[n_pos == 0] = np.nan
    return auc, ap


def _bootstrap_weights(n: int, n_resamples: int, rng: np.random.Generator, chunk: int):
    """Yield ``(r, n)`` count matrices of resamples with replacement, ``chunk`` at a time."""
    done = 0
    while done < n_resamples:
        r = min(chunk, n_resamples - done)
        idx = rng.integers(0, n, size=(r, n)) + (np.arange(r) * n)[:, None]
        yield np.bincount(idx.ravel(), minlength=r * n).reshape(r, n)
        done += r


def _keyword_block(
    scores: dict[str, np.ndarray], labels: dict[str, np.ndarray], n_boot: int, seed: int
) -> dict[str, Any]:
    """Point estimates and bootstrap intervals per concept and for the mean over concepts."""
    names = list(scores)
    n = len(next(iter(scores.values()))) if names else 0
    point = {k: ranking_metrics(scores[k], labels[k]) for k in names}
    boot_auc = np.full((n_boot, len(names)), np.nan)
    boot_ap = np.full((n_boot, len(names)), np.nan)
    if n_boot and n:
        rng = np.random.default_rng(seed)
        row = 0
        for w in _bootstrap_weights(n, n_boot, rng, chunk=max(1, min(200, 2_000_000 // n))):
            for j, k in enumerate(names):
                auc, ap = ranking_metrics(scores[k], labels[k], w)
                boot_auc[row : row + len(w), j], boot_ap[row : row + len(w), j] = auc, ap
            row += len(w)

    def interval(values: np.ndarray) -> list[float] | None:
        values = values[np.isfinite(values)]
        if not len(values):
            return None
        return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]

    per = {}
    for j, k in enumerate(names):
        auc, ap = float(point[k][0][0]), float(point[k][1][0])
        per[k] = {
            "n_positive": int(labels[k].sum()),
            "prevalence": float(labels[k].mean()) if n else math.nan,
            "roc_auc": auc, "roc_auc_ci95": interval(boot_auc[:, j]),
            "ap": ap, "ap_ci95": interval(boot_ap[:, j]),
        }
    usable = [j for j, k in enumerate(names) if np.isfinite(per[k]["roc_auc"])]
    with np.errstate(invalid="ignore"), _quiet():
        mean = {
            "n_concepts": len(usable),
            "roc_auc": float(np.mean([per[names[j]]["roc_auc"] for j in usable]))
            if usable else math.nan,
            "roc_auc_ci95": interval(np.nanmean(boot_auc[:, usable], axis=1)) if usable else None,
            "ap": float(np.mean([per[names[j]]["ap"] for j in usable])) if usable else math.nan,
            "ap_ci95": interval(np.nanmean(boot_ap[:, usable], axis=1)) if usable else None,
            "random_ap": float(np.mean([per[names[j]]["prevalence"] for j in usable]))
            if usable else math.nan,
        }
        if usable and n_boot:  # per-resample means: same seed and n give the same resamples,
            # so two models' lists pair up for a paired bootstrap of their difference
            mean["roc_auc_boot"] = np.round(np.nanmean(boot_auc[:, usable], axis=1), 6).tolist()
            mean["ap_boot"] = np.round(np.nanmean(boot_ap[:, usable], axis=1), 6).tolist()
    return {"concepts": per, "mean": mean}


class _quiet:
    def __enter__(self) -> None:
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc: object) -> None:
        self._ctx.__exit__(*exc)


def retrieval_recall(
    structure_emb: np.ndarray,
    caption_emb: np.ndarray,
    caption_of_structure: np.ndarray,
    ks: Sequence[int] = (1, 5, 10),
    chunk: int = 1024,
) -> dict[str, dict[str, float]]:
    """Text->structure and structure->text recall@k with duplicate captions.

    Parameters
    ----------
    structure_emb
        ``(n, d)`` unit vectors.
    caption_emb
        ``(m, d)`` unit vectors of the distinct captions.
    caption_of_structure
        ``(n,)`` index into ``caption_emb`` of each structure's caption.
    ks
        Cut-offs.
    chunk
        Queries per block of the similarity matrix (bounds memory).

    Returns
    -------
    dict
        ``{"text_to_structure": {"recall@k": ..., "random@k": ..., "n_queries": m'},
        "structure_to_text": {...}}`` where a text query counts as a hit when any structure
        with its caption is in the top ``k`` (ties broken in the query's favour), and ``m'`` is
        the number of distinct captions that occur.
    """
    s = np.asarray(structure_emb, dtype=np.float32)
    t = np.asarray(caption_emb, dtype=np.float32)
    cap = np.asarray(caption_of_structure, dtype=np.int64)
    n, m = len(s), len(t)
    ks = [int(k) for k in ks]
    s2t_rank = np.empty(n, dtype=np.int64)
    for start in range(0, n, chunk):
        sim = s[start : start + chunk] @ t.T
        true = sim[np.arange(len(sim)), cap[start : start + chunk]]
        s2t_rank[start : start + chunk] = (sim > true[:, None]).sum(axis=1)
    queries = np.unique(cap)
    t2s_rank = np.empty(len(queries), dtype=np.int64)
    for start in range(0, len(queries), chunk):
        q = queries[start : start + chunk]
        sim = t[q] @ s.T
        relevant = cap[None, :] == q[:, None]
        best = np.where(relevant, sim, -np.inf).max(axis=1)
        t2s_rank[start : start + chunk] = ((sim > best[:, None]) & ~relevant).sum(axis=1)
    sizes = np.bincount(cap, minlength=m)[queries]
    out = {"text_to_structure": {"n_queries": int(len(queries))},
           "structure_to_text": {"n_queries": int(n), "n_candidates": int(m)}}
    for k in ks:
        out["text_to_structure"][f"recall@{k}"] = float(np.mean(t2s_rank < k)) if n else math.nan
        out["text_to_structure"][f"random@{k}"] = float(np.mean([_p_any(n, r, k) for r in sizes]))
        out["structure_to_text"][f"recall@{k}"] = float(np.mean(s2t_rank < k)) if n else math.nan
        out["structure_to_text"][f"random@{k}"] = min(1.0, k / m) if m else math.nan
    return out


def _p_any(n: int, r: int, k: int) -> float:
    """Probability that a random ranking of ``n`` items puts one of ``r`` targets in the top k."""
    if k >= n - r + 1:
        return 1.0
    miss = 1.0
    for i in range(k):
        miss *= (n - r - i) / (n - i)
    return 1.0 - miss


# ---------------------------------------------------------------------------- whole reports
def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def evaluate_embeddings(
    structure_emb: np.ndarray,
    label_texts: Sequence[str],
    keyword_emb: Mapping[str, np.ndarray],
    keywords: Mapping[str, Sequence[str]],
    caption_emb: np.ndarray | None = None,
    caption_of_structure: np.ndarray | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    min_papers: int = 3,
) -> dict[str, Any]:
    """Compute the report from embeddings (the model-free core of :func:`evaluate_model`).

    Parameters
    ----------
    structure_emb
        ``(n, d)`` structure embeddings.
    label_texts
        ``(n,)`` titles that define the keyword positives (and the per-title groups).
    keyword_emb
        ``concept -> (n_variations, d)`` embeddings of each concept's variation strings.
    keywords
        ``concept -> variations`` (the strings matched against ``label_texts``).
    caption_emb, caption_of_structure
        Distinct caption embeddings and each structure's caption index, for retrieval.
    bootstrap, seed
        Number of bootstrap resamples (0: none) and their seed.
    min_papers
        Concepts with fewer positive distinct titles (papers) than this in the split are left
        out of the tables and means, and listed under ``skipped_concepts``.
    """
    titles = pd.Series([str(t) for t in label_texts])
    groups = titles.groupby(titles, sort=False).indices
    title_list = list(groups)
    t_labels = keyword_labels(title_list, keywords)
    n_papers = {k: int(v.sum()) for k, v in t_labels.items()}
    skipped = {k: n for k, n in n_papers.items() if n < min_papers}
    keywords = {k: v for k, v in keywords.items() if k not in skipped}
    t_labels = {k: v for k, v in t_labels.items() if k not in skipped}

    s = _unit(np.asarray(structure_emb, dtype=np.float64))
    labels = keyword_labels(label_texts, keywords)
    scores = {k: (s @ _unit(np.asarray(keyword_emb[k], float)).T).max(axis=1) for k in keywords}
    report: dict[str, Any] = {"n_structures": int(len(s))}
    report["per_structure"] = _keyword_block(scores, labels, bootstrap, seed)

    title_emb = _unit(np.stack([s[idx].mean(axis=0) for idx in groups.values()])) if len(s) else s
    t_scores = {k: (title_emb @ _unit(np.asarray(keyword_emb[k], float)).T).max(axis=1)
                for k in keywords}
    report["n_titles"] = len(title_list)
    report["per_title"] = _keyword_block(t_scores, t_labels, bootstrap, seed)
    if caption_emb is not None and caption_of_structure is not None and len(s):
        report["retrieval"] = retrieval_recall(s, caption_emb, caption_of_structure)
    report["keywords"] = {k: list(v) for k, v in keywords.items()}
    report["positive_papers"] = n_papers
    report["skipped_concepts"] = {
        k: f"{n} positive paper(s) in this split, fewer than min_papers={min_papers}"
        for k, n in skipped.items()
    }
    report["settings"] = {
        "bootstrap_resamples": int(bootstrap), "seed": int(seed), "interval": "percentile 95%",
        "score": "max cosine over the concept's variation strings",
        "title_aggregation": "renormalised mean of the unit embeddings of a title's structures",
        "random_baselines": "ROC-AUC 0.5; AP = prevalence; structure->text recall@k = "
        "k/n_distinct; text->structure recall@k = mean of 1-C(n-r,k)/C(n,k)",
    }
    return report


def evaluate_model(
    model: Any,
    pairs: Any,
    indices: Sequence[int] | np.ndarray,
    keywords: Mapping[str, Sequence[str]] | Sequence[str] | None = None,
    bootstrap: int = 1000,
    seed: int = 0,
    batch_size: int = 64,
    device: str | None = None,
    label_column: str = "title",
    min_papers: int = 3,
) -> dict[str, Any]:
    """Evaluate ``model`` on the pairs ``indices`` of ``pairs`` (zero-shot keywords + retrieval).

    Keyword positives come from ``pairs.meta[label_column]`` (the paper title, as in the official
    evaluation) when that column exists, else from the captions. Retrieval uses the captions.
    See :func:`evaluate_embeddings` for the returned dict.
    """
    idx = np.asarray(indices, dtype=np.int64)
    if len(idx) == 0:
        raise ValueError("evaluate_model got no structures (empty index list)")
    kw = _as_keywords(keywords)
    graphs = [pairs.graphs[i] for i in idx]
    structure_emb = model.encode_graphs(graphs, batch_size=batch_size, device=device)
    captions = [pairs.captions[i] for i in idx]
    meta = getattr(pairs, "meta", None)
    if meta is not None and label_column in getattr(meta, "columns", ()):
        label_texts = [str(meta[label_column].iloc[i]) for i in idx]
    else:
        label_texts = captions
    distinct, caption_of = np.unique(np.asarray(captions, dtype=object), return_inverse=True)
    caption_emb = model.encode_texts(list(distinct), batch_size=batch_size, device=device)
    keyword_emb = {k: model.encode_texts(list(v), device=device) for k, v in kw.items()}
    report = evaluate_embeddings(structure_emb, label_texts, keyword_emb, kw, caption_emb,
                                 caption_of, bootstrap, seed, min_papers=min_papers)
    report["label_source"] = label_column if label_texts is not captions else "caption"
    return report


def _fmt(value: Any, ci: Any = None) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    text = f"{value:.3f}"
    return text + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def write_report(report: Mapping[str, Any], folder: str | Path) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.md`` into ``folder``; return both paths."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)

    def clean(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, Mapping):
            return {str(k): clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        if isinstance(value, np.generic):
            return clean(value.item())
        return value

    json_path = folder / "report.json"
    json_path.write_text(json.dumps(clean(report), indent=2) + "\n")
    lines = ["# CLaSP evaluation", "",
             f"{report.get('n_structures', '?')} structures, {report.get('n_titles', '?')} "
             "distinct titles. Intervals: 95% percentile bootstrap "
             f"({report.get('settings', {}).get('bootstrap_resamples', '?')} resamples).", ""]
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


# ---------------------------------------------------------------------------- command line
def add_evaluate_arguments(parser: Any) -> Any:
    """Add the ``matminer-clasp evaluate`` arguments to an ``argparse`` parser."""
    parser.add_argument("model", nargs="?", default="default",
                        help="model folder, Hub id, or 'default' (the bundled model; default)")
    parser.add_argument("--config", default=None,
                        help="training config (YAML/JSON) naming the data and split (default: "
                             "the model folder's evaluation_config.json or train_config.json)")
    parser.add_argument("--split", default="test", choices=["train", "val", "test", "all"])
    parser.add_argument("--out", default="clasp-eval",
                        help="folder for report.json and report.md (default: clasp-eval)")
    parser.add_argument("--keywords", nargs="*", default=None,
                        help="concepts to test, or one preset name: amcsd (the bundled "
                             "model's report and targets), amcsd-extended (plus process and "
                             "topic words), paper (the paper's six), all (default)")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default=None)
    return parser


def evaluate_cli(args: Any) -> dict[str, Any]:
    """Run ``matminer-clasp evaluate MODEL --config CONFIG --split test --out DIR``.

    ``args`` is an ``argparse.Namespace`` with the fields of :func:`add_evaluate_arguments`.
    Returns the report (also written to ``args.out``).
    """
    from matminer_clasp.model.clasp import ClaspModel
    from matminer_clasp.train.config import TrainConfig
    from matminer_clasp.train.data import load_pairs, split_indices

    model = ClaspModel.from_pretrained(args.model, device=getattr(args, "device", None))
    config_path = args.config
    if config_path is None:  # the data and split the model was trained with
        from matminer_clasp.hub import resolve_model_folder

        folder = resolve_model_folder(args.model)
        # a model fine-tuned in a second stage ships the split of its first stage separately
        candidates = [folder / "evaluation_config.json", folder / "train_config.json"]
        config_path = next((c for c in candidates if c.is_file()), None)
        if config_path is None:
            raise ValueError(f"{args.model} has no train_config.json: pass --config")
    config = TrainConfig.from_file(config_path)
    pairs = load_pairs(config.data, model.config)
    if args.split == "all":
        indices = np.arange(len(pairs.ids))
    else:
        indices = split_indices(pairs, config.data)[args.split]
    keywords = None
    names = getattr(args, "keywords", None)
    if names and len(names) == 1 and names[0] in KEYWORD_PRESETS:
        keywords = KEYWORD_PRESETS[names[0]]
    elif names:
        keywords = {k: DEFAULT_KEYWORDS.get(k, (k,)) for k in names}
    report = evaluate_model(model, pairs, indices, keywords, bootstrap=args.bootstrap,
                            seed=args.seed, batch_size=getattr(args, "batch_size", 64),
                            device=getattr(args, "device", None))
    report["model"], report["split"] = str(args.model), args.split
    write_report(report, args.out)
    return report
