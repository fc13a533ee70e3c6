"""Training and evaluation of CLaSP models.

``fit(config)`` trains (see :mod:`.trainer`; checkpoints and saved models in
:mod:`.checkpoint`, the lr schedule in :mod:`.optimization`); ``evaluate_model`` /
``evaluate_cli`` evaluate (see :mod:`.evaluate`, with :mod:`.keywords`, :mod:`.metrics` and
:mod:`.report`); losses are in :mod:`.losses`; data loading in :mod:`.data`.
Names are imported lazily so that ``import matminer_clasp.train.data`` stays light.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "fit": "matminer_clasp.train.trainer",
    "TrainConfig": "matminer_clasp.train.config",
    "make_loss": "matminer_clasp.train.losses",
    "evaluate": "matminer_clasp.train.evaluate",
    "evaluate_model": "matminer_clasp.train.evaluate",
    "evaluate_cli": "matminer_clasp.train.evaluate",
    "write_report": "matminer_clasp.train.evaluate",
    "keyword_counts": "matminer_clasp.train.evaluate",
    "DEFAULT_KEYWORDS": "matminer_clasp.train.evaluate",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'matminer_clasp.train' has no attribute {name!r}")
    module = importlib.import_module(module_name)
    return module if name == "evaluate" else getattr(module, name)


def __dir__() -> list[str]:
    return sorted(__all__)
