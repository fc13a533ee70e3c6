"""Shared fixtures: a tiny ClaspModel (tiny BERT + tokenizer built here) and real structures.

Nothing here touches the network: HF_HUB_OFFLINE is forced on for the whole session.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from pymatgen.core import Lattice, Structure  # noqa: E402
from transformers import BertConfig, BertModel, BertTokenizerFast  # noqa: E402

from matminer_clasp.config import ClaspConfig  # noqa: E402
from matminer_clasp.model import ClaspModel  # noqa: E402

torch.set_num_threads(1)

TINY_VOCAB = (
    ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    + list("abcdefghijklmnopqrstuvwxyz0123456789")
    # continuation pieces: like a real WordPiece vocabulary, every lower-case ASCII word has a
    # tokenization (texts made only of unknown tokens are refused as content-free)
    + [f"##{c}" for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
    + [
        "ferro",
        "##electric",
        "electric",
        "garnet",
        "spinel",
        "perovskite",
        "oxide",
        "high",
        "pressure",
        "structure",
        "of",
        "the",
        "crystal",
        "mineral",
        "##ite",
        "-",
        ",",
    ]
)


def make_tokenizer(folder: Path) -> BertTokenizerFast:
    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(TINY_VOCAB) + "\n")
    # transformers 5 ignores ``vocab_file`` in the fast constructor; from_pretrained reads vocab.txt
    tokenizer = BertTokenizerFast.from_pretrained(str(folder), do_lower_case=True)
    assert len(tokenizer) == len(TINY_VOCAB), "tiny tokenizer lost its vocabulary"
    return tokenizer


def make_tiny_bert(seed: int = 0) -> BertModel:
    torch.manual_seed(seed)
    cfg = BertConfig(
        vocab_size=len(TINY_VOCAB),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=128,
    )
    return BertModel(cfg).eval()


def tiny_config(**overrides) -> ClaspConfig:
    base = dict(
        text_model="tiny-bert",
        embedding_dim=32,
        text_hidden_dim=32,
        atom_fea_len=8,
        n_conv=2,
        cell="as_is",
        # a random 1-layer BERT's pooler output barely depends on the words; mean pooling does
        text_pooling="mean",
    )
    base.update(overrides)
    return ClaspConfig(**base)


def make_tiny_model(tmp: Path, seed: int = 0, **overrides) -> ClaspModel:
    """A randomly initialised ClaspModel with a 1-layer, 16-wide BERT (eval mode)."""
    tokenizer = make_tokenizer(tmp / "vocab")
    torch.manual_seed(seed)
    model = ClaspModel(
        tiny_config(**overrides), text_encoder=make_tiny_bert(seed), tokenizer=tokenizer
    )
    # give the BatchNorm layers non-trivial running statistics
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A saved tiny model folder (config.json + model.safetensors + tokenizer/)."""
    tmp = tmp_path_factory.mktemp("tiny")
    model = make_tiny_model(tmp)
    folder = tmp / "model"
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir) -> ClaspModel:
    return ClaspModel.from_pretrained(tiny_model_dir)


def _structures() -> dict[str, Structure]:
    nacl = Structure.from_spacegroup(
        "Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]
    )
    si = Structure.from_spacegroup("Fd-3m", Lattice.cubic(5.431), ["Si"], [[0, 0, 0]])
    zno = Structure.from_spacegroup(
        "P6_3mc",
        Lattice.hexagonal(3.25, 5.207),
        ["Zn", "O"],
        [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, 0.382]],
    )
    triclinic = Structure(
        Lattice.from_parameters(5.1, 6.3, 7.2, 81.0, 95.0, 103.0),
        ["Ca", "Al", "Si", "O", "O", "O"],
        [
            [0.1, 0.2, 0.3],
            [0.6, 0.1, 0.8],
            [0.3, 0.7, 0.5],
            [0.8, 0.5, 0.1],
            [0.45, 0.4, 0.9],
            [0.05, 0.85, 0.65],
        ],
    )
    disordered = Structure(
        Lattice.cubic(3.6),
        [{"Fe": 0.5, "Co": 0.5}, {"Fe": 0.5, "Co": 0.5}, {"Ni": 0.75}, {"Ni": 0.75}],
        [[0, 0, 0], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]],
    )
    return {
        "rocksalt": nacl,
        "diamond": si,
        "hexagonal": zno,
        "triclinic": triclinic,
        "disordered": disordered,
    }


@pytest.fixture(scope="session")
def structures() -> dict[str, Structure]:
    """Real structures: rock salt, diamond Si, wurtzite ZnO, a triclinic and a disordered one."""
    return _structures()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
