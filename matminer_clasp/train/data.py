"""Training data: (crystal graph, caption) pairs from CIF folders, AMCSD or tables.

The public API (:class:`DataConfig`, :func:`load_pairs`, :func:`split_indices`,
:class:`PairDataset`) lives here; reading a source's entries is in
:mod:`~matminer_clasp.train.sources` and building / caching their graphs in
:mod:`~matminer_clasp.train.graph_cache`.

One direction, one place per step:

1. :func:`~matminer_clasp.train.sources.read_entries` reads the raw entries of a source (CIF
   text or structure + title) in this process; nothing is parsed yet (``DataConfig.ids_file``
   can pin them to a list of ids).
2. :func:`load_pairs` fingerprints them (ids + a hash of each structure payload) together with
   the graph-relevant fields of the model config. If a graph cache with that key exists it is
   loaded (safetensors shards, no pickle); otherwise worker processes read each entry through
   the one door for inputs (:mod:`matminer_clasp.structures`: CIF retries, composition repair)
   and build its graph with :class:`~matminer_clasp.graph.CrystalGraphBuilder` (split-site
   and symmetry policies); the result is written to the cache (:mod:`.graph_cache`).
   Bad entries are skipped and reported (``PairData.skipped``, logging), never fatal.
3. Captions are titles (:func:`~matminer_clasp.train.captions.title_caption`) or keyword lists
   (:func:`~matminer_clasp.train.captions.keyword_captions`, cached separately).
4. :func:`split_indices` gives train/val/test indices: the paper's seed-42 80/10/10 random split
   (official ``train_pretraining.py``: ``random_split`` with sizes ``int(0.8n)``, ``int(0.1n)``,
   rest) or a split grouped by caption, so that no caption appears on two sides.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch_geometric.data import Data

from matminer_clasp.config import ClaspConfig
from matminer_clasp.train.captions import (
    get_keyword_extractor,
    keyword_captions,
)
from matminer_clasp.train.graph_cache import graphs_for_entries, run_tasks
from matminer_clasp.train.metadata_keywords import add_metadata_keywords
from matminer_clasp.train.sources import (
    SOURCES,
    entry_caption,
    entry_fields,
    pinned,
    read_entries,
    report_skipped,
    sha256_hex,
    usable_entries,
)

logger = logging.getLogger(__name__)



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
        The CIF folder or the table (``.jsonl``, ``.json``, ``.parquet``, ``.csv``; ``.pkl``
        only with ``allow_pickle``); for AMCSD an optional SQLite file.
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
    mineral_keywords, chemistry_keywords
        With ``captions="keywords"``: put the entry's mineral name / chemical class (from its
        formula) in front of its keywords; see :mod:`~matminer_clasp.train.metadata_keywords`.
    allow_pickle
        Read a ``.pkl`` / ``.pickle`` table (default ``False``: refused, since unpickling a file
        runs any code it holds; convert the table to parquet instead).
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
    mineral_keywords: bool = False
    chemistry_keywords: bool = False
    allow_pickle: bool = False

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise ValueError(f"DataConfig.source={self.source!r}; expected one of {SOURCES}")
        if self.source in ("cif_dir", "table") and not self.path:
            raise ValueError(f"DataConfig.source={self.source!r} needs a path")
        if self.captions not in ("title", "keywords"):
            raise ValueError(f"DataConfig.captions={self.captions!r}; expected 'title'/'keywords'")
        for option in ("mineral_keywords", "chemistry_keywords"):
            if getattr(self, option) and self.captions != "keywords":
                raise ValueError(f"DataConfig.{option} needs captions='keywords' (title "
                                 "captions must stay titles: the grouped split groups by them)")
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




def load_records(data_config: DataConfig, show_progress_bar: bool = False, *,
                 frame: pd.DataFrame | None = None,
                 ids: Collection[str] | None = None) -> pd.DataFrame:
    """Parse a source into a table of structures (no graphs, no cache).

    ``ids``: parse only these entries (e.g. one side of a split, :func:`split_ids`).

    Returns
    -------
    pandas.DataFrame
        Columns ``id``, ``structure`` (pymatgen ``Structure``), ``title``, ``caption``,
        ``formula``, ``mineral``, ``source``, ``notes``, ``pressure``, ``temperature``,
        ``locality``, ``placeholder`` (handbook title; kept here, flagged), ``composition_note``.
        Unreadable entries are left out and listed in ``df.attrs["skipped"]`` (id -> reason).
    """
    entries = pinned(read_entries(data_config, frame), data_config.ids_file)
    if ids is not None:
        wanted = set(ids)
        entries = [e for e in entries if e["id"] in wanted]
    skipped: dict[str, str] = {}
    usable = usable_entries(entries, skipped)
    items = [(e["kind"], e["payload"], e.get("formula") if e.get("check_formula") else None)
             for e in usable]
    results = run_tasks(items, None, data_config.n_jobs, "parsing", show_progress_bar)
    rows = []
    for e, (ok, value, note) in zip(usable, results):
        if not ok:
            skipped[e["id"]] = value
            continue
        row = entry_fields(e)
        row.update(structure=value, caption=entry_caption(e, row), composition_note=note)
        rows.append(row)
    columns = ["id", "structure", "title", "caption", "formula", "mineral", "source", "notes",
               "pressure", "temperature", "locality", "placeholder", "composition_note"]
    df = pd.DataFrame(rows, columns=columns)
    df.attrs["skipped"] = skipped
    report_skipped(skipped, len(entries), f"load_records({data_config.source})")
    return df


def load_amcsd_records(max_items: int | None = None, n_jobs: int = 2, db_path: str | None = None,
                       show_progress_bar: bool = False) -> pd.DataFrame:
    """AMCSD as a table of structures (see :func:`load_records`); placeholders are flagged.

    Used by ``matminer-clasp screen --amcsd``; columns include ``mineral`` (or ``None``).
    """
    cfg = DataConfig(source="amcsd", path=db_path, n_jobs=n_jobs, max_items=max_items)
    return load_records(cfg, show_progress_bar=show_progress_bar)



# ----------------------------------------------------------------------------- pairs

def load_pairs(data_config: DataConfig, model_config: ClaspConfig, show_progress_bar: bool = True,
               *, frame: pd.DataFrame | None = None, split: str | None = None) -> PairData:
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
    split
        ``"train"``, ``"val"`` or ``"test"``: only the pairs of that side of
        :func:`split_indices`, whose graphs alone are built (a fifth of the work for a test
        split of 20 %). Needs a pinned data set (``data_config.ids_file``), so that the split
        does not depend on which graphs build. ``None`` (default): every pair. With a pinned
        data set, a pair whose graph no longer builds is an error either way, so the two give
        the same split whenever they succeed.

    Returns
    -------
    PairData
        Kept pairs in source order, plus ``skipped`` (id -> reason) for every dropped entry.
    """
    entries = pinned(read_entries(data_config, frame), data_config.ids_file)
    skipped: dict[str, str] = {}
    usable = usable_entries(entries, skipped)
    root = data_config.resolved_cache_dir()
    by_id = {e["id"]: e for e in usable}
    if split is None:
        # graphs are built (and cached) for every readable entry, so that caption choices
        # (placeholders kept or dropped, titles or keywords) reuse the same cache
        ids, graphs, notes = graphs_for_entries(usable, model_config, data_config, root, skipped,
                                                show_progress_bar)
        if data_config.ids_file is not None and len(ids) < len(usable):
            built = set(ids)
            _refuse_unbuilt_pins(data_config, "", {e["id"]: skipped[e["id"]] for e in usable
                                                   if e["id"] not in built})
        graph_of = dict(zip(ids, graphs))
        pair_ids, captions, fields = _captioned(ids, by_id, data_config, root, skipped)
    else:
        if data_config.ids_file is None:
            raise ValueError(f"load_pairs(split={split!r}) needs a pinned data set "
                             "(DataConfig.ids_file): without one the split depends on which "
                             "graphs build")
        pair_ids, captions, fields = _split_side(usable, data_config, root, skipped, split)
        failed: dict[str, str] = {}
        ids, graphs, notes = graphs_for_entries([by_id[i] for i in pair_ids], model_config,
                                                data_config, root, failed, show_progress_bar)
        _refuse_unbuilt_pins(data_config, f"the {split} split of ", failed)
        graph_of = dict(zip(ids, graphs))
    rows = [{**{k: v for k, v in fields[i].items() if k != "placeholder"},
             "caption": c, "composition_note": notes.get(i, "")}
            for i, c in zip(pair_ids, captions)]
    meta = pd.DataFrame(rows, columns=["id", "formula", "title", "caption", "source", "mineral",
                                       "notes", "pressure", "temperature", "locality",
                                       "composition_note"])
    report_skipped(skipped, len(entries), f"load_pairs({data_config.source})")
    return PairData(ids=pair_ids, graphs=[graph_of[i] for i in pair_ids], captions=captions,
                    meta=meta, skipped=skipped)


