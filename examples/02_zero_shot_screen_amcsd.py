"""Zero-shot screening of the AMCSD mineral database: "which structures look like a garnet?"

What it shows
-------------
1. ``EmbeddingIndex.build`` embeds every structure once; ``index.search("garnet")`` then ranks
   them all by cosine similarity to the word, with no training and no labels.
2. ``ZeroShotClassifier`` assigns each structure to one of several mineral families, from the
   family names alone; titles that name exactly one family give a rough ground truth.

The American Mineralogist Crystal Structure Database (AMCSD) ships with ``larixite``
(``pip install --no-deps larixite && pip install xraydb sqlalchemy``).

Run it::

    python examples/02_zero_shot_screen_amcsd.py                  # all ~9,000 entries
    python examples/02_zero_shot_screen_amcsd.py --fast           # first 200 entries
    python examples/02_zero_shot_screen_amcsd.py --index-dir amcsd-index   # keep the index
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np

from matminer_clasp import EmbeddingIndex, ZeroShotClassifier
from matminer_clasp.train.data import load_amcsd_records
from matminer_clasp.train.evaluate import keyword_labels

#: Mineral families and the words that mark them in a paper title.
FAMILIES = {
    "garnet": ("garnet", "pyrope", "grossular", "almandine", "andradite", "spessartine"),
    "spinel": ("spinel", "magnetite", "chromite"),
    "olivine": ("olivine", "forsterite", "fayalite"),
    "pyroxene": ("pyroxene", "clinopyroxene", "orthopyroxene", "diopside", "enstatite"),
    "feldspar": ("feldspar", "albite", "anorthite", "orthoclase", "sanidine"),
    "carbonate": ("carbonate", "calcite", "dolomite", "aragonite"),
    "sulfide": ("sulfide", "sulphide"),
}


def fast_mode(flag: bool) -> bool:
    """``--fast`` or the environment variable ``MATMINER_CLASP_EXAMPLE_FAST=1``."""
    return flag or os.environ.get("MATMINER_CLASP_EXAMPLE_FAST", "") not in ("", "0")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder or Hub id (default: bundled)")
    parser.add_argument("--query", default="garnet", help="text to screen for")
    parser.add_argument("--top-k", type=int, default=10)
    parser.add_argument("--fast", action="store_true", help="first 200 AMCSD entries only")
    parser.add_argument("--max-items", type=int, default=None, help="first N AMCSD entries")
    parser.add_argument("--index-dir", default=None, help="save the index here (reused if there)")
    args = parser.parse_args(argv)
    max_items = args.max_items or (200 if fast_mode(args.fast) else None)

    # 1. the corpus: AMCSD entries as pymatgen structures plus title and mineral name
    if args.index_dir and (Path(args.index_dir) / "index.json").is_file():
        index = EmbeddingIndex.load(args.index_dir, model=args.model)
        print(f"loaded {index} from {args.index_dir}")
    else:
        records = load_amcsd_records(max_items=max_items)
        print(f"read {len(records)} AMCSD structures "
              f"({len(records.attrs['skipped'])} unreadable entries skipped)")
        # 2. embed them once; structures the model cannot take are skipped and listed
        index = EmbeddingIndex.build(
            records["structure"], ids=records["id"],
            metadata=records[["mineral", "title"]].fillna(""),
            model=args.model, show_progress_bar=max_items is None,  # errors="skip"
        )
        print(f"built {index}; {len(index.skipped)} structures could not be embedded")
        if args.index_dir:
            index.save(args.index_dir)

    # 3. screen: rank every structure by cosine similarity to the query text
    hits = index.search(args.query, top_k=args.top_k)
    hits["title"] = hits["title"].str.slice(0, 60)
    print(f"\ntop {args.top_k} for {args.query!r}:")
    print(hits[["rank", "id", "formula", "mineral", "score", "title"]].to_string(index=False))

    # 4. zero-shot classification into families, checked on titles that name one family
    clf = ZeroShotClassifier(list(FAMILIES), model=args.model).fit()
    truth = keyword_labels(list(index.metadata["title"]), FAMILIES)
    marks = np.stack([truth[f] for f in FAMILIES], axis=1)
    rows = np.flatnonzero(marks.sum(axis=1) == 1)
    if len(rows) == 0:
        print("\nno title names exactly one family; nothing to score")
        return 0
    expected = np.array(list(FAMILIES))[marks[rows].argmax(axis=1)]
    predicted = clf.predict(np.asarray(index.embeddings[rows], dtype=np.float32))
    accuracy = float((predicted == expected).mean())
    majority = max(np.mean(expected == f) for f in FAMILIES)
    print(f"\nzero-shot family accuracy on {len(rows)} titled structures: {accuracy:.3f} "
          f"(chance {1 / len(FAMILIES):.3f}, always-majority {majority:.3f})")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
