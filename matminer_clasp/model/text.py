"""Text tower: a frozen BERT-family ``transformers`` encoder, pooling and the text head."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from matminer_clasp.config import ClaspConfig
from matminer_clasp.model.heads import EnsembleTextHead, TextHead

if TYPE_CHECKING:
    from transformers import PreTrainedModel


class TextTower(nn.Module):
    """Encoder + pooling + :class:`TextHead`, producing unnormalised ``(B, embedding_dim)`` vectors.

    Parameters
    ----------
    config
        Supplies ``text_pooling``, ``freeze_text`` and the head sizes.
    bert
        Any ``transformers`` encoder whose output has ``last_hidden_state`` (and ``pooler_output``
        for ``text_pooling="pooler"``), or the plain-torch
        :class:`~matminer_clasp.model.bert.QueryBert` of the text-only path.
    """

    def __init__(self, config: ClaspConfig, bert: PreTrainedModel | Any) -> None:
        super().__init__()
        self.pooling = config.text_pooling
        if self.pooling == "pooler" and getattr(bert, "pooler", None) is None:
            raise ValueError(
                f"text model {type(bert).__name__} has no pooler layer; use text_pooling='cls' "
                "or 'mean'"
            )
        self.bert = bert
        if config.freeze_text:
            self.bert.requires_grad_(False)
        hidden = int(bert.config.hidden_size)
        self.head: nn.Module = (
            EnsembleTextHead(hidden, config)
            if config.members
            else TextHead(hidden, config.text_hidden_dim, config.embedding_dim,
                          config.text_head_layers)
        )

    def pooled_features(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """Return the pooled encoder output ``(B, hidden_size)`` (what a frozen tower caches)."""
        out = self.bert(input_ids=input_ids, attention_mask=attention_mask)
        if self.pooling == "pooler":
            return out.pooler_output
        hidden = out.last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Encode token ids into ``(B, embedding_dim)`` vectors (before L2 normalisation)."""
        return self.head(self.pooled_features(input_ids, attention_mask))
