"""Two training-free, query-side scoring changes, screened on the validation split (issue 14).

Both use the model's own embeddings of the **training** pairs of the seed-2026 split as a memory;
neither retrains anything, and the structure side (featurization) is unchanged.

* **Query expansion through the training pairs**: a text query ``q`` is moved toward the
  structures whose training titles are nearest to it in the shared space,
  ``q' = unit((1 - beta) q + beta m)``, where ``m`` is the unit softmax-weighted mean (temperature
  ``tau``) of the centroid structure embeddings of the ``k`` nearest training titles. ``beta = 1``
  is a pure nearest-neighbour vote through the training corpus.
* **Hubness correction** (in the spirit of CSLS): every structure's score is lowered by
  ``lam`` times its mean cosine to its ``k`` nearest training titles, so that structures close to
  every text stop ranking high for every query.

Validation only: the grid is a screen, and the seed-2026 test split is not read. The output is the
mean ROC-AUC / AP per structure of the ``amcsd`` and ``auto`` keyword sets (keywords as written,
and through the ZeroShotClassifier templates) and text->structure recall@10, per setting.

Usage::

    python benchmarks/default_model/protocol/query_side.py runs/protocol/default_recipe \\
        --out benchmarks/default_model/results/protocol_val_query_side.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np

CONFIG = "benchmarks/default_model/protocol/split_s2026.yaml"
EXPANSION_GRID = [(beta, k, tau) for beta in (0.25, 0.5, 0.75, 1.0) for k in (8, 32, 128)
                  for tau in (0.02, 0.1)]
HUBNESS_GRID = [(k, lam) for k in (1, 10, 50, 200, 3066) for lam in (0.5, 1.0)]


def unit(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length."""
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def expand(queries: np.ndarray, title_emb: np.ndarray, centroids: np.ndarray, beta: float,
           k: int, tau: float) -> np.ndarray:
    """Queries moved toward the structures of their ``k`` nearest training titles.

    Parameters
    ----------
    queries
        ``(q, d)`` unit text embeddings.
    title_emb, centroids
        ``(t, d)`` unit embeddings of the distinct training titles and the unit mean embedding
        of each title's structures.
    beta, k, tau
        Weight of the memory, number of titles, softmax temperature over their cosines.
    """
    sims = queries @ title_emb.T
    top = np.argsort(-sims, axis=1)[:, :k]
    near = np.take_along_axis(sims, top, axis=1)
    weights = np.exp((near - near.max(axis=1, keepdims=True)) / tau)
    weights /= weights.sum(axis=1, keepdims=True)
    memory = unit(np.einsum("qk,qkd->qd", weights, centroids[top]))
    return unit((1 - beta) * queries + beta * memory)


def hubness(structure_emb: np.ndarray, title_emb: np.ndarray, k: int) -> np.ndarray:
    """Each structure's mean cosine to its ``k`` nearest training titles."""
    sims = structure_emb @ title_emb.T
    return np.sort(sims, axis=1)[:, -k:].mean(axis=1)


def scores_summary(structure_emb: np.ndarray, shift: np.ndarray, queries: dict[str, np.ndarray],
                   labels: dict[str, np.ndarray]) -> tuple[float, float]:
    """Mean ROC-AUC and AP over concepts; a concept's score is its best variation's cosine."""
    from matminer_clasp.train.metrics import ranking_metrics

    rocs, aps = [], []
    for concept, positive in labels.items():
        score = (structure_emb @ queries[concept].T).max(axis=1) - shift
        roc, ap = ranking_metrics(score, positive)
        rocs.append(float(np.ravel(roc)[0]))
        aps.append(float(np.ravel(ap)[0]))
    return round(float(np.mean(rocs)), 4), round(float(np.mean(aps)), 4)


