"""Crystal graphs of training entries: built in worker processes once, then cached on disk.

:func:`graphs_for_entries` looks up the cache folder named by :func:`graph_cache_key` (the
graph-relevant model fields plus each entry's id and payload hash); when it is missing, worker
processes parse each entry through the one door (:mod:`matminer_clasp.structures`) and build its
graph with :class:`~matminer_clasp.graph.CrystalGraphBuilder`, and the graphs are written as
safetensors shards (no pickle) plus an ``index.json``, built in a private folder and renamed into
place atomically (a concurrent builder that loses the race discards its copy). Bad entries are
returned as skipped with their reason, never fatal.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import shutil
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from pymatgen.core import Structure
from safetensors.torch import load_file, save_file
from torch_geometric.data import Data
from tqdm.auto import tqdm

from matminer_clasp.atomic import publish_folder, temp_folder_for
from matminer_clasp.config import ClaspConfig
from matminer_clasp.errors import InvalidStructureError
from matminer_clasp.graph import CrystalGraphBuilder
from matminer_clasp.structures import parse_cif, to_structure
from matminer_clasp.train.sources import payload_hash

if TYPE_CHECKING:
    from matminer_clasp.train.data import DataConfig

logger = logging.getLogger(__name__)

#: Model-config fields that change a cached graph.
GRAPH_FIELDS = ("radius", "max_num_nbr", "cell", "max_sites", "min_distance", "crystal_encoder",
                "use_spacegroup", "gaussian_step")
# 2: composition path rejects overlapping atoms; 3: safetensors shards; 4: the structures
# package's policies (split sites merged, symmetry ladder, CIF retries); 5: neighbour distances
# within graph_arrays.TIE_TOLERANCE are ties (the order no longer depends on rounding noise)
_CACHE_VERSION = 5
_SHARD_SIZE = 4096
_NODE_KEYS = ("x",)
_EDGE_KEYS = ("edge_dist", "edge_attr")


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


def run_tasks(items: list[tuple[str, Any, str | None]], model_config: ClaspConfig | None,
               n_jobs: int, desc: str, show_progress_bar: bool) -> list[tuple[bool, Any, str]]:
    """Parse (and with ``model_config`` build graphs of) entries, in worker processes."""
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


def graph_cache_key(model_config: ClaspConfig, entries: Iterable[dict[str, Any]]) -> str:
    """Hash of the graph-relevant model fields and of the input entries (ids + payload hashes)."""
    h = hashlib.sha256()
    fields = {name: getattr(model_config, name) for name in GRAPH_FIELDS}
    fields["uses_graph"] = model_config.uses_graph
    h.update(json.dumps({"version": _CACHE_VERSION, **fields}, sort_keys=True).encode())
    for e in entries:
        h.update(f"{e['id']}\0{payload_hash(e)}\0{e.get('check_formula')}\n".encode())
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
    """Write the cache into a private folder and rename it to ``folder`` (atomic publication).

    A concurrent builder of the same cache (same key, hence the same content) that renamed
    first wins; this one's copy is then discarded.
    """
    tmp = temp_folder_for(folder)
    try:
        shards = []
        for start in range(0, len(graphs), _SHARD_SIZE):
            name = f"graphs-{start // _SHARD_SIZE:05d}.safetensors"
            packed = _pack(graphs[start:start + _SHARD_SIZE])
            save_file({k: v.contiguous() for k, v in packed.items()}, str(tmp / name))
            shards.append(name)
        index = {"version": _CACHE_VERSION, "ids": ids, "notes": notes, "skipped": skipped,
                 "shards": shards,
                 "model_config": {k: getattr(model_config, k) for k in GRAPH_FIELDS}}
        (tmp / "index.json").write_text(json.dumps(index))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    # a folder that exists here was unreadable or incomplete (else it was loaded): replace it
    publish_folder(tmp, folder, replace=folder.exists() and _load_cache(folder) is None)


def graphs_for_entries(usable: list[dict[str, Any]], model_config: ClaspConfig,
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
    results = run_tasks(items, model_config, data_config.n_jobs, "crystal graphs",
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
