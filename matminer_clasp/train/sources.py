"""Where training entries come from: AMCSD, a folder of CIFs or a table (nothing parsed yet).

:func:`read_entries` returns one dict per entry, in source order, with ``id``, ``kind``
(``"cif"``/``"dict"``), ``payload``, ``formula``, ``check_formula``, ``raw_title`` (or
``raw_caption`` for tables), ``source`` and metadata; :func:`pinned` keeps the entries an
``ids_file`` names. The helpers below turn an entry's raw title into caption fields.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
from pymatgen.core import Structure

from matminer_clasp.readers import read_table
from matminer_clasp.train.amcsd import read_amcsd_entries
from matminer_clasp.train.captions import (
    decode_cif_markup,
    is_placeholder_title,
    parse_notes,
    placeholder_caption,
    split_title_notes,
    title_caption,
)

if TYPE_CHECKING:
    from matminer_clasp.train.data import DataConfig

logger = logging.getLogger(__name__)

SOURCES = ("amcsd", "cif_dir", "table")


def sha256_hex(text: str | bytes) -> str:
    """Hex SHA-256 of a text (UTF-8) or bytes."""
    return hashlib.sha256(text.encode("utf-8") if isinstance(text, str) else text).hexdigest()


def _cif_title(text: str) -> str:
    """The raw ``_publ_section_title`` value of a CIF (``;`` block, quoted or bare).

    Read by hand rather than with pymatgen's ``CifFile``: that parser joins the lines of a
    ``;`` text field into one, and the sample notes AMCSD and COD append to a title
    (``Note: P = 3.5 GPa``, ``Locality: ...``) are recognised line by line
    (:func:`~matminer_clasp.train.captions.split_title_notes`).
    """
    lines = text.splitlines()
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped.lower().startswith("_publ_section_title"):
            continue
        rest = stripped[len("_publ_section_title"):].strip()
        if rest:
            return rest.strip("'\"")
        for j in range(i + 1, len(lines)):
            if lines[j].startswith(";"):
                block = [lines[j][1:]]
                for k in range(j + 1, len(lines)):
                    if lines[k].startswith(";"):
                        return "\n".join(block).strip()
                    block.append(lines[k])
                return "\n".join(block).strip()
            if lines[j].strip():
                return lines[j].strip().strip("'\"")
    return ""


def _cif_item(text: str, tag: str) -> str | None:
    for line in text.splitlines():
        parts = line.strip().split(None, 1)
        if parts and parts[0].lower() == tag and len(parts) == 2:
            return parts[1].strip().strip("'\"")
    return None


def _title_fields(raw_title: str) -> dict[str, Any]:
    title, notes = split_title_notes(raw_title)
    return {"title": decode_cif_markup(title), **parse_notes(notes)}


def read_entries(config: DataConfig, frame: pd.DataFrame | None = None) -> list[dict[str, Any]]:
    """Read a source's raw entries, in source order.

    Each is a dict with ``id``, ``kind`` (``"cif"``/``"dict"``), ``payload``, ``formula``,
    ``check_formula``, ``raw_title`` (or ``raw_caption`` for tables), ``source`` and metadata.
    """
    n = config.max_items
    if config.source == "amcsd":
        entries = read_amcsd_entries(config.path, n, cache_dir=config.resolved_cache_dir())
        for e in entries:
            e.update(kind="cif", payload=e.pop("cif"), source="amcsd", check_formula=True)
        return entries
    if config.source == "cif_dir":
        root = Path(config.path).expanduser()  # type: ignore[arg-type]
        if not root.is_dir():
            raise FileNotFoundError(f"CIF folder {root} does not exist")
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() == ".cif" and p.is_file())
        entries = []
        for path in files[:n] if n is not None else files:
            rel = path.relative_to(root).with_suffix("").as_posix()
            entry: dict[str, Any] = {"id": rel, "kind": "cif", "source": str(path), "payload": None}
            try:
                text = path.read_text(errors="replace")
            except OSError as exc:
                entry["error"] = f"could not read {path}: {exc}"
                entries.append(entry)
                continue
            entry.update(payload=text, raw_title=_cif_title(text),
                         formula=_cif_item(text, "_chemical_formula_sum"),
                         mineral=_cif_item(text, "_chemical_name_mineral"), check_formula=False)
            entries.append(entry)
        return entries
    table = frame if frame is not None else read_table(
        config.path, allow_pickle=config.allow_pickle is True  # type: ignore[arg-type]
    )
    for col in (config.structure_column, config.caption_column):
        if col not in table.columns:
            raise ValueError(f"table has no column {col!r}; columns are {list(table.columns)}")
    if n is not None:
        table = table.iloc[:n]
    if config.id_column:
        ids = [str(v) for v in table[config.id_column]]
    else:
        ids = [str(v) for v in table.index]
    dup = pd.Index(ids)[pd.Index(ids).duplicated()].unique()
    if len(dup):
        raise ValueError(f"duplicate ids in the table: {list(dup[:5])}")
    entries = []
    columns = zip(ids, table[config.structure_column], table[config.caption_column])
    for id_, value, caption in columns:
        entry = {"id": id_, "source": str(config.path or "table"), "check_formula": False,
                 "raw_caption": "" if caption is None or caption != caption else str(caption)}
        if isinstance(value, Structure):
            entry.update(kind="dict", payload=value.as_dict())
        elif isinstance(value, dict):
            entry.update(kind="dict", payload=value)
        elif isinstance(value, str) and value.strip():
            entry.update(kind="cif", payload=value)
        else:
            entry.update(kind="cif", payload=None,
                         error=f"structure column holds {type(value).__name__}, expected a "
                               "Structure, its dict or CIF text")
        entries.append(entry)
    return entries


def pinned(entries: list[dict[str, Any]], ids_file: str | None) -> list[dict[str, Any]]:
    """The entries named in ``ids_file`` (all of them when it is ``None``), in source order."""
    if ids_file is None:
        return entries
    path = Path(ids_file).expanduser()
    try:
        wanted = {line.strip() for line in path.read_text().splitlines() if line.strip()}
    except OSError as exc:
        raise FileNotFoundError(f"DataConfig.ids_file {path} cannot be read: {exc}") from exc
    kept = [e for e in entries if e["id"] in wanted]
    missing = wanted - {e["id"] for e in kept}
    if missing:
        logger.warning("%s: %d ids are not in the source (first: %s)", path, len(missing),
                       ", ".join(sorted(missing)[:5]))
    return kept


def payload_hash(entry: dict[str, Any]) -> str:
    """Hash of an entry's structure payload (CIF text or dict), part of the graph-cache key."""
    payload = entry.get("payload")
    if payload is None:
        return "none"
    if isinstance(payload, str):
        return sha256_hex(payload)
    return sha256_hex(json.dumps(payload, sort_keys=True, default=str))


