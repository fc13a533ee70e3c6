"""Training data: (crystal graph, caption) pairs from CIF folders, AMCSD or tables.

One direction, one place per step:

1. :func:`_read_entries` reads the raw entries of a source (CIF text or structure + title) in
   this process; nothing is parsed yet.
2. :func:`load_pairs` fingerprints them (ids + a hash of each structure payload) together with
   the graph-relevant fields of the model config. If a graph cache with that key exists it is
   loaded (safetensors shards, no pickle); otherwise worker processes parse each CIF, check its
   composition (:func:`~matminer_clasp.train.amcsd.check_composition`) and build its graph with
   :class:`~matminer_clasp.graph.CrystalGraphBuilder`, and the result is written to the cache.
   Bad entries are skipped and reported (``PairData.skipped``, logging), never fatal.
3. Captions are titles (:func:`~matminer_clasp.train.captions.title_caption`) or keyword lists
   (:func:`~matminer_clasp.train.captions.keyword_captions`, cached separately).
4. :func:`split_indices` gives train/val/test indices: the paper's seed-42 80/10/10 random split
   (official ``train_pretraining.py``: ``random_split`` with sizes ``int(0.8n)``, ``int(0.1n)``,
   rest) or a split grouped by caption, so that no caption appears on two sides.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pymatgen.core import Structure
from safetensors.torch import load_file, save_file
from torch_geometric.data import Data
from tqdm.auto import tqdm

from matminer_clasp.config import ClaspConfig
from matminer_clasp.errors import InvalidStructureError
from matminer_clasp.graph import CrystalGraphBuilder
from matminer_clasp.readers import read_table
from matminer_clasp.structures import parse_cif, to_structure
from matminer_clasp.train.amcsd import read_amcsd_entries
from matminer_clasp.train.captions import (
    decode_cif_markup,
    get_keyword_extractor,
    is_placeholder_title,
    keyword_captions,
    parse_notes,
    placeholder_caption,
    split_title_notes,
    title_caption,
)

logger = logging.getLogger(__name__)

#: Model-config fields that change a cached graph.
GRAPH_FIELDS = ("radius", "max_num_nbr", "cell", "max_sites", "min_distance", "crystal_encoder",
                "use_spacegroup", "gaussian_step")
# 2: composition path rejects overlapping atoms; 3: safetensors shards; 4: the structures
# package's policies (split sites merged, symmetry ladder, CIF retries)
_CACHE_VERSION = 4
_SHARD_SIZE = 4096
_NODE_KEYS = ("x",)
_EDGE_KEYS = ("edge_dist", "edge_attr")
_SOURCES = ("amcsd", "cif_dir", "table")


@dataclass
class DataConfig:
    """Where training pairs come from and how they are captioned and split.

    Parameters
    ----------
    source
        ``"amcsd"`` (larixite's AMCSD), ``"cif_dir"`` (a folder of ``.cif`` files, searched
        recursively, captions from ``_publ_section_title``) or ``"table"`` (a file with a
        structure column and a caption column).
    path
        The CIF folder or the table (``.jsonl``, ``.json``, ``.parquet``, ``.csv``, ``.pkl``);
        for AMCSD an optional SQLite file.
    structure_column, caption_column, id_column
        Table columns: structures (pymatgen ``Structure``, its ``as_dict()``, or CIF text),
        captions, and ids (default: the row number).
    captions
        ``"title"`` (pre-training) or ``"keywords"`` (fine-tuning; extracted from the title).
    keyword_extractor, keyword_model
        Extractor name (``"yake"``, ``"keybert"``, ``"llm"``) and its model (LLM id/folder, or
        the sentence encoder for KeyBERT).
    split, fractions, seed
        ``"random"`` (paper: 80/10/10, seed 42) or ``"grouped"`` (same caption, same side).
    cache_dir
        Graph and keyword caches; default ``$MATMINER_CLASP_CACHE`` or ``~/.cache/matminer_clasp``.
    n_jobs
        Worker processes for parsing and graph building (1: in this process).
    max_items
        Keep only the first ``max_items`` entries of the source (quick runs, tests).
    drop_placeholder_titles
        Drop entries whose title is a handbook placeholder (AMCSD's Wyckoff entries).
    ids_file
        A text file of entry ids, one per line: only these entries are used. It pins a data set
        to the entries of an earlier run (the bundled model's ``evaluation_config.json`` names
        the ids it was trained and evaluated on, so that entries the structures package later
        learned to read do not move its split). A relative path in a config file is relative
        to that file.
    """

    source: str
    path: str | None = None
    structure_column: str = "structure"
    caption_column: str = "caption"
    id_column: str | None = None
    captions: str = "title"
    keyword_extractor: str = "yake"
    keyword_model: str | None = None
    split: str = "random"
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 42
    cache_dir: str | None = None
    n_jobs: int = 2
    max_items: int | None = None
    drop_placeholder_titles: bool = True
    ids_file: str | None = None

    def __post_init__(self) -> None:
        if self.source not in _SOURCES:
            raise ValueError(f"DataConfig.source={self.source!r}; expected one of {_SOURCES}")
        if self.source in ("cif_dir", "table") and not self.path:
            raise ValueError(f"DataConfig.source={self.source!r} needs a path")
        if self.captions not in ("title", "keywords"):
            raise ValueError(f"DataConfig.captions={self.captions!r}; expected 'title'/'keywords'")
        if self.split not in ("random", "grouped"):
            raise ValueError(f"DataConfig.split={self.split!r}; expected 'random' or 'grouped'")
        self.fractions = tuple(float(f) for f in self.fractions)  # type: ignore[assignment]
        fr = self.fractions
        if len(fr) != 3 or min(fr) < 0 or abs(sum(fr) - 1) > 1e-6:
            raise ValueError(f"DataConfig.fractions={self.fractions}: need 3 non-negative "
                             "fractions summing to 1")

    def resolved_cache_dir(self) -> Path:
        """The cache folder actually used."""
        if self.cache_dir:
            return Path(self.cache_dir).expanduser()
        env = os.environ.get("MATMINER_CLASP_CACHE")
        return Path(env).expanduser() if env else Path.home() / ".cache" / "matminer_clasp"


@dataclass
class PairData:
    """Training pairs, aligned by position.

    Attributes
    ----------
    ids
        Entry ids (``"amcsd-96"``, a CIF path relative to the folder, or a table id).
    graphs
        One crystal graph per pair.
    captions
        One caption per pair.
    meta
        One row per pair: ``id``, ``formula``, ``title``, ``caption``, ``source``, ``mineral``,
        ``notes``, ``pressure``, ``temperature``, ``locality``, ``composition_note``.
    skipped
        ``id -> reason`` for every entry dropped (bad CIF, bad structure, placeholder title,
        no keywords, ...).
    """

    ids: list[str]
    graphs: list[Data]
    captions: list[str]
    meta: pd.DataFrame
    skipped: dict[str, str]

    def __len__(self) -> int:
        return len(self.ids)


# ----------------------------------------------------------------------------- raw entries

def _sha(text: str | bytes) -> str:
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


def _read_entries(config: DataConfig, frame: pd.DataFrame | None = None) -> list[dict[str, Any]]:
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
    table = frame if frame is not None else read_table(config.path)  # type: ignore[arg-type]
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


def _pinned(entries: list[dict[str, Any]], ids_file: str | None) -> list[dict[str, Any]]:
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


def _payload_hash(entry: dict[str, Any]) -> str:
    payload = entry.get("payload")
    if payload is None:
        return "none"
    if isinstance(payload, str):
        return _sha(payload)
    return _sha(json.dumps(payload, sort_keys=True, default=str))


# ----------------------------------------------------------------------------- parsing (workers)

def _to_structure(kind: str, payload: Any, formula: str | None) -> tuple[Structure, str]:
    """One entry through the one door (:mod:`matminer_clasp.structures`); notes joined."""
    if payload is None:
        raise InvalidStructureError("no structure")
    if kind == "cif":
        structure, notes = parse_cif(payload, formula)
    else:
        structure, notes = to_structure(payload)
    return structure, "; ".join(notes)


_WORKER: dict[str, Any] = {}


def _init_worker(model_config: dict[str, Any] | None) -> None:
    torch.set_num_threads(1)
    _WORKER["builder"] = (CrystalGraphBuilder(ClaspConfig.from_dict(model_config))
                          if model_config is not None else None)


def _task(item: tuple[str, Any, str | None]) -> tuple[bool, Any, str]:
    """Parse one entry (and build its graph when a builder is set); never raises."""
    kind, payload, formula = item
    try:
        structure, note = _to_structure(kind, payload, formula)
        builder = _WORKER.get("builder")
        if builder is None:
            return True, structure, note
        graph = builder(structure)
        # plain numpy arrays: torch tensors would travel through shared-memory file descriptors,
        # which runs out of descriptors on large datasets
        arrays = {k: v.numpy() for k, v in graph.items() if isinstance(v, torch.Tensor)}
        return True, (arrays, int(graph.num_nodes)), note
    except Exception as exc:  # every failure becomes a reported skip
        return False, f"{type(exc).__name__}: {exc}", ""


def _run_tasks(items: list[tuple[str, Any, str | None]], model_config: ClaspConfig | None,
               n_jobs: int, desc: str, show_progress_bar: bool) -> list[tuple[bool, Any, str]]:
    cfg = model_config.to_dict() if model_config is not None else None
    bar = dict(total=len(items), desc=desc, disable=not show_progress_bar)
    if n_jobs <= 1 or len(items) < 2 * max(n_jobs, 1):
        _init_worker_inline(model_config)
        try:
            return [_task(item) for item in tqdm(items, **bar)]
        finally:
            _WORKER.clear()
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    chunk = max(1, min(64, len(items) // (n_jobs * 8)))
    with ProcessPoolExecutor(n_jobs, mp_context=ctx, initializer=_init_worker,
                             initargs=(cfg,)) as pool:
        return list(tqdm(pool.map(_task, items, chunksize=chunk), **bar))


def _init_worker_inline(model_config: ClaspConfig | None) -> None:
    # in-process path: uses this module's CrystalGraphBuilder (so tests can replace it)
    _WORKER["builder"] = CrystalGraphBuilder(model_config) if model_config is not None else None


def _usable(entries: list[dict[str, Any]], skipped: dict[str, str]) -> list[dict[str, Any]]:
    keep = []
    for e in entries:
        if e.get("error"):
            skipped[e["id"]] = e["error"]
        elif e.get("payload") is None:
            skipped[e["id"]] = "no structure"
        else:
            keep.append(e)
    return keep


def _report(skipped: dict[str, str], total: int, what: str) -> None:
    if skipped:
        first = ", ".join(list(skipped)[:5])
        logger.warning("%s: skipped %d of %d entries (first: %s); see the 'skipped' report",
                       what, len(skipped), total, first)


def _entry_fields(e: dict[str, Any]) -> dict[str, Any]:
    raw = e.get("raw_title")
    fields = _title_fields(raw) if raw is not None else {
        "title": " ".join(str(e.get("raw_caption", "")).split()),
        "notes": None, "pressure": None, "temperature": None, "locality": None}
    placeholder = is_placeholder_title(raw or "", e.get("journal")) if raw is not None else False
    return {"id": e["id"], "formula": e.get("formula"), **fields,
            "source": e.get("source"), "mineral": e.get("mineral"), "placeholder": placeholder}


def _caption(entry: dict[str, Any], fields: dict[str, Any]) -> str:
    raw = entry.get("raw_title")
    if raw is None:
        return fields["title"]
    return placeholder_caption(raw) if fields["placeholder"] else title_caption(raw)


def load_records(data_config: DataConfig, show_progress_bar: bool = False, *,
                 frame: pd.DataFrame | None = None) -> pd.DataFrame:
    """Parse a source into a table of structures (no graphs, no cache).

    Returns
    -------
    pandas.DataFrame
        Columns ``id``, ``structure`` (pymatgen ``Structure``), ``title``, ``caption``,
        ``formula``, ``mineral``, ``source``, ``notes``, ``pressure``, ``temperature``,
        ``locality``, ``placeholder`` (handbook title; kept here, flagged), ``composition_note``.
        Unreadable entries are left out and listed in ``df.attrs["skipped"]`` (id -> reason).
    """
    entries = _pinned(_read_entries(data_config, frame), data_config.ids_file)
    skipped: dict[str, str] = {}
    usable = _usable(entries, skipped)
    items = [(e["kind"], e["payload"], e.get("formula") if e.get("check_formula") else None)
             for e in usable]
    results = _run_tasks(items, None, data_config.n_jobs, "parsing", show_progress_bar)
    rows = []
    for e, (ok, value, note) in zip(usable, results):
        if not ok:
            skipped[e["id"]] = value
            continue
        row = _entry_fields(e)
        row.update(structure=value, caption=_caption(e, row), composition_note=note)
        rows.append(row)
    columns = ["id", "structure", "title", "caption", "formula", "mineral", "source", "notes",
               "pressure", "temperature", "locality", "placeholder", "composition_note"]
    df = pd.DataFrame(rows, columns=columns)
    df.attrs["skipped"] = skipped
    _report(skipped, len(entries), f"load_records({data_config.source})")
    return df


def load_amcsd_records(max_items: int | None = None, n_jobs: int = 2, db_path: str | None = None,
                       show_progress_bar: bool = False) -> pd.DataFrame:
    """AMCSD as a table of structures (see :func:`load_records`); placeholders are flagged.

    Used by ``matminer-clasp screen --amcsd``; columns include ``mineral`` (or ``None``).
    """
    cfg = DataConfig(source="amcsd", path=db_path, n_jobs=n_jobs, max_items=max_items)
    return load_records(cfg, show_progress_bar=show_progress_bar)


# ----------------------------------------------------------------------------- graph cache

def graph_cache_key(model_config: ClaspConfig, entries: Iterable[dict[str, Any]]) -> str:
    """Hash of the graph-relevant model fields and of the input entries (ids + payload hashes)."""
    h = hashlib.sha256()
    fields = {name: getattr(model_config, name) for name in GRAPH_FIELDS}
    fields["uses_graph"] = model_config.uses_graph
    h.update(json.dumps({"version": _CACHE_VERSION, **fields}, sort_keys=True).encode())
    for e in entries:
        h.update(f"{e['id']}\0{_payload_hash(e)}\0{e.get('check_formula')}\n".encode())
    return h.hexdigest()[:40]


def _pack(graphs: list[Data]) -> dict[str, torch.Tensor]:
    out: dict[str, Any] = {}
    sizes: dict[str, list[int]] = {}
    for g in graphs:
        n_nodes, n_edges = int(g.num_nodes), int(g.edge_index.shape[1])
        sizes.setdefault("node_ptr", []).append(n_nodes)
        sizes.setdefault("edge_ptr", []).append(n_edges)
        for key in g.keys():
            value = g[key]
            if not isinstance(value, torch.Tensor):
                continue
            out.setdefault(key, []).append(value)
            if key not in _NODE_KEYS and key not in _EDGE_KEYS and key != "edge_index":
                sizes.setdefault(f"{key}__ptr", []).append(int(value.shape[0]))
    packed = {k: torch.cat(v, dim=-1 if k == "edge_index" else 0) for k, v in out.items()}
    for k, v in sizes.items():
        packed[k] = torch.tensor(np.concatenate([[0], np.cumsum(v)]), dtype=torch.long)
    return packed


def _unpack(packed: dict[str, torch.Tensor]) -> list[Data]:
    node_ptr, edge_ptr = packed["node_ptr"].tolist(), packed["edge_ptr"].tolist()
    keys = [k for k in packed if not k.endswith("ptr")]
    graphs = []
    for i in range(len(node_ptr) - 1):
        fields: dict[str, Any] = {}
        for key in keys:
            value = packed[key]
            if key == "edge_index":
                fields[key] = value[:, edge_ptr[i]:edge_ptr[i + 1]]
            elif key in _NODE_KEYS:
                fields[key] = value[node_ptr[i]:node_ptr[i + 1]]
            elif key in _EDGE_KEYS:
                fields[key] = value[edge_ptr[i]:edge_ptr[i + 1]]
            else:
                ptr = packed[f"{key}__ptr"]
                fields[key] = value[int(ptr[i]):int(ptr[i + 1])]
        graphs.append(Data(**fields, num_nodes=node_ptr[i + 1] - node_ptr[i]))
    return graphs


def _load_cache(folder: Path) -> dict[str, Any] | None:
    index_path = folder / "index.json"
    if not index_path.is_file():
        return None
    try:
        index = json.loads(index_path.read_text())
        graphs: list[Data] = []
        for shard in index["shards"]:
            graphs.extend(_unpack(load_file(str(folder / shard))))
    except Exception as exc:
        logger.warning("graph cache %s is unreadable (%s); rebuilding it", folder, exc)
        return None
    if len(graphs) != len(index["ids"]):
        logger.warning("graph cache %s is incomplete; rebuilding it", folder)
        return None
    index["graphs"] = graphs
    return index


def _save_cache(folder: Path, ids: list[str], graphs: list[Data], notes: dict[str, str],
                skipped: dict[str, str], model_config: ClaspConfig) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    shards = []
    for start in range(0, len(graphs), _SHARD_SIZE):
        name = f"graphs-{start // _SHARD_SIZE:05d}.safetensors"
        tmp = folder / f"{name}.tmp{os.getpid()}"
        packed = _pack(graphs[start:start + _SHARD_SIZE])
        save_file({k: v.contiguous() for k, v in packed.items()}, str(tmp))
        os.replace(tmp, folder / name)
        shards.append(name)
    index = {"version": _CACHE_VERSION, "ids": ids, "notes": notes, "skipped": skipped,
             "shards": shards,
             "model_config": {k: getattr(model_config, k) for k in GRAPH_FIELDS}}
    tmp = folder / f"index.json.tmp{os.getpid()}"
    tmp.write_text(json.dumps(index))
    os.replace(tmp, folder / "index.json")  # written last: a cache without it is ignored


# ----------------------------------------------------------------------------- pairs

def _graphs_for(usable: list[dict[str, Any]], model_config: ClaspConfig,
                data_config: DataConfig, root: Path, skipped: dict[str, str],
                show_progress_bar: bool) -> tuple[list[str], list[Data], dict[str, str]]:
    """Load the entries' graphs from the cache, or build them in parallel and cache them."""
    folder = root / "graphs" / graph_cache_key(model_config, usable)
    cached = _load_cache(folder)
    if cached is not None:
        logger.info("loaded %d graphs from cache %s", len(cached["graphs"]), folder)
        skipped.update(cached["skipped"])
        return cached["ids"], cached["graphs"], cached["notes"]
    items = [(e["kind"], e["payload"], e.get("formula") if e.get("check_formula") else None)
             for e in usable]
    results = _run_tasks(items, model_config, data_config.n_jobs, "crystal graphs",
                         show_progress_bar)
    ids, graphs, notes, bad = [], [], {}, {}
    for e, (ok, value, note) in zip(usable, results):
        if ok:
            arrays, n_nodes = value
            ids.append(e["id"])
            graphs.append(Data(**{k: torch.from_numpy(v) for k, v in arrays.items()},
                               num_nodes=n_nodes))
            if note:
                notes[e["id"]] = note
        else:
            bad[e["id"]] = value
    skipped.update(bad)
    _save_cache(folder, ids, graphs, notes, bad, model_config)
    logger.info("built %d graphs (%d failed) into %s", len(graphs), len(bad), folder)
    return ids, graphs, notes


def load_pairs(data_config: DataConfig, model_config: ClaspConfig, show_progress_bar: bool = True,
               *, frame: pd.DataFrame | None = None) -> PairData:
    """Build (or load from the graph cache) the training pairs of a source.

    Parameters
    ----------
    data_config
        The source, captions, cache folder and ``n_jobs``.
    model_config
        Supplies the graph settings (:data:`GRAPH_FIELDS`), part of the cache key.
    show_progress_bar
        tqdm bar while graphs are built.
    frame
        For ``source="table"``: a DataFrame to use instead of reading ``data_config.path``.

    Returns
    -------
    PairData
        Kept pairs in source order, plus ``skipped`` (id -> reason) for every dropped entry.
    """
    entries = _pinned(_read_entries(data_config, frame), data_config.ids_file)
    skipped: dict[str, str] = {}
    # graphs are built (and cached) for every readable entry, so that caption choices
    # (placeholders kept or dropped, titles or keywords) reuse the same cache
    usable = _usable(entries, skipped)
    root = data_config.resolved_cache_dir()
    ids, graphs, notes = _graphs_for(usable, model_config, data_config, root, skipped,
                                     show_progress_bar)
    by_id = {e["id"]: e for e in usable}
    fields_by_id = {i: _entry_fields(by_id[i]) for i in ids}
    kept = []
    for j, i in enumerate(ids):
        fields = fields_by_id[i]
        if data_config.drop_placeholder_titles and fields["placeholder"]:
            skipped[i] = f"placeholder title (handbook entry): {fields['title'][:80]!r}"
        elif not fields["title"]:
            skipped[i] = "no title/caption"
        else:
            kept.append(j)
    ids, graphs = [ids[j] for j in kept], [graphs[j] for j in kept]
    titles = [_caption(by_id[i], fields_by_id[i]) for i in ids]
    if data_config.captions == "title":
        captions = titles
    else:
        model = data_config.keyword_model
        extractor = get_keyword_extractor(data_config.keyword_extractor,
                                          **({"model": model} if model else {}))
        slug = _sha(f"{data_config.keyword_extractor}|{getattr(extractor, 'model_id', model)}")
        cache_path = root / "keywords" / f"{data_config.keyword_extractor}-{slug[:16]}.json"
        captions = keyword_captions(titles, extractor, cache_path)
    keep = [j for j, c in enumerate(captions) if c.strip()]
    for j in set(range(len(ids))) - set(keep):
        skipped[ids[j]] = "no keywords left after filtering"
    rows = []
    for j in keep:
        i = ids[j]
        rows.append({**{k: v for k, v in fields_by_id[i].items() if k != "placeholder"},
                     "caption": captions[j], "composition_note": notes.get(i, "")})
    meta = pd.DataFrame(rows, columns=["id", "formula", "title", "caption", "source", "mineral",
                                       "notes", "pressure", "temperature", "locality",
                                       "composition_note"])
    _report(skipped, len(entries), f"load_pairs({data_config.source})")
    return PairData(ids=[ids[j] for j in keep], graphs=[graphs[j] for j in keep],
                    captions=[captions[j] for j in keep], meta=meta, skipped=skipped)


def data_fingerprint(pairs: PairData) -> str:
    """SHA-256 over the pairs' ids and captions (for model reports)."""
    h = hashlib.sha256()
    for id_, caption in zip(pairs.ids, pairs.captions):
        h.update(f"{id_}\0{caption}\n".encode())
    return h.hexdigest()


def _normalise_caption(caption: str) -> str:
    return " ".join(caption.lower().split())


def split_indices(pairs: PairData, data_config: DataConfig) -> dict[str, np.ndarray]:
    """Train/val/test index arrays into ``pairs``.

    ``"random"`` reproduces ``torch.utils.data.random_split`` with sizes ``int(f0 n)``,
    ``int(f1 n)`` and the rest, generator seeded with ``data_config.seed`` (paper: 42).
    ``"grouped"`` keeps all pairs with the same normalised caption (lower case, collapsed
    whitespace) on one side: caption groups are shuffled with the seed and filled into train,
    then val, then test until each reaches its share of the pairs.
    """
    n = len(pairs.captions)
    f_train, f_val, _ = data_config.fractions
    gen = torch.Generator().manual_seed(int(data_config.seed))
    if data_config.split == "random":
        n_train, n_val = int(f_train * n), int(f_val * n)
        perm = torch.randperm(n, generator=gen).numpy()
        return {"train": perm[:n_train],
                "val": perm[n_train:n_train + n_val], "test": perm[n_train + n_val:]}
    groups: dict[str, list[int]] = {}
    for i, caption in enumerate(pairs.captions):
        groups.setdefault(_normalise_caption(caption), []).append(i)
    members = list(groups.values())
    order = torch.randperm(len(members), generator=gen).tolist()
    targets = (f_train * n, (f_train + f_val) * n)
    out: dict[str, list[int]] = {"train": [], "val": [], "test": []}
    filled = 0
    for g in order:
        side = "train" if filled < targets[0] else "val" if filled < targets[1] else "test"
        out[side].extend(members[g])
        filled += len(members[g])
    return {k: np.asarray(sorted(v), dtype=np.int64) for k, v in out.items()}


class PairDataset(torch.utils.data.Dataset):
    """A view of some pairs: item ``i`` is ``(graph, caption_index)``.

    ``caption_index`` indexes ``pairs.captions`` (the pair's own position), so a collate
    function can tokenise or look up cached text features once per caption.
    """

    def __init__(self, pairs: PairData, indices: np.ndarray | list[int] | None = None) -> None:
        self.pairs = pairs
        idx = np.arange(len(pairs)) if indices is None else np.asarray(indices, dtype=np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(pairs)):
            raise IndexError(f"indices out of range for {len(pairs)} pairs")
        self.indices = idx

    def __len__(self) -> int:
        return int(self.indices.size)

    def __getitem__(self, i: int) -> tuple[Data, int]:
        j = int(self.indices[i])
        return self.pairs.graphs[j], j
