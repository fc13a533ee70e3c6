"""Stage 2 of the paper on AMCSD: fine-tune a title-trained model on keyword captions, reusing the
title split (the official fine-tuning also reuses the pre-training split, so no test title is
seen in either stage).

Usage::

    python benchmarks/default_model/finetune_keywords.py \\
        --pretrain-config benchmarks/default_model/train_default.yaml \\
        --config benchmarks/default_model/member_graph_s42_stage2.yaml

A grouped split computed on keyword captions would group by keyword string, not by paper, and
so would not match the pre-training split: this script maps the pre-training split onto the
keyword pairs by structure id instead.
"""

from __future__ import annotations

import argparse

import numpy as np

from matminer_clasp.config import ClaspConfig
from matminer_clasp.model import ClaspModel
from matminer_clasp.train.config import TrainConfig
from matminer_clasp.train.data import load_pairs, split_indices
from matminer_clasp.train.trainer import fit


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pretrain-config", required=True)
    parser.add_argument("--config", required=True, help="stage-2 TrainConfig (init_from set)")
    args = parser.parse_args()

    pre = TrainConfig.from_file(args.pretrain_config)
    cfg = TrainConfig.from_file(args.config)
    model_config: ClaspConfig = ClaspModel.from_pretrained(cfg.init_from).config
    title_pairs = load_pairs(pre.data, model_config, show_progress_bar=False)
    side = {}
    for name, idx in split_indices(title_pairs, pre.data).items():
        side.update({title_pairs.ids[i]: name for i in idx})
    kw_pairs = load_pairs(cfg.data, model_config, show_progress_bar=False)
    splits = {name: np.array([i for i, pid in enumerate(kw_pairs.ids) if side.get(pid) == name],
                             dtype=np.int64) for name in ("train", "val", "test")}
    unknown = [pid for pid in kw_pairs.ids if pid not in side]
    print({k: len(v) for k, v in splits.items()}, f"({len(unknown)} keyword pairs not in the "
          "title split, left out)")
    out = fit(cfg, pairs=kw_pairs, splits=splits)
    print(f"fine-tuned model in {out}")


if __name__ == "__main__":
    main()
