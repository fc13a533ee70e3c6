"""Convert the authors' official CLaSP checkpoint into a ``from_pretrained`` model folder.

The official release (Toyota/clasp v1.0.0) ships ``model_finetuned_s30_m05.ckpt``, a PyTorch
Lightning checkpoint (crystal encoder + frozen SciBERT + text MLP, 300 tensors). It has no
tokenizer, so the SciBERT uncased vocabulary must be given as a folder (``--tokenizer``; a
folder holding only ``vocab.txt`` is enough) or be in the Hugging Face cache.

Without ``--ckpt`` this script builds a SYNTHETIC checkpoint first: random weights under the
official key names and shapes (with a small BERT inside), so the conversion can be shown and
checked offline. Its embeddings mean nothing.

Run it::

    python examples/04_convert_official_checkpoint.py                       # synthetic demo
    python examples/04_convert_official_checkpoint.py \\
        --ckpt model_finetuned_s30_m05.ckpt --tokenizer scibert_vocab/ --out clasp-official/
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from pymatgen.core import Lattice, Structure
from transformers import BertConfig, BertModel, BertTokenizerFast

from matminer_clasp import ClaspModel, convert_official_checkpoint
from matminer_clasp.config import ClaspConfig
from matminer_clasp.convert import official_prefix_map

#: Words of the toy vocabulary of the synthetic checkpoint (plus BERT's special tokens).
TOY_WORDS = ["rock", "salt", "garnet", "spinel", "perovskite", "oxide", "crystal", "structure"]


def rock_salt() -> Structure:
    return Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )


def synthetic_official_checkpoint(folder: Path) -> tuple[Path, Path, ClaspModel]:
    """Write ``official.ckpt`` (official key names) and a ``vocab.txt`` tokenizer folder.

    Returns the checkpoint path, the tokenizer folder and the model the weights came from.
    """
    vocab_dir = folder / "vocab"
    vocab_dir.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *TOY_WORDS]
    (vocab_dir / "vocab.txt").write_text("\n".join(vocab) + "\n")
    # from_pretrained on the folder reads vocab.txt (a lower-casing WordPiece, as SciBERT's)
    tokenizer = BertTokenizerFast.from_pretrained(str(vocab_dir), do_lower_case=True)

    # the official architecture (ClaspConfig defaults), with a small BERT instead of SciBERT
    torch.manual_seed(0)
    bert = BertModel(
        BertConfig(vocab_size=len(vocab), hidden_size=64, num_hidden_layers=2,
                   num_attention_heads=2, intermediate_size=96, max_position_embeddings=64),
        add_pooling_layer=True,
    )
    config = ClaspConfig(text_pooling="pooler", cell="conventional")
    model = ClaspModel(config, text_encoder=bert, tokenizer=tokenizer).eval()
    for module in model.modules():  # non-trivial BatchNorm statistics, as after training
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-0.3, 0.3)
            module.running_var.uniform_(0.5, 1.5)

    # rename our parameters to the official Lightning names (the reverse of the converter)
    pairs = official_prefix_map(config)
    state = {}
    for key, tensor in model.state_dict().items():
        for official, ours in pairs:
            if key.startswith(ours):
                state[official + key[len(ours):]] = tensor.clone()
                break
        else:
            raise KeyError(f"no official name for {key}")
    ckpt = folder / "official.ckpt"
    # the top-level layout of a Lightning 2.x checkpoint (no hyper_parameters, as released)
    torch.save({"epoch": 2049, "global_step": 0, "pytorch-lightning_version": "2.2.0",
                "state_dict": state, "loops": {}, "callbacks": {}, "optimizer_states": [],
                "lr_schedulers": []}, ckpt)
    return ckpt, vocab_dir, model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", default=None, help="model_finetuned_s30_m05.ckpt")
    parser.add_argument("--tokenizer", default=None, help="folder with the SciBERT vocab.txt")
    parser.add_argument("--out", default=None, help="model folder to write (default: temporary)")
    parser.add_argument("--fast", action="store_true", help="no effect (already quick)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp) / "converted"
        source = None
        if args.ckpt is None:
            print("No --ckpt given: building a SYNTHETIC checkpoint with the official key names "
                  "and random weights (demonstration only; its embeddings mean nothing).")
            ckpt, tokenizer, source = synthetic_official_checkpoint(Path(tmp))
        else:
            ckpt, tokenizer = Path(args.ckpt), args.tokenizer
            print(f"Converting the official checkpoint {ckpt}")
        # the conversion: strict key-by-key mapping, shapes checked, weights_only loading
        convert_official_checkpoint(ckpt, out, tokenizer=tokenizer)
        print(f"wrote {sorted(p.name for p in out.iterdir())} to {out}")

        # load it the way every user does, and embed a crystal and two texts
        model = ClaspModel.from_pretrained(out)
        crystal = model.encode_structures([rock_salt()])
        texts = model.encode_texts(["rock salt", "garnet"])
        print(f"embedding size {crystal.shape[1]}; cosine(NaCl, 'rock salt') = "
              f"{float(crystal[0] @ texts[0]):.4f}, cosine(NaCl, 'garnet') = "
              f"{float(crystal[0] @ texts[1]):.4f}")
        if source is not None:  # the converted model computes what the source model computed
            diff = max(
                np.abs(crystal - source.encode_structures([rock_salt()])).max(),
                np.abs(texts - source.encode_texts(["rock salt", "garnet"])).max(),
            )
            print(f"max |converted - source| over the embeddings: {diff:.2e}")
            if diff > 1e-5:
                raise SystemExit("conversion changed the embeddings")
        if not args.out:
            print("(temporary folder; pass --out DIR to keep the converted model)")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
