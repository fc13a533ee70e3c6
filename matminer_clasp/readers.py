"""Reading tables of structures from disk: :func:`read_table`.

Shared by the CLI (``embed``, ``index``, ``screen``, ... on a table) and by the training data
(``DataConfig(source="table")``), so that both accept the same files. This module only reads the
file into a ``pandas.DataFrame``; turning a column into structures stays with each caller, since
they report bad rows differently (the CLI keeps them as rows with an ``error``, training skips
them with a log line).
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pandas as pd

from matminer_clasp.errors import InputError

#: Suffixes :func:`read_table` reads (each may also end in ``.gz``, except parquet). Pickles
#: (``.pkl`` / ``.pickle``) only with ``allow_pickle=True``.
TABLE_SUFFIXES = (".parquet", ".pq", ".json", ".jsonl", ".ndjson", ".csv", ".pkl", ".pickle")


def read_table(path: str | os.PathLike[str], allow_pickle: bool = False) -> pd.DataFrame:
    """Read a ``.parquet``/``.pq``, ``.jsonl``/``.ndjson``, ``.json`` or ``.csv`` table.

    JSON, JSON-lines and CSV files may be gzip-compressed (``.csv.gz``, ...).

    Parameters
    ----------
    path
        The table file.
    allow_pickle
        Also read ``.pkl`` / ``.pickle`` files (with a warning). Unpickling runs whatever code
        the file holds, so a pickle named by a config file is refused unless the config says
        ``allow_pickle: true``; convert it to parquet instead when you can.

    Raises
    ------
    FileNotFoundError
        If ``path`` is not a file.
    InputError
        For a pickle without ``allow_pickle`` (a ``ValueError``).
    ValueError
        For any other suffix, naming the ones that are read.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"table {path} does not exist")
    suffix = "".join(path.suffixes[-2:]).lower() if path.suffix == ".gz" else path.suffix.lower()
    if suffix.startswith((".jsonl", ".ndjson")):
        return pd.read_json(path, lines=True)
    if suffix.startswith(".json"):
        return pd.read_json(path)
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if suffix.startswith(".csv"):
        return pd.read_csv(path)
    if suffix.startswith((".pkl", ".pickle")):
        if not allow_pickle:
            raise InputError(
                f"{path} is a pickle, and reading a pickle runs any code it holds: convert it "
                "(pandas.read_pickle(path).to_parquet(...)) or, for a file you made yourself, "
                "set allow_pickle: true in the data config"
            )
        warnings.warn(f"unpickling {path} (allow_pickle=True): only do this for files you "
                      "trust", stacklevel=2)
        return pd.read_pickle(path)
    raise ValueError(f"unsupported table format {path.suffix!r} ({path}); use .jsonl, .json, "
                     ".parquet or .csv")


def shard_rows(frame: pd.DataFrame, shard: tuple[int, int] | None) -> pd.DataFrame:
    """Rows of the ``i``-th of ``n`` contiguous parts (``shard=(i, n)``, 0-based)."""
    if shard is None:
        return frame
    i, n = shard
    bounds = [len(frame) * k // n for k in range(n + 1)]
    return frame.iloc[bounds[i] : bounds[i + 1]]
