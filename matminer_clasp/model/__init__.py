"""Model code: the crystal tower, the text tower, their heads, ``ClaspModel`` and ensembles."""

from matminer_clasp.model.clasp import ClaspModel
from matminer_clasp.model.ensemble import merge_models

__all__ = ["ClaspModel", "merge_models"]