def usable_entries(entries: list[dict[str, Any]], skipped: dict[str, str]) -> list[dict[str, Any]]:
    """Entries with a payload; the others go to ``skipped`` (id -> reason)."""
    keep = []
    for e in entries:
        if e.get("error"):
            skipped[e["id"]] = e["error"]
        elif e.get("payload") is None:
            skipped[e["id"]] = "no structure"
        else:
            keep.append(e)
    return keep


def report_skipped(skipped: dict[str, str], total: int, what: str) -> None:
    """Log one warning that counts the skipped entries and names the first."""
    if skipped:
        first = ", ".join(list(skipped)[:5])
        logger.warning("%s: skipped %d of %d entries (first: %s); see the 'skipped' report",
                       what, len(skipped), total, first)


def entry_fields(e: dict[str, Any]) -> dict[str, Any]:
    """Metadata and caption fields of an entry (title split from its notes)."""
    raw = e.get("raw_title")
    fields = _title_fields(raw) if raw is not None else {
        "title": " ".join(str(e.get("raw_caption", "")).split()),
        "notes": None, "pressure": None, "temperature": None, "locality": None}
    placeholder = is_placeholder_title(raw or "", e.get("journal")) if raw is not None else False
    return {"id": e["id"], "formula": e.get("formula"), **fields,
            "source": e.get("source"), "mineral": e.get("mineral"), "placeholder": placeholder}


def entry_caption(entry: dict[str, Any], fields: dict[str, Any]) -> str:
    """The caption of an entry: its title, or a placeholder caption for handbook entries."""
    raw = entry.get("raw_title")
    if raw is None:
        return fields["title"]
    return placeholder_caption(raw) if fields["placeholder"] else title_caption(raw)
