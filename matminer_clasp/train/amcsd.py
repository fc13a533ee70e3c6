"""The American Mineralogist Crystal Structure Database (AMCSD), read through ``larixite``.

``larixite`` ships the trimmed AMCSD as an SQLite file (9,275 entries; the full database is used
when ``~/.larch/amcsd_cif2.db`` exists). Three quirks shape this module:

* ``larixite.amcsd.AMCSD`` opens its file writable and may ``ALTER`` it on first use, so two
  processes opening it at once can crash: the entries are read once, in the calling process, with
  ``read_only=True``, and only the CIF texts travel to worker processes.
* Its CIFs have ``_atom_site_label`` but no ``_atom_site_type_symbol``, so pymatgen guesses the
  element from the label and sometimes misreads it (``NH4`` as nihonium, ``CO3`` as cobalt,
  ``BI`` as bismuth, ``OSi1`` as osmium). :func:`check_composition` compares the parsed elements
  with the entry's formula and repairs such sites (or rejects the entry).
* About 760 entries come from Wyckoff's *Crystal Structures* handbook; their "title" is an edition
  note (``Second edition. Interscience Publishers, ...``), flagged here as placeholders.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from matminer_clasp.atomic import write_file_atomic
from matminer_clasp.structures.composition import OPTIONAL_ELEMENTS, check_composition

logger = logging.getLogger(__name__)

_ENTRY_VERSION = 1


def _amcsd_path(db_path: str | os.PathLike[str] | None) -> str | None:
    if db_path is not None:
        return os.fspath(db_path)
    try:
        from larixite.amcsd import AMCSD_FULL
        from larixite.utils import user_folder
    except ImportError:  # pragma: no cover - handled by the caller
        return None
    full = Path(user_folder) / AMCSD_FULL
    return str(full) if full.is_file() else None


def read_amcsd_entries(db_path: str | os.PathLike[str] | None = None,
                       max_items: int | None = None,
                       ids: Iterable[int] | None = None,
                       cache_dir: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """Read AMCSD entries (CIF text and metadata) in this process, in id order.

    Parameters
    ----------
    db_path
        An AMCSD SQLite file; default: larixite's full database if downloaded, else the trimmed
        one shipped with larixite.
    max_items
        Keep the first ``max_items`` entries (by AMCSD id).
    ids
        Read only these AMCSD ids (in this order); unknown ids are skipped.
    cache_dir
        When given and the whole database is read (no ``max_items``/``ids``), the entries are
        kept in ``<cache_dir>/amcsd/<key>.json`` (key: database path, size and mtime), so later
        runs skip larixite (reading every entry through it takes 10-20 s).

    Returns
    -------
    list of dict
        Keys ``id`` (``"amcsd-<n>"``), ``amcsd_id``, ``cif``, ``raw_title``, ``formula``,
        ``mineral``, ``journal``, ``year``, ``compound``. Entries larixite cannot read are logged
        and returned with ``cif=None`` and an ``error``.
    """
    cache_file = None
    if cache_dir is not None and max_items is None and ids is None:
        cache_file = _entries_cache_file(db_path, Path(cache_dir))
        if cache_file is not None and cache_file.is_file():
            try:
                cached = json.loads(cache_file.read_text())
                if not isinstance(cached, list) or not all(
                    isinstance(e, dict) and "id" in e for e in cached
                ):
                    raise ValueError("not a list of entries")
                return cached
            except (OSError, UnicodeDecodeError, ValueError) as exc:
                logger.warning("ignoring unreadable AMCSD cache %s (%s)", cache_file, exc)
    entries = _read_with_larixite(db_path, max_items, ids)
    if cache_file is not None:
        write_file_atomic(cache_file, json.dumps(entries))
    return entries


def _entries_cache_file(db_path: str | os.PathLike[str] | None, cache_dir: Path) -> Path | None:
    path = _amcsd_path(db_path)
    if path is None:
        try:
            import larixite.amcsd as module
        except ImportError:
            return None
        path = str(Path(module.__file__).parent / module.AMCSD_TRIM)
    try:
        stat = os.stat(path)
    except OSError:
        return None
    key = hashlib.sha256(
        f"{os.path.abspath(path)}|{stat.st_size}|{stat.st_mtime_ns}|{_ENTRY_VERSION}".encode()
    ).hexdigest()[:24]
    return cache_dir / "amcsd" / f"entries-{key}.json"


def _read_with_larixite(db_path: str | os.PathLike[str] | None, max_items: int | None,
                        ids: Iterable[int] | None) -> list[dict[str, Any]]:
    try:
        from larixite.amcsd import AMCSD
    except ImportError as exc:
        raise ImportError(
            "reading AMCSD needs larixite and its database dependencies: "
            "pip install --no-deps larixite && pip install xraydb sqlalchemy"
        ) from exc
    db = AMCSD(_amcsd_path(db_path), read_only=True)
    try:
        table = db.tables["cif"]
        rows = db.execall(table.select().with_only_columns(table.c.id))
        known = sorted(int(row[0]) for row in rows)
        if ids is not None:
            present = set(known)
            known = [int(i) for i in ids if int(i) in present]
        if max_items is not None:
            known = known[: int(max_items)]
        entries = []
        for ams_id in known:
            entry: dict[str, Any] = {"id": f"amcsd-{ams_id}", "amcsd_id": ams_id, "cif": None}
            try:
                cif = db.get_cif(ams_id)
                mineral = cif.get_mineralname()
                entry.update(
                    cif=cif.ciftext,
                    raw_title=str(cif.pub_title or ""),
                    formula=str(cif.formula or ""),
                    mineral=None if mineral in ("missing", "<missing>") else mineral,
                    journal=str(cif.publication.journalname),
                    year=cif.publication.year,
                    compound=None if cif.compound in (None, "<missing>") else cif.compound,
                )
            except Exception as exc:  # larixite raises many types on odd rows
                entry["error"] = f"larixite could not read the entry: {type(exc).__name__}: {exc}"
                logger.warning("AMCSD %s: %s", ams_id, entry["error"])
            entries.append(entry)
    finally:
        db.finalize_amcsd()
    return entries


__all__ = ["OPTIONAL_ELEMENTS", "check_composition", "read_amcsd_entries"]