def t2s_recall(caption_emb: np.ndarray, structure_emb: np.ndarray, caption_of: np.ndarray,
               shift: np.ndarray, k: int = 10) -> float:
    """Text->structure recall@k: a hit is any structure of the caption in the top ``k``."""
    sims = caption_emb @ structure_emb.T - shift[None, :]
    top = np.argsort(-sims, axis=1)[:, :k]
    return round(float(np.mean([np.any(caption_of[top[q]] == q) for q in range(len(sims))])), 4)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from matminer_clasp.model.clasp import ClaspModel
    from matminer_clasp.train.auto_keywords import auto_keywords, auto_min_papers
    from matminer_clasp.train.config import TrainConfig
    from matminer_clasp.train.data import load_pairs
    from matminer_clasp.train.keywords import KEYWORD_PRESETS, as_keywords, keyword_labels
    from matminer_clasp.zeroshot import DEFAULT_TEMPLATES, prompt_centroids

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="model folder trained on the seed-2026 split")
    parser.add_argument("--out", required=True, help="JSON file for the grid")
    args = parser.parse_args(argv)

    model = ClaspModel.from_pretrained(args.model)
    data = TrainConfig.from_file(CONFIG).data
    split = {}
    for side in ("train", "val"):
        pairs = load_pairs(data, model.config, split=side, show_progress_bar=False)
        split[side] = {"emb": unit(model.encode_graphs(pairs.graphs)),
                       "captions": np.asarray(list(pairs.captions), dtype=object),
                       "titles": [str(t) for t in pairs.meta["title"]]}
    train, val = split["train"], split["val"]
    titles, title_of = np.unique(train["captions"], return_inverse=True)
    title_emb = unit(model.encode_texts(list(titles), show_progress_bar=False))
    centroids = np.zeros_like(title_emb)
    np.add.at(centroids, title_of, train["emb"])
    centroids = unit(centroids)
    captions, caption_of = np.unique(val["captions"], return_inverse=True)
    caption_emb = unit(model.encode_texts(list(captions), show_progress_bar=False))

    min_auto = auto_min_papers(len(set(val["titles"])), 0)
    sets = {"amcsd": (as_keywords(KEYWORD_PRESETS["amcsd"]), 3, False),
            "auto": (dict(auto_keywords(val["titles"], min_auto)), min_auto, True)}
    labels, queries = {}, {}
    for name, (keywords, min_papers, whole_word) in sets.items():
        found = keyword_labels(val["titles"], keywords, whole_word)
        labels[name] = {c: y for c, y in found.items()
                        if len({val["titles"][i] for i in np.flatnonzero(y)}) >= min_papers}
        queries[name] = {
            "as written": {c: unit(model.encode_texts(list(keywords[c]), show_progress_bar=False))
                           for c in labels[name]},
            "templates": {c: unit(prompt_centroids(
                model, [[t.format(v) for t in DEFAULT_TEMPLATES] for v in keywords[c]], 64, None))
                for c in labels[name]}}

    no_shift = np.zeros(len(val["emb"]))
    rows: list[dict[str, Any]] = []

    def row(kind: str, setting: dict[str, Any], move, shift: np.ndarray) -> None:
        out: dict[str, Any] = {"kind": kind, **setting}
        for name in sets:
            for how, q in queries[name].items():
                moved = {c: move(e) for c, e in q.items()}
                out[f"{name} ({how})"] = scores_summary(val["emb"], shift, moved, labels[name])
        out["text->structure R@10"] = t2s_recall(move(caption_emb), val["emb"], caption_of, shift)
        rows.append(out)
        print(json.dumps(out), flush=True)

    row("none", {}, lambda q: q, no_shift)
    for beta, k, tau in EXPANSION_GRID:
        row("expansion", {"beta": beta, "k": k, "tau": tau},
            lambda q, b=beta, n=k, t=tau: expand(q, title_emb, centroids, b, n, t), no_shift)
    for k, lam in HUBNESS_GRID:
        row("hubness", {"k": k, "lam": lam}, lambda q: q, lam * hubness(val["emb"], title_emb, k))
    result = {"model": args.model, "split": "val", "split_seed": int(data.seed),
              "columns": "mean ROC-AUC, mean AP per structure", "rows": rows}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
