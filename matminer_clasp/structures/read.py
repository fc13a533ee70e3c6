"""Anything a user holds -> pymatgen ``Structure``: objects, dicts, CIF text, files, folders.

:func:`to_structure` converts one input (a ``Structure``/``IStructure``, its ``as_dict()``, JSON
of it, CIF text, or the path of any file pymatgen reads; CIF files go through
:func:`~matminer_clasp.structures.cif.parse_cif` and so get its retries and repairs).
:func:`read_structures` turns a folder of structure files (optionally recursive), one file or a
table with a structure column into one DataFrame ``id, structure, error, note, <other columns>``,
keeping a row for every input: an unreadable one has ``structure=None`` and its reason in
``error``. Every caller reads inputs through these two functions.
"""

from __future__ import annotations

import gzip
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pymatgen.core import IStructure, Structure

from matminer_clasp.errors import InputError, InvalidStructureError
from matminer_clasp.readers import read_table, shard_rows
from matminer_clasp.structures.cif import parse_cif
from matminer_clasp.structures.sites import check_structure

#: File names read as structures in a folder (besides POSCAR* / CONTCAR*).
STRUCTURE_SUFFIXES = (".cif", ".cif.gz", ".vasp", ".poscar")
#: Tables with one structure per row (a ``structure`` column).
TABLE_SUFFIXES = (".parquet", ".pq", ".json", ".jsonl", ".ndjson", ".csv")


def _is_cif_name(name: str) -> bool:
    return name.lower().endswith((".cif", ".cif.gz", ".mcif"))


def read_structure_file(path: str | os.PathLike[str]) -> tuple[Structure, list[str]]:
    """Read one structure file; CIFs through :func:`parse_cif`, others through pymatgen."""
    path = Path(path)
    if _is_cif_name(path.name):
        opener = gzip.open if path.name.lower().endswith(".gz") else open
        with opener(path, "rt", errors="replace") as fh:
            return parse_cif(fh.read())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Structure.from_file(path), []


def to_structure(obj: Any) -> tuple[IStructure, list[str]]:
    """Convert one input to a pymatgen structure; return it and notes on repairs.

    Parameters
    ----------
    obj
        A ``Structure``/``IStructure`` (returned as is), a dict from ``Structure.as_dict()``, a
        string holding that dict as JSON or a CIF, or a path (``str``/``PathLike``) of a file
        pymatgen reads.

    Raises
    ------
    InvalidStructureError
        Naming what was received and why it is not a structure.
    """
    if isinstance(obj, IStructure):
        return obj, []
    try:
        if isinstance(obj, dict):
            return Structure.from_dict(obj), []
        if isinstance(obj, os.PathLike):
            return read_structure_file(obj)
        if isinstance(obj, str):
            text = obj.strip()
            if text.startswith("{"):
                return Structure.from_dict(json.loads(text)), []
            if "\n" not in text and text and Path(text).expanduser().is_file():
                return read_structure_file(Path(text).expanduser())
            if "_cell_length_a" in text or text.lower().startswith("data_"):
                return parse_cif(obj)
            if "\n" in text:
                return Structure.from_str(text, fmt="poscar"), []
            if text.lower().endswith(STRUCTURE_SUFFIXES):
                raise InvalidStructureError(f"the structure file {text!r} does not exist")
            if text:
                raise InvalidStructureError(
                    f"got the string {text[:80]!r}, which is neither CIF text, POSCAR text, "
                    "JSON of a Structure nor the path of an existing file"
                )
    except InvalidStructureError:
        raise
    except Exception as exc:  # noqa: BLE001 - every reader failure is a bad input
        raise InvalidStructureError(
            f"cannot read a structure from {_describe(obj)}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:300] if str(exc) else ''}"
        ) from exc
    if isinstance(obj, str):
        raise InvalidStructureError("got an empty string, not a structure")
    check_structure(obj)  # raises its specific reason (a Molecule, None, ...)
    raise InvalidStructureError(f"expected a pymatgen Structure, got {_describe(obj)}")


def _describe(obj: Any) -> str:
    if obj is None:
        return "None"
    if isinstance(obj, str | os.PathLike) and len(str(obj)) < 200 and "\n" not in str(obj):
        return repr(str(obj))
    return f"an object of type {type(obj).__name__}"