def _split_side(usable: list[dict[str, Any]], data_config: DataConfig, root: Path,
                skipped: dict[str, str], split: str
                ) -> tuple[list[str], list[str], dict[str, dict[str, Any]]]:
    """Ids and captions of one side of the split (no graphs), and every id's metadata fields."""
    by_id = {e["id"]: e for e in usable}
    all_ids, all_captions, fields = _captioned(list(by_id), by_id, data_config, root, skipped)
    side = split_indices(PairData(all_ids, [], all_captions, pd.DataFrame(), {}),
                         data_config)[split]
    return [all_ids[j] for j in side], [all_captions[j] for j in side], fields


def split_ids(data_config: DataConfig, split: str, *,
              frame: pd.DataFrame | None = None) -> list[str]:
    """The entry ids of one side (``"train"``, ``"val"``, ``"test"``) of a pinned split.

    The same ids as ``load_pairs(data_config, ..., split=split).ids`` whenever the pinned
    graphs build, without building any graph (e.g. to compute per-entry training targets for
    the training side only, :mod:`.distill`). ``frame``: as in :func:`load_pairs`.
    """
    if data_config.ids_file is None:
        raise ValueError(f"split_ids({split!r}) needs a pinned data set (DataConfig.ids_file)")
    entries = pinned(read_entries(data_config, frame), data_config.ids_file)
    usable = usable_entries(entries, {})
    return _split_side(usable, data_config, data_config.resolved_cache_dir(), {}, split)[0]


