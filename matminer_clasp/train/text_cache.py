"""Pooled features of the frozen text encoder, computed once per distinct caption.

With ``freeze_text`` the text encoder never changes during training, so the trainer runs it once
per distinct caption (eval mode: no dropout) and trains only the text head on the cached
features. :func:`text_features` stores them as safetensors with a fingerprint of the encoder
weights, the pooling and the captions, and reuses the file only when the fingerprint matches and
the features are readable, of the right shape and finite (else they are recomputed). The file is
written under a temporary name and renamed, so a reader never sees half of it.

Runs of one recipe (ensemble members, seeds, stage-2 draws) caption the same pairs with the same
encoder, so their features are equal: the trainer also offers the caches of sibling run folders
(``sources``), and a run copies a matching one instead of running the encoder again. A sibling
is validated exactly like the run's own file; one that does not match is left alone.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save
from tqdm.auto import tqdm

from matminer_clasp.atomic import write_file_atomic
from matminer_clasp.model.clasp import ClaspModel

__all__ = ["TEXT_FEATURES_NAME", "text_features"]

log = logging.getLogger(__name__)

#: File name of the cache inside a run folder.
TEXT_FEATURES_NAME = "text_features.safetensors"


def _text_fingerprint(model: ClaspModel, captions: Sequence[str]) -> str:
    h = hashlib.sha256()
    cfg = model.config
    h.update(f"{cfg.text_model}|{cfg.text_pooling}|{cfg.max_length}\n".encode())
    for name, tensor in sorted(model.text_tower.bert.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    for caption in captions:
        h.update(caption.encode() + b"\0")
    return h.hexdigest()


@torch.inference_mode()
def text_features(
    model: ClaspModel,
    captions: Sequence[str],
    device: torch.device,
    cache_file: Path | None = None,
    batch_size: int = 256,
    show_progress_bar: bool = False,
    sources: Sequence[Path] = (),
) -> torch.Tensor:
    """Pooled frozen-encoder features ``(n, hidden)`` of ``captions``, computed once.

    Parameters
    ----------
    model
        The model whose text encoder (``model.text_tower``) embeds the captions.
    captions
        Distinct captions.
    device
        Where the encoder runs and the features are returned.
    cache_file
        Optional safetensors file: read when its fingerprint matches, else (re)written.
    batch_size
        Captions per forward pass (length-sorted, so padding stays short).
    show_progress_bar
        Show a tqdm bar.
    sources
        Other cache files to reuse when one matches (e.g. those of sibling runs); checked after
        ``cache_file``, in order. A match is copied to ``cache_file``.

    Returns
    -------
    torch.Tensor
        ``(len(captions), hidden)`` float32 features on ``device``, row ``i`` for caption ``i``.
    """
    fingerprint = _text_fingerprint(model, captions)
    if cache_file is not None and cache_file.is_file():
        cached = _read_cache(cache_file, fingerprint, len(captions))
        if cached is not None:
            return cached.to(device)
    for source in sources:
        if not source.is_file() or (cache_file is not None
                                    and source.resolve() == cache_file.resolve()):
            continue
        cached = _read_cache(source, fingerprint, len(captions))
        if cached is not None:
            log.info("text features of %d captions reused from %s", len(captions), source)
            if cache_file is not None:
                _write_cache(cache_file, cached, fingerprint)
            return cached.to(device)
    tower = model.text_tower
    was_training = tower.training
    tower.eval().to(device)
    out = None
    order = np.argsort([-len(c) for c in captions], kind="stable")
    try:
        for start in tqdm(range(0, len(captions), batch_size), desc="Caching text features",
                          disable=not show_progress_bar):
            idx = order[start : start + batch_size]
            tokens = model.tokenize([captions[i] for i in idx]).to(device)
            feats = tower.pooled_features(tokens["input_ids"], tokens["attention_mask"]).float()
            if out is None:
                out = torch.empty(len(captions), feats.shape[1], device=device)
            out[torch.as_tensor(idx, device=device)] = feats
    finally:
        tower.train(was_training)
    if cache_file is not None:
        _write_cache(cache_file, out, fingerprint)
    return out


def _write_cache(cache_file: Path, features: torch.Tensor, fingerprint: str) -> None:
    """Write the features under a temporary name, then rename (readers never see half)."""
    write_file_atomic(cache_file, save({"features": features.cpu().contiguous()},
                                       metadata={"fingerprint": fingerprint}))


def _read_cache(cache_file: Path, fingerprint: str, n: int) -> torch.Tensor | None:
    """The cached features if the file is readable, matches and is sound; else ``None``."""
    try:
        with safe_open(str(cache_file), framework="pt") as f:
            if (f.metadata() or {}).get("fingerprint") != fingerprint:
                return None
            features = f.get_tensor("features")
    except Exception as exc:  # noqa: BLE001 - a damaged cache is recomputed, never trusted
        log.warning("ignoring unreadable text-feature cache %s (%s)", cache_file, exc)
        return None
    if features.ndim != 2 or len(features) != n or not bool(torch.isfinite(features).all()):
        log.warning("ignoring damaged text-feature cache %s (shape %s or non-finite values)",
                    cache_file, tuple(features.shape))
        return None
    return features
