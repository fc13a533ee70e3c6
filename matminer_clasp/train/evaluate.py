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

Keyword sets: a preset name (``amcsd``, ``amcsd-extended``, ``paper``, ``all``), a list of
concepts, or ``auto`` / ``auto:N`` -- every title word of the evaluated split with positive
papers in at least 2 % of its titles (at least 5), or at least ``N`` (:mod:`.auto_keywords`;
whole-word matching), a set nobody chose for a model.
Besides ``report.json`` and ``report.md`` the command writes ``items.npz`` (per-structure scores,
labels and ranks) for ``matminer-clasp compare`` (:mod:`.compare`, paired bootstrap).

This module runs the evaluation (:func:`evaluate_embeddings`, :func:`evaluate_model`, the
``matminer-clasp evaluate`` command); the concepts and their matching rule are in
:mod:`.keywords`, the metrics and bootstrap in :mod:`.metrics`, the report files in
:mod:`.report`. Their public names are importable from here too.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from matminer_clasp.train.auto_keywords import (
    AUTO_MIN_LENGTH,
    AUTO_RULE,
    auto_keywords,
    auto_min_papers,
    parse_auto_spec,
)
from matminer_clasp.train.keywords import (
    AMCSD_EXTENDED_KEYWORDS,
    AMCSD_KEYWORDS,
    DEFAULT_KEYWORDS,
    KEYWORD_PRESETS,
    PAPER_CONCEPTS,
    STRUCTURE_FAMILIES,
    as_keywords,
    keyword_counts,
    keyword_labels,
    keyword_pattern,
    normalize_text,
)
from matminer_clasp.train.metrics import (
    keyword_block,
    ranking_metrics,
    recall_from_ranks,
    retrieval_ranks,
    retrieval_recall,
)
from matminer_clasp.train.mineral_families import species_positives
from matminer_clasp.train.report import write_report
from matminer_clasp.zeroshot import DEFAULT_TEMPLATES, check_templates, prompt_centroids

# The keyword, metric and report names moved to their own modules; they stay importable from
# here, where users, the CLI and the examples import them.
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


