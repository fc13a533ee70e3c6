"""Model code: the crystal tower, the text tower, their heads and ``ClaspModel``."""

from matminer_clasp.model.clasp import ClaspModel

__all__ = ["ClaspModel"]
