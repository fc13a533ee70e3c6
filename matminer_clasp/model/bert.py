"""An inference-only BERT encoder in plain torch, for queries that must answer in seconds.

Importing ``transformers``' BERT modelling code takes about 3 s (it pulls in its generation,
integration and loss modules); a text query needs none of it. :class:`QueryBert` computes the
same function as ``transformers.BertModel`` in eval mode (absolute position embeddings, GELU,
post-LayerNorm, no dropout) from the same tensors, under the same state-dict keys, and
:func:`load_query_tokenizer` reads the same ``tokenizer.json`` with the ``tokenizers`` library
that transformers' fast tokenizer wraps. ``tests/test_text_model.py`` checks that both give
transformers' vectors. Anything else (another architecture, a slow tokenizer) goes through
transformers as before: see :func:`supports`.

Training, the converter and :class:`~matminer_clasp.ClaspModel` always use transformers.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

#: Fields of a BERT config that :class:`QueryBert` reads.
_FIELDS = ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
           "intermediate_size", "max_position_embeddings", "type_vocab_size", "layer_norm_eps")


def supports(text_config: dict[str, Any]) -> bool:
    """True if :class:`QueryBert` computes exactly what transformers does for this config."""
    return (
        text_config.get("model_type") == "bert"
        and text_config.get("hidden_act", "gelu") == "gelu"
        and text_config.get("position_embedding_type", "absolute") == "absolute"
        and not text_config.get("is_decoder", False)
        and all(isinstance(text_config.get(k), (int, float)) for k in _FIELDS)
    )


class _Embeddings(nn.Module):
    def __init__(self, c: SimpleNamespace) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(c.vocab_size, c.hidden_size)
        self.position_embeddings = nn.Embedding(c.max_position_embeddings, c.hidden_size)
        self.token_type_embeddings = nn.Embedding(c.type_vocab_size, c.hidden_size)
        self.LayerNorm = nn.LayerNorm(c.hidden_size, eps=c.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = (
            self.word_embeddings(input_ids)
            + self.position_embeddings(positions)[None]
            + self.token_type_embeddings.weight[0]  # token_type_ids = 0, as transformers' default
        )
        return self.LayerNorm(x)


class _SelfAttention(nn.Module):
    def __init__(self, c: SimpleNamespace) -> None:
        super().__init__()
        self.heads = c.num_attention_heads
        self.query = nn.Linear(c.hidden_size, c.hidden_size)
        self.key = nn.Linear(c.hidden_size, c.hidden_size)
        self.value = nn.Linear(c.hidden_size, c.hidden_size)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:
            return t.view(b, n, self.heads, d // self.heads).transpose(1, 2)

        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        scores = q @ k.transpose(-1, -2) / math.sqrt(d // self.heads) + bias
        out = torch.softmax(scores, dim=-1) @ v
        return out.transpose(1, 2).reshape(b, n, d)


class _DenseNorm(nn.Module):
    """``LayerNorm(dense(x) + residual)``: BERT's attention output and layer output blocks."""

    def __init__(self, d_in: int, d_out: int, eps: float) -> None:
        super().__init__()
        self.dense = nn.Linear(d_in, d_out)
        self.LayerNorm = nn.LayerNorm(d_out, eps=eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class _Attention(nn.Module):
    def __init__(self, c: SimpleNamespace) -> None:
        super().__init__()
        self.self = _SelfAttention(c)
        self.output = _DenseNorm(c.hidden_size, c.hidden_size, c.layer_norm_eps)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        return self.output(self.self(x, bias), x)


class _Intermediate(nn.Module):
    def __init__(self, c: SimpleNamespace) -> None:
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.intermediate_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.gelu(self.dense(x))


class _Layer(nn.Module):
    def __init__(self, c: SimpleNamespace) -> None:
        super().__init__()
        self.attention = _Attention(c)
        self.intermediate = _Intermediate(c)
        self.output = _DenseNorm(c.intermediate_size, c.hidden_size, c.layer_norm_eps)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = self.attention(x, bias)
        return self.output(self.intermediate(x), x)


class _Encoder(nn.Module):
    def __init__(self, c: SimpleNamespace) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_Layer(c) for _ in range(c.num_hidden_layers))


