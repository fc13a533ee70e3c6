"""Exceptions raised by matminer-clasp.

Every error a user is expected to catch derives from :class:`ClaspError`; each also derives from
the built-in exception a caller would naturally catch (``ValueError`` for bad input, ``OSError``
for files and the network), so ``except ValueError`` keeps working in generic code.
"""

from __future__ import annotations


class ClaspError(Exception):
    """Base class of every matminer-clasp error."""


class InvalidStructureError(ClaspError, ValueError):
    """A structure cannot be turned into a crystal graph (molecule, empty, too large, NaN, ...)."""


class InvalidTextError(ClaspError, ValueError):
    """A text input is not a string or is empty."""


class InputError(ClaspError, ValueError):
    """An input path, folder or table cannot be used (missing, empty, no structure column)."""


class EncodingError(ClaspError, RuntimeError):
    """The model failed on an input it was given (an error in the forward pass, NaN output)."""


class ModelLoadError(ClaspError, OSError):
    """A model folder or Hub repository cannot be resolved or its weights cannot be loaded."""


class CheckpointConversionError(ClaspError, ValueError):
    """An official CLaSP checkpoint does not match the expected keys or shapes."""


class DatasetError(ClaspError, ValueError):
    """A training corpus cannot be read (missing columns, no usable pairs, bad file)."""


__all__ = [
    "ClaspError",
    "InvalidStructureError",
    "InvalidTextError",
    "InputError",
    "EncodingError",
    "ModelLoadError",
    "CheckpointConversionError",
    "DatasetError",
]