def structure_files(folder: str | os.PathLike[str], recursive: bool = False) -> list[Path]:
    """Structure files in ``folder`` (sorted; with ``recursive`` also in its sub-folders)."""
    folder = Path(folder)

    def wanted(p: Path) -> bool:
        name = p.name
        return name.lower().endswith(STRUCTURE_SUFFIXES) or name.startswith(("POSCAR", "CONTCAR"))

    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.is_file() and wanted(p))


def _file_id(path: Path, root: Path) -> str:
    rel = path.relative_to(root).as_posix()
    if rel.lower().endswith(".cif.gz"):
        return rel[: -len(".cif.gz")]
    return rel[: -len(path.suffix)] if path.suffix else rel


def _read_one(kind: str, value: Any) -> tuple[Any, str | None, str | None]:
    try:
        structure, notes = read_structure_file(value) if kind == "file" else to_structure(value)
    except Exception as exc:  # noqa: BLE001 - recorded per row, reported to the user
        return None, f"{type(exc).__name__}: {exc}".splitlines()[0][:400], None
    return structure, None, "; ".join(notes) or None


def read_structures(
    source: str | os.PathLike[str],
    recursive: bool = False,
    shard: tuple[int, int] | None = None,
    structure_column: str = "structure",
    id_column: str = "id",
) -> pd.DataFrame:
    """Read a folder of structure files, one file or a table into one row per input.

    Parameters
    ----------
    source
        A folder (its structure files, see :data:`STRUCTURE_SUFFIXES`), a structure file, or a
        table (:data:`TABLE_SUFFIXES`) whose ``structure_column`` holds structures, their dicts,
        JSON or CIF text.
    recursive
        Also read the sub-folders of a folder (ids are then relative paths without suffix).
    shard
        ``(i, n)``: only the ``i``-th of ``n`` contiguous parts is read (job arrays).
    structure_column, id_column
        Columns of a table; without ``id_column`` the row number is the id.

    Returns
    -------
    pandas.DataFrame
        ``id``, ``structure`` (``None`` when unreadable), ``error`` (the reason, else ``None``),
        ``note`` (retries and repairs, else ``None``) and a table's other columns. A table with
        ``clasp_<i>`` columns (embeddings written by ``matminer-clasp embed``) is returned as is.

    Raises
    ------
    InputError
        When ``source`` does not exist, holds no structure files, or a table lacks the column.
    """
    path = Path(source).expanduser()
    if not path.exists():
        raise InputError(f"{path} does not exist")
    if path.is_dir():
        files = structure_files(path, recursive)
        if not files:
            raise InputError(
                f"{path} has no structure files ({', '.join(STRUCTURE_SUFFIXES)}, POSCAR*)"
                + ("" if recursive else "; pass recursive=True (--recursive) for sub-folders")
            )
        frame = pd.DataFrame({"id": [_file_id(f, path) for f in files], "_src": files})
        kind = "file"
    elif path.name.lower().endswith(TABLE_SUFFIXES) and not _looks_like_structure_json(path):
        try:
            frame = read_table(path)
        except Exception as exc:  # noqa: BLE001 - any reader failure is a bad input file
            raise InputError(f"cannot read {path} as a table: {exc}") from exc
        if any(str(c).startswith("clasp_") for c in frame.columns):
            return shard_rows(frame, shard)
        if structure_column not in frame.columns:
            raise InputError(
                f"{path} has no {structure_column!r} column (columns: {list(frame.columns)[:10]})"
            )
        frame = frame.rename(columns={structure_column: "_src"})
        if id_column in frame.columns:
            frame = frame.rename(columns={id_column: "id"})
        else:
            frame.insert(0, "id", np.arange(len(frame)))
        kind = "value"
    else:
        frame, kind = pd.DataFrame({"id": [_file_id(path, path.parent)], "_src": [path]}), "file"
    frame = shard_rows(frame, shard).reset_index(drop=True)
    parsed = [_read_one(kind, v) for v in frame["_src"]]
    frame.insert(1, "structure", [p[0] for p in parsed])
    frame.insert(2, "error", [p[1] for p in parsed])
    frame.insert(3, "note", [p[2] for p in parsed])
    return frame.drop(columns="_src")


def _looks_like_structure_json(path: Path) -> bool:
    """A ``.json`` file holding one ``Structure.as_dict()`` rather than a table."""
    if not path.name.lower().endswith((".json", ".json.gz")):
        return False
    try:
        opener = gzip.open if path.name.lower().endswith(".gz") else open
        with opener(path, "rt") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return '"@class": "Structure"' in head or ('"lattice"' in head and '"sites"' in head)