class _Pooler(nn.Module):
    def __init__(self, c: SimpleNamespace) -> None:
        super().__init__()
        self.dense = nn.Linear(c.hidden_size, c.hidden_size)


class QueryBert(nn.Module):
    """``transformers.BertModel`` (eval mode) re-expressed in plain torch, same tensor names.

    Parameters
    ----------
    text_config
        The BERT config as a dict (``config.json`` of the encoder, or ``ClaspConfig.text_config``).
    """

    def __init__(self, text_config: dict[str, Any]) -> None:
        super().__init__()
        c = SimpleNamespace(**{k: text_config[k] for k in _FIELDS})
        self.config = c
        self.embeddings = _Embeddings(c)
        self.encoder = _Encoder(c)
        self.pooler = _Pooler(c)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None
    ) -> SimpleNamespace:
        """``last_hidden_state`` ``(B, n, hidden)`` and ``pooler_output`` ``(B, hidden)``."""
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        x = self.embeddings(input_ids)
        bias = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
        for layer in self.encoder.layer:
            x = layer(x, bias)
        pooled = torch.tanh(self.pooler.dense(x[:, 0]))
        return SimpleNamespace(last_hidden_state=x, pooler_output=pooled)


def load_query_bert(folder: str | os.PathLike[str]) -> QueryBert | None:
    """A :class:`QueryBert` with the weights of a transformers BERT folder, or ``None``.

    ``None`` when the folder is not a supported BERT saved as safetensors (the caller then
    uses transformers).
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    try:
        text_config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return None
    weights = folder / "model.safetensors"
    if not supports(text_config) or not weights.is_file():
        return None
    model = QueryBert(text_config)
    state = {k.removeprefix("bert."): v for k, v in load_file(weights).items()}
    state.pop("embeddings.position_ids", None)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        return None
    return model.eval()


def load_query_tokenizer(folder: str | os.PathLike[str], max_length: int) -> Any:
    """A callable tokenizer like transformers' fast tokenizer of ``folder``, or ``None``.

    It reads ``tokenizer.json`` with the ``tokenizers`` library and takes the pad token from
    ``special_tokens_map.json`` / ``tokenizer_config.json``; ``None`` when those are missing.
    """
    folder = Path(folder)
    if not (folder / "tokenizer.json").is_file():
        return None
    from tokenizers import Tokenizer

    pad = None
    for name in ("special_tokens_map.json", "tokenizer_config.json"):
        try:
            token = json.loads((folder / name).read_text()).get("pad_token")
        except (OSError, ValueError):
            continue
        pad = token.get("content") if isinstance(token, dict) else token
        if pad:
            break
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    pad_id = tokenizer.token_to_id(pad) if pad else None
    if pad_id is None:
        return None
    return _QueryTokenizer(tokenizer, pad, pad_id, max_length)


class _QueryTokenizer:
    """``tokenizer(texts, padding=True, truncation=True, max_length=..., return_tensors="pt")``."""

    def __init__(self, tokenizer: Any, pad: str, pad_id: int, max_length: int) -> None:
        self.tokenizer = tokenizer
        self.pad, self.pad_id, self.max_length = pad, pad_id, max_length

    def __call__(self, texts: list[str], max_length: int | None = None, **_: Any) -> Any:
        tok = self.tokenizer
        tok.enable_truncation(max_length or self.max_length)
        tok.enable_padding(pad_id=self.pad_id, pad_token=self.pad)
        enc = tok.encode_batch(list(texts))
        return _Tokens(
            input_ids=torch.tensor([e.ids for e in enc], dtype=torch.long),
            attention_mask=torch.tensor([e.attention_mask for e in enc], dtype=torch.long),
        )


class _Tokens(dict):
    """A dict of tensors with ``.to(device)``, like transformers' ``BatchEncoding``."""

    def to(self, device: Any) -> _Tokens:
        return _Tokens({k: v.to(device) for k, v in self.items()})
