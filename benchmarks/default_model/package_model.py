"""Copy a trained run into ``matminer_clasp/pretrained/`` as the bundled default model.

Usage::

    python benchmarks/default_model/package_model.py runs/default/best --run runs/default \
        --report docs/model-report.md

Writes fp16 ``model.safetensors`` + ``config.json`` (the frozen MiniLM encoder is referenced,
not copied), the run's ``train_config.json`` and ``data_fingerprint``, and the report; checks that
the packaged model reproduces the run's embeddings within fp16 rounding.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np
import torch

from matminer_clasp.hub import BUNDLED_MODEL_DIR
from matminer_clasp.model import ClaspModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="trained model folder (e.g. runs/default/best)")
    parser.add_argument("--run", required=True, help="run folder with train_config.json")
    parser.add_argument("--report", nargs="*", default=[], help="report files to ship")
    parser.add_argument("--eval-config", default=None,
                        help="config whose data/split the report used (stage 1 of a two-stage "
                             "model), shipped as evaluation_config.json")
    args = parser.parse_args()

    model = ClaspModel.from_pretrained(args.model)
    out = BUNDLED_MODEL_DIR
    for old in out.glob("*"):
        if old.is_file() and old.name != "README.md":
            old.unlink()
    model.save_pretrained(out, dtype=torch.float16)
    run = Path(args.run)
    for name in ("train_config.json", "data_fingerprint", "train_summary.json"):
        if (run / name).exists():
            shutil.copy(run / name, out / name)
    if args.eval_config:
        from matminer_clasp.train.config import TrainConfig

        TrainConfig.from_file(args.eval_config).save(out / "evaluation_config.json")
    for report in args.report:
        shutil.copy(report, out / Path(report).name)

    packaged = ClaspModel.from_pretrained()
    texts = ["garnet", "spinel", "high-pressure phase", "superconductor"]
    diff = np.abs(packaged.encode_texts(texts) - model.encode_texts(texts)).max()
    size = (out / "model.safetensors").stat().st_size / 2**20
    print(f"packaged into {out}: model.safetensors {size:.1f} MiB, max |fp16 - fp32| text "
          f"embedding difference {diff:.2e}")
    assert diff < 5e-3, "fp16 packaging changed the embeddings too much"


if __name__ == "__main__":
    main()
