"""Draw the docs' embedding map: AMCSD structures embedded by the bundled model, coloured by
mineral family (the family word found in the paper title).

Usage::

    python benchmarks/default_model/plot_map.py --out docs/img/amcsd_map.png [--method umap]
"""

from __future__ import annotations

import argparse

import numpy as np

from matminer_clasp import ClaspModel, plot_embedding_map
from matminer_clasp.train.config import TrainConfig
from matminer_clasp.train.data import load_pairs
from matminer_clasp.train.evaluate import keyword_labels

# ("mica" is left out: as a substring it matches "chemical")
FAMILIES = ["spinel", "garnet", "olivine", "pyroxene", "perovskite", "amphibole", "feldspar",
            "zeolite", "carbonate", "sulfide", "phosphate", "sulfate", "borate"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="benchmarks/default_model/train_default.yaml")
    parser.add_argument("--out", default="docs/img/amcsd_map.png")
    parser.add_argument("--method", default="umap", choices=["umap", "tsne", "pca"])
    args = parser.parse_args()

    model = ClaspModel.from_pretrained()
    cfg = TrainConfig.from_file(args.config)
    pairs = load_pairs(cfg.data, model.config, show_progress_bar=False)
    titles = [str(t) for t in pairs.meta["title"]]
    labels = np.array(["other"] * len(titles), dtype=object)
    for family in reversed(FAMILIES):  # earlier families win when a title names two
        hit = keyword_labels(titles, {family: (family,)})[family]
        labels[np.asarray(hit, dtype=bool)] = family
    keep = labels != "other"
    emb = model.encode_graphs([g for g, k in zip(pairs.graphs, keep) if k], batch_size=256)
    fig = plot_embedding_map(emb, labels=list(labels[keep]), method=args.method, random_state=0)
    fig.axes[0].set_title(f"AMCSD structures with a mineral family in their title "
                          f"(n={int(keep.sum())}), bundled CLaSP model, {args.method.upper()}")
    fig.savefig(args.out, dpi=120, bbox_inches="tight")
    print(f"wrote {args.out} ({int(keep.sum())} structures)")


if __name__ == "__main__":
    main()
