"""Copy a trained run into ``matminer_clasp/pretrained/`` as the bundled default model.

Usage (see ``run.sh``)::

    python benchmarks/default_model/package_model.py runs/ensemble/best \
        --eval-config benchmarks/default_model/train_default.yaml \
        --train-configs benchmarks/default_model/member_*.yaml \
        --fingerprint runs/member_graph_s42_stage2/data_fingerprint --report docs/model-report.md

Writes fp16 ``model.safetensors`` + ``config.json`` (the frozen MiniLM encoder is referenced,
not copied), ``train_configs.json`` (every training configuration that produced the model, by
file name), ``data_fingerprint``, ``evaluation_config.json`` and the report; checks that the
packaged model reproduces the trained model's embeddings within fp16 rounding.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import torch

from matminer_clasp.hub import BUNDLED_MODEL_DIR
from matminer_clasp.model import ClaspModel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="trained model folder (e.g. runs/default/best)")
    parser.add_argument("--run", default=None,
                        help="run folder whose train_config.json, data_fingerprint and "
                             "train_summary.json are shipped (a single trained model)")
    parser.add_argument("--train-configs", nargs="*", default=[],
                        help="training configs of an ensemble's members, shipped together as "
                             "train_configs.json")
    parser.add_argument("--fingerprint", default=None, help="data_fingerprint file to ship")
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
    from matminer_clasp.train.config import TrainConfig

    if args.run:
        run = Path(args.run)
        for name in ("train_config.json", "data_fingerprint", "train_summary.json"):
            if (run / name).exists():
                shutil.copy(run / name, out / name)
    if args.train_configs:
        configs = {Path(c).name: TrainConfig.from_file(c).to_dict() for c in args.train_configs}
        (out / "train_configs.json").write_text(json.dumps(configs, indent=1, default=str) + "\n")
    if args.fingerprint:
        shutil.copy(args.fingerprint, out / "data_fingerprint")
    if args.eval_config:
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
