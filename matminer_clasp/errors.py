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


class ConfigError(ClaspError, ValueError):
    """Fields of a :class:`~matminer_clasp.config.ClaspConfig` have the wrong type or range.

    Every bad field is reported at once: ``problems`` maps each field name to its message, and
    the message joins them with ``"; "`` (one line).
    """

    def __init__(self, problems: dict[str, str]) -> None:
        self.problems = dict(problems)
        super().__init__("; ".join(self.problems.values()))


class IndexLoadError(ClaspError, OSError):
    """An index folder's files are missing, unreadable or hold bad vectors (NaN, zero, not unit).

    The message names the file; ``EmbeddingIndex.load(folder, repair=True)`` (CLI ``--repair``)
    drops or re-normalises the bad rows, and rebuilding the index replaces it.
    """


class RunExistsError(ClaspError, FileExistsError):
    """``train`` was pointed, without resuming, at a folder that already holds a run."""


class CorruptWeightsError(ModelLoadError):
    """A tensor of ``model.safetensors`` is broken; the message names the file and the tensor.

    Not finite, implausibly large, of the wrong dtype, or failing its stored checksum.
    """


__all__ = [
    "ClaspError",
    "InvalidStructureError",
    "InvalidTextError",
    "InputError",
    "EncodingError",
    "ModelLoadError",
    "CheckpointConversionError",
    "DatasetError",
    "ConfigError",
    "IndexLoadError",
    "CorruptWeightsError",
    "RunExistsError",
]
