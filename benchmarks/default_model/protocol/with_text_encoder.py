"""Give a saved model the text encoder of another, frozen (issue 14, sixth session).

Ensemble members share one text encoder (:func:`matminer_clasp.model.merge_models` refuses
members whose encoder weights differ). To build an ensemble around an encoder tuned in one
member's stage 2 (``TrainConfig.text_lr``), the other members take that encoder before their
own stage 2, which then trains their heads against it with the encoder frozen and its features
cached, as usual.

The two models must have the same text architecture (``text_model``, pooling, every encoder
weight name and shape). The output keeps MODEL's crystal tower, text head and logit scale, with
``text_weights: checkpoint`` (the encoder is stored in the folder) and ``freeze_text: true``.

Usage::

    python benchmarks/default_model/protocol/with_text_encoder.py MODEL DONOR OUT
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from matminer_clasp.model import ClaspModel


def with_text_encoder(model: ClaspModel, donor: ClaspModel) -> ClaspModel:
    """``model`` with ``donor``'s text encoder weights (in place), frozen."""
    for field in ("text_model", "text_pooling", "max_length"):
        mine, theirs = getattr(model.config, field), getattr(donor.config, field)
        if mine != theirs:
            raise ValueError(f"the models differ in {field}: {mine!r} against {theirs!r}")
    target, source = model.text_tower.bert.state_dict(), donor.text_tower.bert.state_dict()
    if target.keys() != source.keys():
        raise ValueError("the text encoders have different weight names")
    for name, tensor in source.items():
        if tensor.shape != target[name].shape:
            raise ValueError(f"text-encoder weight {name} has shape {tuple(tensor.shape)}, "
                             f"expected {tuple(target[name].shape)}")
    model.text_tower.bert.load_state_dict(source)
    model.text_tower.bert.requires_grad_(False)
    model.config.text_weights = "checkpoint"
    model.config.freeze_text = True
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", help="saved model (folder) whose towers and heads are kept")
    parser.add_argument("donor", help="saved model (folder) whose text encoder is taken")
    parser.add_argument("out", type=Path, help="new folder (must not exist)")
    args = parser.parse_args(argv)
    if args.out.exists():
        print(f"{args.out} exists; not overwritten", file=sys.stderr)
        return 2
    model = with_text_encoder(ClaspModel.from_pretrained(args.model),
                              ClaspModel.from_pretrained(args.donor))
    model.save_pretrained(args.out)
    print(f"{args.out}: {args.model} with the text encoder of {args.donor}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
