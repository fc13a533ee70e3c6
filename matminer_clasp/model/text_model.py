"""Texts to vectors: the one text loop, and a text-only model that loads in seconds.

:class:`TextEncodingMixin` holds ``tokenize``, ``embed_tokens`` and ``encode_texts`` (batching,
length sorting, progress bar, normalisation). :class:`~matminer_clasp.ClaspModel` and
:class:`ClaspTextModel` both use it, so a query embedded by either is the same vector.

:class:`ClaspTextModel` is the text half of a saved CLaSP model: the tokenizer, the frozen text
encoder and the text head, read from the same ``model.safetensors`` (only its ``text_tower.*``
tensors). Importing and loading it needs torch and transformers only; never torch_geometric,
pymatgen, matminer or the crystal towers. Queries against an existing index
(:meth:`EmbeddingIndex.search <matminer_clasp.EmbeddingIndex.search>`, ``matminer-clasp screen
--index``, the bundled AMCSD index) take this path.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from matminer_clasp.config import ClaspConfig
from matminer_clasp.errors import EncodingError, InvalidTextError
from matminer_clasp.hub import resolve_text_model
from matminer_clasp.model.text import TextTower
from matminer_clasp.model.text_checks import check_text, content_free_ids, empty_token_rows

if TYPE_CHECKING:
    from pathlib import Path

    from transformers import PreTrainedModel, PreTrainedTokenizerBase

#: Prefix of the text tower's tensors in ``model.safetensors``.
TEXT_TOWER_PREFIX = "text_tower."


def want_progress_bar(flag: bool | None, n: int | None, batch_size: int) -> bool:
    """``show_progress_bar=None`` means: show it for more than four batches (or unknown ``n``)."""
    if flag is not None:
        return flag
    return n is None or n > 4 * batch_size


def build_text_encoder(config: ClaspConfig) -> PreTrainedModel:
    """The ``transformers`` encoder of ``config``: its architecture, or the installed weights.

    With ``text_weights="checkpoint"`` and a stored ``text_config`` only the architecture is
    built (the weights come from ``model.safetensors``); otherwise ``config.text_model`` is
    loaded with ``AutoModel.from_pretrained``.
    """
    from transformers import AutoModel

    if config.text_config is not None and config.text_weights == "checkpoint":
        from transformers import AutoConfig

        cfg = dict(config.text_config)
        text_cfg = AutoConfig.for_model(cfg.pop("model_type"), **cfg)
        return AutoModel.from_config(text_cfg)
    return AutoModel.from_pretrained(resolve_text_model(config.text_model))


class TextEncodingMixin:
    """Text methods shared by :class:`~matminer_clasp.ClaspModel` and :class:`ClaspTextModel`.

    The host is an ``nn.Module`` with ``config``, ``tokenizer``, ``text_tower`` and
    ``_device()``.
    """

    config: ClaspConfig
    tokenizer: PreTrainedTokenizerBase
    text_tower: TextTower

    def _normalize(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.normalize(x, p=2, dim=1, eps=self.config.normalize_eps)

    def tokenize(self, texts: Sequence[str], max_length: int | None = None) -> dict[str, Any]:
        """Tokenise texts the way the model expects (padding to the longest, truncation)."""
        return self.tokenizer(
            list(texts),
            padding=True,
            truncation=True,
            max_length=max_length or self.config.max_length,
            return_tensors="pt",
        )

    def embed_tokens(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, normalize: bool = True
    ) -> torch.Tensor:
        """Text embeddings ``(B, dim)`` of tokenised texts."""
        out = self.text_tower(input_ids, attention_mask)
        return self._normalize(out) if normalize else out

    def embed_text_features(self, features: torch.Tensor, normalize: bool = True) -> torch.Tensor:
        """Text embeddings from pooled encoder features (as cached for a frozen text encoder)."""
        out = self.text_tower.head(features)
        return self._normalize(out) if normalize else out

    @torch.inference_mode()
    def encode_texts(
        self,
        texts: str | Sequence[str],
        batch_size: int = 64,
        show_progress_bar: bool | None = None,
        device: str | torch.device | None = None,
        normalize_embeddings: bool = True,
    ) -> np.ndarray:
        """Embed texts (sorted by length internally, returned in input order).

        Parameters
        ----------
        texts
            One string (gives a ``(1, dim)`` array) or a sequence of strings.
        batch_size
            Texts per forward pass.
        show_progress_bar
            ``None``: only for more than four batches.
        device
            Run on this device (the model is moved there); default: where the model is.
        normalize_embeddings
            Return unit vectors (the default; cosines are then dot products).

        Raises
        ------
        InvalidTextError
            For a non-string or an empty / whitespace-only text, naming its index.
        """
        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        for i, text in enumerate(texts):
            check_text(text, i)
        device = torch.device(device) if device is not None else self._device()  # type: ignore[attr-defined]
        module: nn.Module = self  # type: ignore[assignment]
        was_training = module.training
        module.eval().to(device)
        out = np.empty((len(texts), self.config.embedding_dim), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")
        bar = tqdm(
            total=len(texts),
            desc="Embedding texts",
            unit="text",
            disable=not want_progress_bar(show_progress_bar, len(texts), batch_size),
        )
        try:
            for start in range(0, len(texts), batch_size):
                idx = order[start : start + batch_size]
                tokens = self.tokenize([texts[i] for i in idx]).to(device)
                self._check_tokens(tokens, idx, texts)
                emb = self.embed_tokens(
                    tokens["input_ids"], tokens["attention_mask"], normalize_embeddings
                )
                out[idx] = emb.float().cpu().numpy()
                bar.update(len(idx))
        finally:
            bar.close()
            module.train(was_training)
        bad = ~np.isfinite(out).all(axis=1)
        if bad.any():
            raise EncodingError(
                f"the model returned NaN or infinity for texts {np.flatnonzero(bad)[:5].tolist()}"
                "; its weights are broken: re-download or re-save the model"
            )
        return out

    def _check_tokens(self, tokens: Any, idx: np.ndarray, texts: list[str]) -> None:
        """Refuse texts the tokenizer turned into framing and ``[UNK]`` tokens only."""
        free = getattr(self, "_content_free_ids", None)
        if free is None:
            free = self._content_free_ids = content_free_ids(self.tokenizer)
        rows = empty_token_rows(tokens["input_ids"], tokens["attention_mask"], free)
        if rows:
            i = int(min(idx[r] for r in rows))
            raise InvalidTextError(
                f"text {i}: the tokenizer knows none of its characters (only unknown tokens: "
                f"{texts[i][:20]!r}); write it with words"
            )


class ClaspTextModel(TextEncodingMixin, nn.Module):
    """The text half of a CLaSP model: ``encode_texts`` without the crystal side.

    Its vectors equal those of the full :class:`~matminer_clasp.ClaspModel` loaded from the same
    folder (same tensors, same code). Use it to query an index or precomputed embeddings.

    Parameters
    ----------
    config
        The model's configuration (the crystal fields are ignored).
    text_encoder, tokenizer
        As for :class:`~matminer_clasp.ClaspModel`.

    Examples
    --------
    >>> text_model = ClaspTextModel.from_pretrained()          # doctest: +SKIP
    >>> text_model.encode_texts(["garnet"]).shape              # doctest: +SKIP
    (1, 768)
    """

    def __init__(
        self,
        config: ClaspConfig,
        text_encoder: PreTrainedModel | Any | None = None,
        tokenizer: PreTrainedTokenizerBase | Any | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        if text_encoder is None:
            text_encoder = build_text_encoder(config)
        if tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(resolve_text_model(config.text_model))
        self.tokenizer = tokenizer
        self.text_tower = TextTower(config, text_encoder)

    @classmethod
    def from_parts(
        cls, config: ClaspConfig, tokenizer_dir: Path | None
    ) -> ClaspTextModel | None:
        """Build the model for loading (weights follow) on the plain-torch query path, or None.

        :class:`~matminer_clasp.model.bert.QueryBert` and the ``tokenizers`` tokenizer replace
        transformers' BERT and fast tokenizer when they compute the same thing (see
        :func:`~matminer_clasp.model.bert.supports`); ``None`` tells the loader to build it with
        transformers instead.
        """
        from matminer_clasp.model.bert import (
            QueryBert,
            load_query_bert,
            load_query_tokenizer,
            supports,
        )

        if config.text_weights == "external":
            source = resolve_text_model(config.text_model)
            bert = load_query_bert(source) if os.path.isdir(source) else None
            tokenizer = load_query_tokenizer(source, config.max_length) if bert else None
        else:
            text_config = config.text_config or {}
            bert = QueryBert(text_config) if supports(text_config) else None
            tokenizer = (
                load_query_tokenizer(tokenizer_dir, config.max_length)
                if bert is not None and tokenizer_dir is not None
                else None
            )
        if bert is not None and tokenizer is not None:
            return cls(config, text_encoder=bert, tokenizer=tokenizer)
        return None

    def _device(self) -> torch.device:
        param = next(self.text_tower.head.parameters(), None)
        return param.device if param is not None else torch.device("cpu")

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        return self._device()

    @staticmethod
    def from_pretrained(
        name_or_path: str | os.PathLike[str] | None = None, **kwargs: Any
    ) -> ClaspTextModel:
        """Load the text half of a saved model (arguments of ``ClaspModel.from_pretrained``)."""
        from matminer_clasp.model.io import load_text_model

        return load_text_model(name_or_path, **kwargs)

