"""Where the service finds the CIF of an indexed structure.

An id is always looked up in the index first; it is never turned into a file path. The CIF then
comes from, in order:

1. AMCSD rows (metadata ``source == "amcsd"``, ids ``amcsd-<n>``): larixite's database, read
   through :func:`matminer_clasp.train.amcsd.read_amcsd_entries` (one entry at a time, under a
   lock, with a small cache);
2. a ``cif`` metadata column (CIF text stored in the index);
3. a ``path`` metadata column (a structure file the index's builder recorded);
4. a structure folder (``--structures DIR``, or the INPUT folder the index was embedded from):
   its files are listed once at start-up with the ids ``matminer-clasp index`` gives them
   (relative path without suffix); ``.cif`` files are returned as they are, other formats
   (POSCAR, structure JSON) are converted with pymatgen.
"""

from __future__ import annotations

import functools
import gzip
import os
import re
import threading
from pathlib import Path
from typing import Any

import pandas as pd

_AMCSD_ID = re.compile(r"amcsd-(\d+)")


class CifNotAvailable(LookupError):
    """The id is in the index but no CIF can be found for it (the message says why)."""


class CifSource:
    """CIF texts of the structures of one index.

    Parameters
    ----------
    metadata
        The index's metadata (``id`` column first; ``source`` / ``cif`` / ``path`` columns used
        if present).
    structures
        Optional folder of structure files (the index's ids are their relative paths without
        suffix, as ``matminer-clasp index DIR`` names them); a single file is also accepted.
    recursive
        List the folder's sub-folders too.
    amcsd_db
        Path of the AMCSD SQLite file (default: larixite's).
    """

    def __init__(
        self,
        metadata: pd.DataFrame,
        structures: str | os.PathLike[str] | None = None,
        recursive: bool = False,
        amcsd_db: str | os.PathLike[str] | None = None,
    ) -> None:
        ids = [str(i) for i in metadata["id"]]
        self._row = {rid: i for i, rid in enumerate(ids)}
        source = metadata["source"] if "source" in metadata else pd.Series([None] * len(ids))
        self._amcsd = {
            rid for rid, src in zip(ids, source) if src == "amcsd" and _AMCSD_ID.fullmatch(rid)
        }
        self._cif = list(metadata["cif"]) if "cif" in metadata else None
        self._path = list(metadata["path"]) if "path" in metadata else None
        self._files = _list_files(structures, recursive) if structures else {}
        self._amcsd_db = amcsd_db
        self._lock = threading.Lock()
        self._read_amcsd = functools.lru_cache(maxsize=256)(self._read_amcsd_uncached)

    def __contains__(self, structure_id: str) -> bool:
        return structure_id in self._row

    @property
    def has_files(self) -> bool:
        """Whether a structure folder was given (and held structure files)."""
        return bool(self._files)

    def cif(self, structure_id: str) -> str:
        """The CIF text of ``structure_id``.

        Raises
        ------
        KeyError
            The id is not in the index.
        CifNotAvailable
            The id is indexed but no CIF is stored or found for it.
        """
        row = self._row.get(structure_id)
        if row is None:
            raise KeyError(structure_id)
        if structure_id in self._amcsd:
            return self._read_amcsd(structure_id)
        if self._cif is not None:
            text = self._cif[row]
            if isinstance(text, str) and text.strip():
                return text
        if self._path is not None and isinstance(self._path[row], str) and self._path[row]:
            return _file_to_cif(Path(self._path[row]).expanduser())
        path = self._files.get(structure_id)
        if path is not None:
            return _file_to_cif(path)
        raise CifNotAvailable(
            f"no CIF is stored for {structure_id!r}: this index keeps embeddings and metadata "
            "only; start the service with --structures DIR (the folder the index was built "
            "from) to serve its files"
        )

    def _read_amcsd_uncached(self, structure_id: str) -> str:
        from matminer_clasp.train.amcsd import read_amcsd_entries

        number = int(_AMCSD_ID.fullmatch(structure_id).group(1))  # type: ignore[union-attr]
        with self._lock:  # larixite's database is opened by one thread at a time
            try:
                entries = read_amcsd_entries(self._amcsd_db, ids=[number])
            except ImportError as exc:
                raise CifNotAvailable(
                    "AMCSD CIFs need larixite: pip install --no-deps larixite && "
                    "pip install xraydb sqlalchemy"
                ) from exc
        if not entries or not entries[0].get("cif"):
            why = entries[0].get("error", "no CIF text") if entries else "not in the database"
            raise CifNotAvailable(f"AMCSD has no readable CIF for {structure_id!r}: {why}")
        return str(entries[0]["cif"])


def _list_files(structures: str | os.PathLike[str], recursive: bool) -> dict[str, Path]:
    """``{id: file}`` as ``matminer-clasp index`` names the files of a folder (or one file)."""
    from matminer_clasp.structures.read import _file_id, structure_files

    root = Path(structures).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"--structures {root} does not exist")
    if root.is_file():
        return {_file_id(root, root.parent): root}
    return {_file_id(p, root): p for p in structure_files(root, recursive)}


def _file_to_cif(path: Path) -> str:
    name = path.name.lower()
    try:
        if name.endswith(".cif"):
            return path.read_text(errors="replace")
        if name.endswith(".cif.gz"):
            with gzip.open(path, "rt", errors="replace") as fh:
                return fh.read()
        return _convert(path)
    except OSError as exc:
        raise CifNotAvailable(f"cannot read the structure file of this entry: {exc}") from exc


def _convert(path: Path) -> Any:
    from pymatgen.io.cif import CifWriter

    from matminer_clasp.structures.read import read_structure_file

    try:
        structure, _ = read_structure_file(path)
        return str(CifWriter(structure))
    except Exception as exc:  # noqa: BLE001 - any reader failure: the entry has no CIF
        raise CifNotAvailable(f"cannot convert {path.name} to CIF: {exc}") from exc
