"""Fine-tune a CLaSP model on a small crystal-caption corpus, then evaluate it.

What it shows
-------------
1. Training pairs from AMCSD: each structure with its paper title as caption
   (``DataConfig(source="amcsd")``; use ``source="cif_dir"`` or ``"table"`` for your own data).
2. ``matminer_clasp.train.fit(TrainConfig(...))`` starting from an existing model folder, with
   the CosFace contrastive loss of the paper; the run folder holds a ``from_pretrained`` model.
3. ``evaluate_model`` + ``write_report`` on the held-out test split, before and after training
   (zero-shot keyword ROC-AUC and caption retrieval, each with its random baseline).

A real run uses the whole corpus, many epochs and a GPU (``docs/training.md``); this one trains
100 pairs for 2 epochs on CPU, so expect numbers near chance.

Run it::

    python examples/03_finetune_small_model.py                    # from the bundled model
    python examples/03_finetune_small_model.py --model DIR --out run/
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import torch

from matminer_clasp import ClaspModel
from matminer_clasp.config import ClaspConfig
from matminer_clasp.hub import resolve_model_folder
from matminer_clasp.train import TrainConfig, evaluate_model, fit, write_report
from matminer_clasp.train.data import DataConfig, load_pairs, split_indices
from matminer_clasp.train.evaluate import DEFAULT_KEYWORDS

#: Concepts common in AMCSD titles (the paper's six concepts are rare in minerals).
KEYWORDS = {k: DEFAULT_KEYWORDS[k] for k in ("sulfide", "silicate", "oxide", "high pressure")}


def fast_mode(flag: bool) -> bool:
    """``--fast`` or the environment variable ``MATMINER_CLASP_EXAMPLE_FAST=1``."""
    return flag or os.environ.get("MATMINER_CLASP_EXAMPLE_FAST", "") not in ("", "0")


def summary(report: dict) -> str:
    """One line: mean ROC-AUC of the keyword task and text->structure recall@5."""
    auc = report["per_structure"]["mean"]["roc_auc"]
    auc_text = "n/a (no concept has positives and negatives here)" if auc != auc else f"{auc:.3f}"
    t2s = report["retrieval"]["text_to_structure"]
    return (f"mean ROC-AUC {auc_text} (random 0.5), text->structure recall@5 "
            f"{t2s['recall@5']:.3f} (random {t2s['random@5']:.3f})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model to start from (default: bundled)")
    parser.add_argument("--out", default=None, help="run folder (default: a temporary folder)")
    parser.add_argument("--pairs", type=int, default=100, help="AMCSD entries to train on")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--fast", action="store_true", help="60 entries (CI smoke test)")
    args = parser.parse_args(argv)
    n_items = min(args.pairs, 60) if fast_mode(args.fast) else args.pairs
    torch.manual_seed(0)

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp) / "run"
        start = resolve_model_folder(args.model)  # a folder: what TrainConfig.init_from expects

        # 1. pairs (graph cache inside the run folder, so this example leaves nothing behind)
        data = DataConfig(source="amcsd", captions="title", max_items=n_items, n_jobs=1,
                          cache_dir=str(out / "cache"))
        pairs = load_pairs(data, ClaspConfig.load(start), show_progress_bar=False)
        splits = split_indices(pairs, data)              # the paper's seed-42 80/10/10 split
        print(f"{len(pairs)} pairs ({len(pairs.skipped)} entries skipped): "
              + ", ".join(f"{k} {len(v)}" for k, v in splits.items()))
        print(f"example caption: {pairs.captions[0]!r}")

        # 2. train; a small corpus needs a larger lr than the paper's 1e-6 fine-tuning default
        config = TrainConfig(
            data=data, init_from=str(start), stage="finetune", loss="cosface",
            lr=1e-4, epochs=args.epochs, batch_size=16, precision="fp32", device="cpu",
            warmup_ratio=0.1, log_every=1, output_dir=str(out), seed=0,
        )
        run = fit(config, pairs=pairs, splits=splits)
        print(f"trained model written to {run}")

        # 3. evaluate the starting model and the trained one on the same test split
        test = splits["test"]
        before = evaluate_model(ClaspModel.from_pretrained(start), pairs, test, KEYWORDS,
                                bootstrap=100)
        trained = ClaspModel.from_pretrained(run)        # the path users take
        after = evaluate_model(trained, pairs, test, KEYWORDS, bootstrap=100)
        json_path, md_path = write_report(after, run / "report")
        print(f"before: {summary(before)}")
        print(f"after:  {summary(after)}")
        print(f"report: {md_path}")
        if not args.out:
            print("(temporary run folder; pass --out DIR to keep it)")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
