"""matminer-clasp: CLaSP crystal-text embeddings for matminer and pymatgen.

Public names are imported lazily, so ``import matminer_clasp`` stays fast and the optional parts
(plotting, faiss, training) load only when used.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "ClaspConfig": "matminer_clasp.config",
    "ClaspModel": "matminer_clasp.model.clasp",
    "ClaspTextModel": "matminer_clasp.model.text_model",
    "CrystalGraphBuilder": "matminer_clasp.graph",
    "ClaspFeaturizer": "matminer_clasp.featurizers",
    "ClaspStructureFeaturizer": "matminer_clasp.featurizers",
    "ClaspTextFeaturizer": "matminer_clasp.featurizers",
    "ZeroShotClassifier": "matminer_clasp.zeroshot",
    "EmbeddingIndex": "matminer_clasp.index",
    "screen": "matminer_clasp.screening",
    "plot_embedding_map": "matminer_clasp.plot",
    "convert_official_checkpoint": "matminer_clasp.convert",
    "errors": "matminer_clasp.errors",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'matminer_clasp' has no attribute {name!r}")
    module = importlib.import_module(module_name)
    return module if name == "errors" else getattr(module, name)


def __dir__() -> list[str]:
    return sorted(__all__)
