"""Model code: the crystal tower, the text tower, their heads, ``ClaspModel`` and ensembles.

Names are imported lazily, so ``matminer_clasp.model.text_model`` (the text-only path) can be
imported without the crystal side (torch_geometric, pymatgen).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ClaspModel": "matminer_clasp.model.clasp",
    "ClaspTextModel": "matminer_clasp.model.text_model",
    "merge_models": "matminer_clasp.model.ensemble",
    "interpolate_models": "matminer_clasp.model.interpolation",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'matminer_clasp.model' has no attribute {name!r}")
    return getattr(importlib.import_module(module_name), name)