#: Label rules of :func:`evaluate_model` (``labels=``), as the report records them.
LABEL_RULES = {
    "title": "a structure is a positive when its title matches the concept (official protocol)",
    "title-or-species": "title match, or, for the structure-defined families, a mineral species "
                        "of the family (matminer_clasp.train.mineral_families)",
}


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
    whole_word: bool = False,
    ids: Sequence[str] | None = None,
    extra_positives: Mapping[str, np.ndarray] | None = None,
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
    whole_word
        Match concepts as whole words (the ``auto`` keyword set) instead of substrings.
    ids
        ``(n,)`` structure ids, stored with the per-item arrays under ``"_items"`` (the input
        of :func:`~.compare.paired_bootstrap`; not part of ``report.json``). Default: row
        numbers.
    extra_positives
        ``concept -> (n,)`` booleans: structures that are positives whatever their title says
        (e.g. :func:`~.mineral_families.species_positives`). A title is then a positive when
        its text matches or one of its structures is such a positive.
    """
    titles = pd.Series([str(t) for t in label_texts])
    groups = titles.groupby(titles, sort=False).indices
    title_list = list(groups)
    t_labels = keyword_labels(title_list, keywords, whole_word)
    extra = {k: np.asarray(v, dtype=bool) for k, v in (extra_positives or {}).items()
             if k in t_labels}
    for k, positive in extra.items():
        if positive.shape != (len(titles),):
            raise ValueError(f"extra_positives[{k!r}] has shape {positive.shape}; expected "
                             f"({len(titles)},), one entry per structure")
        t_labels[k] = t_labels[k] | np.array([positive[idx].any() for idx in groups.values()],
                                             dtype=bool)
    n_papers = {k: int(v.sum()) for k, v in t_labels.items()}
    skipped = {k: n for k, n in n_papers.items() if n < min_papers}
    keywords = {k: v for k, v in keywords.items() if k not in skipped}
    t_labels = {k: v for k, v in t_labels.items() if k not in skipped}

    s = _unit(np.asarray(structure_emb, dtype=np.float64))
    labels = keyword_labels(label_texts, keywords, whole_word)
    labels = {k: v | extra[k] if k in extra else v for k, v in labels.items()}
    scores = {k: (s @ _unit(np.asarray(keyword_emb[k], float)).T).max(axis=1) for k in keywords}
    report: dict[str, Any] = {"n_structures": int(len(s))}
    report["per_structure"] = keyword_block(scores, labels, bootstrap, seed)

    title_emb = _unit(np.stack([s[idx].mean(axis=0) for idx in groups.values()])) if len(s) else s
    t_scores = {k: (title_emb @ _unit(np.asarray(keyword_emb[k], float)).T).max(axis=1)
                for k in keywords}
    report["n_titles"] = len(title_list)
    report["per_title"] = keyword_block(t_scores, t_labels, bootstrap, seed)
    items: dict[str, Any] = {
        "ids": np.asarray([str(i) for i in (range(len(s)) if ids is None else ids)], dtype=str),
        "group": np.empty(len(s), dtype=np.int64),
        "concepts": np.asarray(list(keywords), dtype=str),
        "scores": np.stack([scores[k] for k in keywords], axis=1).astype(np.float32)
        if keywords else np.zeros((len(s), 0), np.float32),
        "labels": np.stack([labels[k] for k in keywords], axis=1)
        if keywords else np.zeros((len(s), 0), bool),
    }
    for g, idx in enumerate(groups.values()):
        items["group"][idx] = g
    if caption_emb is not None and caption_of_structure is not None and len(s):
        s2t, queries, t2s = retrieval_ranks(s, caption_emb, caption_of_structure)
        report["retrieval"] = recall_from_ranks(s2t, queries, t2s, caption_of_structure,
                                                len(caption_emb))
        items.update(caption_of=np.asarray(caption_of_structure, np.int64), s2t_rank=s2t,
                     queries=queries, t2s_rank=t2s)
    report["_items"] = items
    report["keywords"] = {k: list(v) for k, v in keywords.items()}
    report["positive_papers"] = n_papers
    report["skipped_concepts"] = {
        k: f"{n} positive paper(s) in this split, fewer than min_papers={min_papers}"
        for k, n in skipped.items()
    }
    report["settings"] = {
        "bootstrap_resamples": int(bootstrap), "seed": int(seed), "interval": "percentile 95%",
        "score": "max cosine over the concept's variation strings",
        "keyword_match": "whole word (plural s/es tolerated)" if whole_word
        else "substring (official rule)",
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
    templates: Sequence[str] | None = None,
    labels: str = "title",
) -> dict[str, Any]:
    """Evaluate ``model`` on the pairs ``indices`` of ``pairs`` (zero-shot keywords + retrieval).

    Keyword positives come from ``pairs.meta[label_column]`` (the paper title, as in the official
    evaluation) when that column exists, else from the captions. Retrieval uses the captions.
    ``keywords`` may be ``"auto"`` or ``"auto:N"``: the :mod:`.auto_keywords` set of these
    titles (``min_papers`` is then that of the set). See :func:`evaluate_embeddings` for the
    returned dict.

    ``templates`` (e.g. :data:`matminer_clasp.zeroshot.DEFAULT_TEMPLATES`): each variation is
    queried as the renormalised mean of its prompts, as :class:`~matminer_clasp.ZeroShotClassifier`
    does, instead of as written (the official protocol, the default). Only the queries change:
    positives are still matched on the bare variations, and retrieval is unaffected.

    ``labels="title-or-species"`` adds a second label rule for the structure-defined families
    (garnet, olivine, pyroxene, spinel, perovskite): a structure is also a positive when its
    mineral species (``pairs.meta["mineral"]``) belongs to the family
    (:mod:`.mineral_families`), a label a structure can show, unlike the words of its title.
    Other concepts keep their title labels. The default, ``"title"``, is the official protocol.
    """
    if labels not in LABEL_RULES:
        raise ValueError(f"labels={labels!r}; expected one of {sorted(LABEL_RULES)}")
    idx = np.asarray(indices, dtype=np.int64)
    if len(idx) == 0:
        raise ValueError("evaluate_model got no structures (empty index list)")
    captions = [pairs.captions[i] for i in idx]
    meta = getattr(pairs, "meta", None)
    if meta is not None and label_column in getattr(meta, "columns", ()):
        label_texts = [str(meta[label_column].iloc[i]) for i in idx]
    else:
        label_texts = captions
    auto_n = parse_auto_spec(keywords) if isinstance(keywords, str) else None
    if auto_n is not None:
        min_papers = auto_min_papers(len(set(label_texts)), auto_n)
        kw: dict[str, tuple[str, ...]] = dict(auto_keywords(label_texts, min_papers))
    elif isinstance(keywords, str):
        raise ValueError(f"unknown keyword set {keywords!r}; expected auto or auto:N")
    else:
        kw = as_keywords(keywords)
    extra = None
    if labels == "title-or-species":
        if meta is None or "mineral" not in getattr(meta, "columns", ()):
            raise ValueError("labels='title-or-species' needs the pairs' mineral names "
                             "(a 'mineral' column in pairs.meta, as AMCSD pairs have)")
        extra = species_positives([meta["mineral"].iloc[i] for i in idx], kw)
    graphs = [pairs.graphs[i] for i in idx]
    structure_emb = model.encode_graphs(graphs, batch_size=batch_size, device=device)
    distinct, caption_of = np.unique(np.asarray(captions, dtype=object), return_inverse=True)
    caption_emb = model.encode_texts(list(distinct), batch_size=batch_size, device=device)
    if templates is None:
        keyword_emb = {k: model.encode_texts(list(v), device=device) for k, v in kw.items()}
    else:
        templates = check_templates(templates)
        keyword_emb = {k: prompt_centroids(model, [[t.format(x) for t in templates] for x in v],
                                           batch_size, device) for k, v in kw.items()}
    report = evaluate_embeddings(structure_emb, label_texts, keyword_emb, kw, caption_emb,
                                 caption_of, bootstrap, seed, min_papers=min_papers,
                                 whole_word=auto_n is not None,
                                 ids=[str(pairs.ids[i]) for i in idx], extra_positives=extra)
    report["label_source"] = label_column if label_texts is not captions else "caption"
    report["settings"]["labels"] = LABEL_RULES[labels]
    if extra is not None:
        report["label_source"] += " or mineral species (families)"
        report["species_positives"] = {k: int(v.sum()) for k, v in extra.items()}
    if templates is not None:
        report["settings"]["score"] = (
            "max over the concept's variations of the cosine to the renormalised mean of the "
            "variation written into each template")
        report["settings"]["templates"] = list(templates)
    if auto_n is not None:
        how = f"auto:{auto_n}" if auto_n else "2 % of the split's distinct titles, at least 5"
        report["keyword_set"] = {
            "name": str(keywords), "min_papers": min_papers,
            "rule": AUTO_RULE.format(length=AUTO_MIN_LENGTH, n=min_papers, how=how)}
    return report


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
                             "topic words), paper (the paper's six), all (default), auto "
                             "(every title word of the split with positive papers in >= 2 %% "
                             "of its titles, at least 5; chosen by nobody) or auto:N (>= N "
                             "positive papers)")
    parser.add_argument("--templates", nargs="+", default=None,
                        help="query each keyword through prompt templates, averaged as in "
                             "ZeroShotClassifier: 'default' (its default templates) or "
                             "templates with a {} placeholder (default: keywords as written, "
                             "the official protocol)")
    parser.add_argument("--labels", default="title", choices=sorted(LABEL_RULES),
                        help="keyword positives: title (the official protocol; default) or "
                             "title-or-species (the five mineral families also count every "
                             "structure of a species of the family, e.g. pyrope for garnet)")
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

    templates = getattr(args, "templates", None)
    if templates == ["default"]:
        templates = list(DEFAULT_TEMPLATES)
    elif templates is not None:
        templates = check_templates(templates)  # before any graph is built
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
    if args.split != "all" and config.data.ids_file is not None:
        # a pinned data set: the split is known from the captions, build only its graphs
        pairs = load_pairs(config.data, model.config, split=args.split)
        indices = np.arange(len(pairs.ids))
    else:
        pairs = load_pairs(config.data, model.config)
        indices = np.arange(len(pairs.ids)) if args.split == "all" else (
            split_indices(pairs, config.data)[args.split])
    keywords: Any = None
    names = getattr(args, "keywords", None)
    if names and len(names) == 1 and names[0] in KEYWORD_PRESETS:
        keywords = KEYWORD_PRESETS[names[0]]
    elif names and len(names) == 1 and parse_auto_spec(names[0]) is not None:
        keywords = names[0]
    elif names:
        keywords = {k: DEFAULT_KEYWORDS.get(k, (k,)) for k in names}
    report = evaluate_model(model, pairs, indices, keywords, bootstrap=args.bootstrap,
                            seed=args.seed, batch_size=getattr(args, "batch_size", 64),
                            device=getattr(args, "device", None), templates=templates,
                            labels=getattr(args, "labels", "title"))
    report["model"], report["split"] = str(args.model), args.split
    report["split_seed"] = int(config.data.seed)
    report["split_definition"] = {"config": str(config_path), "kind": config.data.split,
                                  "fractions": list(config.data.fractions),
                                  "seed": int(config.data.seed),
                                  "ids_file": config.data.ids_file}
    write_report(report, args.out)  # report.json, report.md and items.npz
    return report