def _refuse_unbuilt_pins(data_config: DataConfig, what: str, failed: dict[str, str]) -> None:
    """A pinned data set is exactly its ids: one whose graph no longer builds is an error.

    (Dropping it would move every later pair to another side of the split.)
    """
    if failed:
        first = next(iter(failed.items()))
        raise ValueError(f"{len(failed)} pinned pairs of {data_config.ids_file} no longer "
                         f"build a graph, so {what}the pinned data set cannot be reproduced "
                         f"(first: {first[0]}: {first[1]})")


def _captioned(ids: list[str], by_id: dict[str, dict[str, Any]], data_config: DataConfig,
               root: Path, skipped: dict[str, str]
               ) -> tuple[list[str], list[str], dict[str, dict[str, Any]]]:
    """The ids (in order) that make pairs, their captions, and every id's metadata fields.

    Ids that make no pair (placeholder title, no title, no keywords) go to ``skipped``.
    """
    fields = {i: entry_fields(by_id[i]) for i in ids}
    kept, titles = [], []
    for i in ids:
        f = fields[i]
        if data_config.drop_placeholder_titles and f["placeholder"]:
            skipped[i] = f"placeholder title (handbook entry): {f['title'][:80]!r}"
        elif not f["title"]:
            skipped[i] = "no title/caption"
        else:
            kept.append(i)
            titles.append(entry_caption(by_id[i], f))
    if data_config.captions == "title":
        captions = titles
    else:
        model = data_config.keyword_model
        extractor = get_keyword_extractor(data_config.keyword_extractor,
                                          **({"model": model} if model else {}))
        extractor_id = getattr(extractor, "model_id", model)
        slug = sha256_hex(f"{data_config.keyword_extractor}|{extractor_id}")
        cache_path = root / "keywords" / f"{data_config.keyword_extractor}-{slug[:16]}.json"
        captions = keyword_captions(titles, extractor, cache_path)
        captions = add_metadata_keywords(captions, [fields[i] for i in kept],
                                         mineral=data_config.mineral_keywords,
                                         chemistry=data_config.chemistry_keywords)
    out_ids, out_captions = [], []
    for i, c in zip(kept, captions):
        if c.strip():
            out_ids.append(i)
            out_captions.append(c)
        else:
            skipped[i] = "no keywords left after filtering"
    return out_ids, out_captions, fields


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
