"""Convert the authors' Lightning checkpoint into a :class:`ClaspModel` folder.

The official release (Toyota/clasp v1.0.0, ``model_finetuned_s30_m05.ckpt``) is a PyTorch
Lightning checkpoint of the LightningModule ``models/contrastive.ClaspModel``. Its ``state_dict``
has 300 keys under two prefixes (fact sheet, sections 4 and 9):

* ``model.``: the CGCNN crystal encoder and its projection head (85 keys);
* ``model_text.text_encoder.``: the frozen SciBERT ``BertModel`` (199 keys);
* ``model_text.mlp.``: the text projection MLP (16 keys).

The checkpoint holds no hyper-parameters, so the architecture is the official one
(``ClaspConfig()`` defaults) for the crystal side; the BERT architecture is read from the
checkpoint's own tensor shapes, so no network access is needed. Every key is mapped explicitly and
every shape checked: unknown or missing keys are refused, never skipped. Only the tokenizer, which
the checkpoint does not contain, has to come from elsewhere.

The file is read with ``torch.load(..., weights_only=True)`` (no arbitrary unpickling).
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertModel,
    BertTokenizerFast,
    PreTrainedTokenizerBase,
)

from matminer_clasp.config import ClaspConfig
from matminer_clasp.errors import CheckpointConversionError, ModelLoadError

#: Official prefix of the BERT text encoder inside the Lightning state dict.
OFFICIAL_BERT_PREFIX = "model_text.text_encoder."
#: Buffers that older/newer ``transformers`` versions may store; they carry no weights.
_DROPPED_SUFFIXES = ("embeddings.position_ids", "embeddings.token_type_ids")
#: BERT attention head size (SciBERT: 768 hidden / 12 heads).
_HEAD_SIZE = 64
#: Plain, data-only types a Lightning checkpoint may pickle besides tensors and builtins.
_SAFE_TYPES = [pathlib.PosixPath, pathlib.WindowsPath, pathlib.PurePosixPath,
               pathlib.PureWindowsPath]


def official_prefix_map(config: ClaspConfig) -> list[tuple[str, str]]:
    """Return ``(official_prefix, our_prefix)`` pairs for the crystal encoder and the text MLP.

    The index layout follows Toyota/clasp ``models/cgcnn.py`` (``intermediate_modules``:
    ``Linear, ReLU, BatchNorm1d`` per block, so Linear at ``3k`` and BN at ``3k + 2``) and
    ``models/text_encoder.py`` (``mlp``: ``Linear, BatchNorm1d, ReLU`` per block, so Linear at
    ``3k``, BN at ``3k + 1`` and the final Linear at ``3 (n_layers - 1)``). The BERT encoder maps
    as a whole, ``model_text.text_encoder.`` -> ``text_tower.bert.``.
    """
    pairs = [("model.atom_embedding_proj.", "crystal_tower.cgcnn.embedding.")]
    pairs += [
        (f"model.convolution_layers.{i}.", f"crystal_tower.cgcnn.convs.{i}.")
        for i in range(config.n_conv)
    ]
    pairs += [
        ("model.crystal_embedding_proj.", "crystal_tower.head.proj."),
        ("model.crystal_embedding_bn.", "crystal_tower.head.bn."),
    ]
    for k in range(config.crystal_head_layers):
        pairs += [
            (f"model.intermediate_modules.{3 * k}.", f"crystal_tower.head.blocks.{k}.lin."),
            (f"model.intermediate_modules.{3 * k + 2}.", f"crystal_tower.head.blocks.{k}.bn."),
        ]
    pairs.append(("model.final_projection.", "crystal_tower.head.out."))
    for k in range(config.text_head_layers - 1):
        pairs += [
            (f"model_text.mlp.{3 * k}.", f"text_tower.head.blocks.{k}.lin."),
            (f"model_text.mlp.{3 * k + 1}.", f"text_tower.head.blocks.{k}.bn."),
        ]
    pairs.append((f"model_text.mlp.{3 * (config.text_head_layers - 1)}.", "text_tower.head.out."))
    pairs.append((OFFICIAL_BERT_PREFIX, "text_tower.bert."))
    return pairs


def _rename(key: str, pairs: list[tuple[str, str]], reverse: bool = False) -> str | None:
    for official, ours in pairs:
        src, dst = (ours, official) if reverse else (official, ours)
        if key.startswith(src):
            return dst + key[len(src):]
    return None


def _read_state_dict(ckpt_path: Path) -> dict[str, torch.Tensor]:
    """Load the checkpoint safely and return its (model) state dict."""
    if not ckpt_path.is_file():
        raise CheckpointConversionError(f"checkpoint {ckpt_path} does not exist or is not a file")
    try:
        allow = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
        with allow(_SAFE_TYPES) if allow is not None else contextlib.nullcontext():
            with warnings.catch_warnings():  # torch warns about odd pickle protocols
                warnings.simplefilter("ignore", UserWarning)
                obj = torch.load(ckpt_path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises anything on garbage; one message
        reason = _load_failure(exc)
        if isinstance(exc, pickle.UnpicklingError) and "Unsupported global" in str(exc):
            raise CheckpointConversionError(
                f"{ckpt_path} holds objects that are not allowed in a weights-only load "
                f"({reason}); re-save just its 'state_dict' with torch.save and convert that file"
            ) from exc
        raise CheckpointConversionError(
            f"{ckpt_path} is not a readable PyTorch checkpoint (empty, truncated or another "
            f"format: {reason})"
        ) from exc
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointConversionError(
            f"{ckpt_path} is neither a Lightning checkpoint with a 'state_dict' nor a state dict"
        )
    bad = [k for k, v in obj.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointConversionError(
            f"{ckpt_path}: state dict entries {bad[:5]} are not (name, tensor) pairs"
        )
    return {
        k: v for k, v in obj.items()
        if not (k.startswith(OFFICIAL_BERT_PREFIX) and k.endswith(_DROPPED_SUFFIXES))
    }


def _load_failure(exc: BaseException) -> str:
    """The informative last line of a ``torch.load`` error (its first lines are boilerplate)."""
    text = str(exc)
    marker = "WeightsUnpickler error:"
    if marker in text:
        text = text[text.index(marker) + len(marker):]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    reason = lines[0][:200] if lines else ""
    return f"{type(exc).__name__}: {reason}" if reason else type(exc).__name__


def bert_config_from_state(state: Mapping[str, torch.Tensor], prefix: str = "") -> BertConfig:
    """Infer a ``BertConfig`` from the tensor shapes of a ``BertModel`` state dict.

    Vocabulary size, hidden size, number of layers, intermediate size, maximum positions and the
    number of token types come from the shapes; heads = hidden / 64 (as for BERT-base / SciBERT);
    the remaining settings are BERT's defaults (GELU, LayerNorm eps 1e-12), which SciBERT uses.
    """

    def shape(name: str) -> tuple[int, ...]:
        key = prefix + name
        if key not in state:
            raise CheckpointConversionError(
                f"missing key {key!r}: cannot infer the BERT text encoder's architecture"
            )
        return tuple(state[key].shape)

    vocab, hidden = shape("embeddings.word_embeddings.weight")
    max_pos = shape("embeddings.position_embeddings.weight")[0]
    type_vocab = shape("embeddings.token_type_embeddings.weight")[0]
    intermediate = shape("encoder.layer.0.intermediate.dense.weight")[0]
    pattern = re.compile(re.escape(prefix) + r"encoder\.layer\.(\d+)\.")
    layers = {int(m.group(1)) for k in state if (m := pattern.match(k))}
    if hidden % _HEAD_SIZE:
        raise CheckpointConversionError(
            f"BERT hidden size {hidden} is not a multiple of the head size {_HEAD_SIZE}"
        )
    return BertConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        num_hidden_layers=max(layers) + 1,
        num_attention_heads=hidden // _HEAD_SIZE,
        intermediate_size=intermediate,
        max_position_embeddings=max_pos,
        type_vocab_size=type_vocab,
    )


def _load_tokenizer(
    tokenizer: PreTrainedTokenizerBase | str | os.PathLike[str] | None, text_model: str
) -> PreTrainedTokenizerBase:
    if isinstance(tokenizer, PreTrainedTokenizerBase):
        return tokenizer
    source = os.fspath(tokenizer) if tokenizer is not None else text_model
    folder = Path(source)
    if tokenizer is not None and not folder.is_dir():
        raise ModelLoadError(f"tokenizer folder {source} does not exist")
    if (
        folder.is_dir()
        and (folder / "vocab.txt").is_file()
        and not any((folder / n).is_file() for n in ("tokenizer_config.json", "config.json"))
    ):
        # a bare WordPiece vocabulary (as in the SciBERT release): lower-casing BERT tokenizer.
        # (Not BertTokenizerFast(vocab_file=...): transformers 5 ignores that argument and builds
        # a tokenizer that maps every word to [UNK].)
        return BertTokenizerFast.from_pretrained(str(folder), do_lower_case=True)
    try:
        return AutoTokenizer.from_pretrained(source)
    except Exception as exc:  # transformers/huggingface_hub raise many exception types here
        raise ModelLoadError(
            f"could not load the tokenizer {source!r} ({type(exc).__name__}: {exc}). The official "
            "checkpoint has no tokenizer; it needs the SciBERT uncased vocabulary. Offline "
            "(HF_HUB_OFFLINE=1) it must already be in the Hugging Face cache; otherwise pass "
            "tokenizer=<folder with vocab.txt / tokenizer files>"
        ) from exc


def convert_official_checkpoint(
    ckpt_path: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    text_model: str = "allenai/scibert_scivocab_uncased",
    tokenizer: PreTrainedTokenizerBase | str | os.PathLike[str] | None = None,
) -> Path:
    """Convert an official CLaSP Lightning checkpoint into a ``from_pretrained`` folder.

    Parameters
    ----------
    ckpt_path
        ``model_finetuned_s30_m05.ckpt`` (a Lightning checkpoint with ``state_dict``) or a bare
        state dict saved with ``torch.save``.
    out_dir
        Folder to write (created if needed): ``config.json``, ``model.safetensors`` and
        ``tokenizer/``. Load it with ``ClaspModel.from_pretrained(out_dir)``.
    text_model
        Recorded as ``text_model`` in the config; also where the tokenizer is loaded from when
        ``tokenizer`` is not given.
    tokenizer
        A tokenizer object or a folder holding one (the SciBERT uncased vocabulary for the official
        model). A folder with only ``vocab.txt`` gives a lower-casing WordPiece BERT tokenizer.

    Returns
    -------
    pathlib.Path
        ``out_dir``.

    Raises
    ------
    CheckpointConversionError
        If the file cannot be read safely, or any key is unknown or missing, or a shape differs
        from the official architecture; the message names the keys.
    ModelLoadError
        If the tokenizer cannot be obtained (e.g. offline and not cached).
    """
    from matminer_clasp.model import ClaspModel

    ckpt_path = Path(ckpt_path)
    state = _read_state_dict(ckpt_path)
    bert = BertModel(bert_config_from_state(state, OFFICIAL_BERT_PREFIX), add_pooling_layer=True)
    tok = _load_tokenizer(tokenizer, text_model)
    if len(tok) > bert.config.vocab_size:
        raise CheckpointConversionError(
            f"the tokenizer has {len(tok)} tokens but the checkpoint's BERT vocabulary only "
            f"{bert.config.vocab_size}: wrong tokenizer for this checkpoint"
        )
    if len(tok) != bert.config.vocab_size:
        warnings.warn(
            f"the tokenizer has {len(tok)} tokens, the checkpoint's BERT vocabulary "
            f"{bert.config.vocab_size} (SciBERT uncased: 31090): is it the right tokenizer?",
            stacklevel=2,
        )
    # official: 64 tokens (fact sheet section 3); never more than the encoder has positions for
    max_length = min(ClaspConfig().max_length, bert.config.max_position_embeddings)
    config = ClaspConfig(
        text_model=text_model, text_pooling="pooler", cell="conventional", max_length=max_length
    )
    model = ClaspModel(config, text_encoder=bert, tokenizer=tok)
    expected = model.state_dict()
    pairs = official_prefix_map(config)

    renamed: dict[str, torch.Tensor] = {}
    unknown = []
    for key, tensor in state.items():
        ours = _rename(key, pairs)
        if ours is None or ours not in expected:
            unknown.append(key)
        else:
            renamed[ours] = tensor
    missing = [_rename(k, pairs, reverse=True) or k for k in expected if k not in renamed]
    if unknown or missing:
        raise CheckpointConversionError(
            f"{ckpt_path} does not match the official CLaSP architecture: "
            f"{len(unknown)} unknown keys {unknown[:10]}, {len(missing)} missing keys "
            f"{missing[:10]}"
        )
    wrong = [
        f"{_rename(k, pairs, reverse=True)}: {tuple(v.shape)} (expected {tuple(expected[k].shape)})"
        for k, v in renamed.items()
        if tuple(v.shape) != tuple(expected[k].shape)
    ]
    if wrong:
        raise CheckpointConversionError(
            f"{ckpt_path}: wrong tensor shapes: {'; '.join(wrong[:10])}"
        )
    nonfinite = [
        _rename(k, pairs, reverse=True) for k, v in renamed.items()
        if v.is_floating_point() and not bool(torch.isfinite(v).all())
    ]
    if nonfinite:
        raise CheckpointConversionError(f"{ckpt_path}: NaN or infinite values in {nonfinite[:10]}")
    model.load_state_dict(
        {k: (v.float() if v.is_floating_point() else v) for k, v in renamed.items()}, strict=True
    )
    model.eval()
    out = Path(out_dir)
    model.save_pretrained(out)
    return out
