"""What makes a text an input the model can embed, before and after tokenisation.

A text is rejected (with an :class:`~matminer_clasp.errors.InvalidTextError` naming its index)
when it is not a string, when it has no visible character (empty, whitespace, zero-width or
control characters only; :func:`check_text`), or when the tokenizer turns it into no content at
all: only the framing tokens (``[CLS]``/``[SEP]``/padding) and ``[UNK]`` (:func:`empty_token_rows`;
e.g. emoji-only text with a vocabulary that has no emoji). Such a text would otherwise get an
ordinary-looking vector that means nothing and ranks or classifies like a real query.
"""

from __future__ import annotations

import unicodedata
from typing import Any

import torch

from matminer_clasp.errors import InvalidTextError

#: Unicode categories that show nothing: controls, format (zero-width) and separators.
_INVISIBLE = ("Cc", "Cf", "Zs", "Zl", "Zp", "Cn", "Co", "Cs")


def check_text(text: Any, index: int | None = None) -> None:
    """Raise :class:`InvalidTextError` unless ``text`` is a string with a visible character."""
    where = "" if index is None else f"text {index}: "
    if not isinstance(text, str):
        raise InvalidTextError(f"{where}expected a string, got {type(text).__name__}")
    if not text.strip():
        raise InvalidTextError(f"{where}the text is empty or whitespace only")
    if all(unicodedata.category(ch) in _INVISIBLE for ch in text):
        raise InvalidTextError(
            f"{where}the text has no visible character (only zero-width, control or "
            f"whitespace characters: {text[:20]!r})"
        )


def content_free_ids(tokenizer: Any) -> torch.Tensor:
    """Token ids that carry no content: the framing of an empty text, padding and ``[UNK]``.

    Works for ``transformers`` tokenizers and the plain ``tokenizers`` query tokenizer alike:
    the framing ids are those of the tokenised empty string.
    """
    ids = set(tokenizer([""], padding=True, truncation=True, max_length=8,
                        return_tensors="pt")["input_ids"][0].tolist())
    for owner in (tokenizer, getattr(tokenizer, "tokenizer", None)):
        for name in ("unk_token_id", "pad_token_id", "pad_id"):
            value = getattr(owner, name, None)
            if isinstance(value, int):
                ids.add(value)
    inner = getattr(tokenizer, "tokenizer", None)  # tokenizers.Tokenizer of the query path
    unk = getattr(getattr(inner, "model", None), "unk_token", None)
    if isinstance(unk, str) and inner.token_to_id(unk) is not None:
        ids.add(int(inner.token_to_id(unk)))
    return torch.tensor(sorted(ids), dtype=torch.long)


def empty_token_rows(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, free_ids: torch.Tensor
) -> list[int]:
    """Rows of a tokenised batch that hold no content token (see :func:`content_free_ids`)."""
    content = attention_mask.bool() & ~torch.isin(input_ids, free_ids.to(input_ids.device))
    return torch.nonzero(~content.any(dim=1)).flatten().tolist()


__all__ = ["check_text", "content_free_ids", "empty_token_rows"]
