"""Checks of the tensors read from ``model.safetensors``: never trust the bytes on disk.

safetensors validates its header, not the numbers: a tensor full of NaN, or bytes overwritten
inside the tensor data, load without a word and turn every embedding into NaN or noise.
:func:`check_tensors` refuses such a file with a
:class:`~matminer_clasp.errors.CorruptWeightsError` naming the file and the tensor:

- every tensor has the dtype kind the model declares (floating point / the exact integer type);
- every floating-point value is finite and at most :data:`MAX_ABS_WEIGHT` in magnitude (a trained
  CLaSP model stays far below; random bytes read as floats mostly do not);
- when the file carries per-tensor CRC-32 checksums (written by ``save_pretrained`` since this
  check exists, under the metadata key :data:`CHECKSUM_KEY`), every tensor read matches its
  checksum, which catches any overwritten byte.

One pass over the tensors (an ``abs().max()`` and a CRC-32 each) costs about 40 ms for the
bundled 22 MB model, once per load.
"""

from __future__ import annotations

import json
import math
import zlib
from pathlib import Path

import torch

from matminer_clasp.errors import CorruptWeightsError

#: safetensors metadata key holding ``{tensor name: CRC-32 of its bytes}`` as JSON.
CHECKSUM_KEY = "clasp_crc32"

#: Largest magnitude a stored weight may have (the bundled model's largest is about 35).
MAX_ABS_WEIGHT = 1e5


def _crc32(tensor: torch.Tensor) -> int:
    data = tensor.detach().cpu().contiguous().reshape(-1)
    if data.numel() == 0:
        return 0
    return zlib.crc32(data.view(torch.uint8).numpy())


def tensor_checksums(state: dict[str, torch.Tensor]) -> str:
    """The JSON ``{name: CRC-32}`` of ``state`` stored in the safetensors metadata on saving."""
    return json.dumps({key: _crc32(t) for key, t in sorted(state.items())}, sort_keys=True)


def _read_checksums(path: Path, metadata: dict[str, str] | None) -> dict[str, int] | None:
    text = (metadata or {}).get(CHECKSUM_KEY)
    if text is None:
        return None
    try:
        sums = json.loads(text)
    except json.JSONDecodeError:
        sums = None
    if not isinstance(sums, dict):
        raise CorruptWeightsError(f"{path}: the checksum table in its header is unreadable; "
                                  "re-download or re-save the model")
    return sums


def check_tensors(
    path: Path,
    state: dict[str, torch.Tensor],
    expected: dict[str, torch.Tensor],
    metadata: dict[str, str] | None,
) -> None:
    """Raise :class:`CorruptWeightsError` unless every tensor of ``state`` is sound.

    Parameters
    ----------
    path
        The weights file (for messages).
    state
        The tensors read from it (already matched to ``expected`` by key and shape).
    expected
        The model's own ``state_dict()``, whose dtypes the file must agree with.
    metadata
        The file's safetensors metadata (may hold :data:`CHECKSUM_KEY`).
    """
    sums = _read_checksums(path, metadata)
    fix = "re-download or re-save the model"
    for key, tensor in state.items():
        want = expected[key]
        if tensor.is_floating_point() != want.is_floating_point() or (
            not want.is_floating_point() and tensor.dtype != want.dtype
        ):
            raise CorruptWeightsError(
                f"{path}: tensor {key!r} is stored as {tensor.dtype}, but the model declares "
                f"{want.dtype}; {fix}"
            )
        if sums is not None and key in sums and _crc32(tensor) != sums[key]:
            raise CorruptWeightsError(
                f"{path}: tensor {key!r} does not match its checksum (the file was modified or "
                f"damaged after saving); {fix}"
            )
        if not tensor.is_floating_point() or tensor.numel() == 0:
            continue
        largest = float(tensor.abs().max())  # NaN propagates, so one pass finds NaN, inf, huge
        if largest <= MAX_ABS_WEIGHT:
            continue
        if math.isnan(largest) or bool(torch.isnan(tensor).any()):
            what = "NaN values"
        elif math.isinf(largest):
            what = "infinite values"
        else:
            what = f"an implausible value ({largest:.3g}; trained weights stay below "
            what += f"{MAX_ABS_WEIGHT:g})"
        raise CorruptWeightsError(f"{path}: tensor {key!r} holds {what}; {fix}")


__all__ = ["CHECKSUM_KEY", "MAX_ABS_WEIGHT", "check_tensors", "tensor_checksums"]
