"""Training data: CIF folders, tables, AMCSD, graph cache, splits, PairDataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from pymatgen.core import Composition
from pymatgen.io.cif import CifWriter
from safetensors.torch import load_file
from torch_geometric.data import Data

from matminer_clasp.config import ClaspConfig
from matminer_clasp.graph import CrystalGraphBuilder
from matminer_clasp.structures import parse_cif
from matminer_clasp.train import graph_cache as graph_cache_mod
from matminer_clasp.train import sources as sources_mod
from matminer_clasp.train.amcsd import check_composition, read_amcsd_entries
from matminer_clasp.train.data import (
    DataConfig,
    PairData,
    PairDataset,
    data_fingerprint,
    load_pairs,
    load_records,
    split_ids,
    split_indices,
)

MODEL = ClaspConfig(cell="as_is")

NACL_TITLE = """;
 High-pressure study of Na~2~Cl~2~ and Fe^3+^ in <i>rocksalt</i> structures
 of the \\a-phase
 Note: P = 3.5 GPa
 Locality: Salzburg, Austria
;"""


def _cif(structure, title_block: str) -> str:
    text = str(CifWriter(structure))
    head, rest = text.split("\ndata_", 1)  # the title goes inside the data block
    block, rest = rest.split("\n", 1)
    return f"{head}\ndata_{block}\n_publ_section_title\n{title_block}\n{rest}"


@pytest.fixture
def cif_dir(tmp_path: Path, structures) -> Path:
    folder = tmp_path / "cifs"
    (folder / "sub").mkdir(parents=True)
    (folder / "a_nacl.cif").write_text(_cif(structures["rocksalt"], NACL_TITLE))
    (folder / "b_si.cif").write_text(_cif(structures["diamond"], "'Silicon revisited'"))
    (folder / "sub" / "c_zno.cif").write_text(
        _cif(structures["hexagonal"], ";\n Zinc oxide thin films for\n piezoelectric devices\n;"))
    (folder / "sub" / "d_tri.cif").write_text(
        _cif(structures["triclinic"], ";\n A triclinic calcium aluminosilicate\n;"))
    (folder / "e_broken.cif").write_text(
        "data_broken\n_publ_section_title 'Broken'\n_cell_length_a 5.0\nnot a CIF\n")
    return folder


def test_cif_dir_pairs(cif_dir, tmp_path):
    cfg = DataConfig(source="cif_dir", path=str(cif_dir), cache_dir=str(tmp_path / "cache"),
                     n_jobs=1)
    pairs = load_pairs(cfg, MODEL, show_progress_bar=False)
    assert pairs.ids == ["a_nacl", "b_si", "sub/c_zno", "sub/d_tri"]
    assert set(pairs.skipped) == {"e_broken"}
    assert "CIF" in pairs.skipped["e_broken"] or "structure" in pairs.skipped["e_broken"]
    assert pairs.captions[0] == (
        "High-pressure study of Na2Cl2 and Fe3+ in rocksalt structures of the α-phase")
    assert pairs.captions[1] == "Silicon revisited"
    assert pairs.captions[2] == "Zinc oxide thin films for piezoelectric devices"
    row = pairs.meta.iloc[0]
    assert row["pressure"] == "3.5 GPa"
    assert row["locality"] == "Salzburg, Austria"
    assert "Note: P = 3.5 GPa" in row["notes"]
    assert list(pairs.meta["id"]) == pairs.ids
    assert all(isinstance(g, Data) for g in pairs.graphs)
    # graphs equal those built directly
    ref = CrystalGraphBuilder(MODEL)(parse_cif((cif_dir / "b_si.cif").read_text())[0])
    assert torch.equal(ref.x, pairs.graphs[1].x)
    assert torch.allclose(ref.edge_dist, pairs.graphs[1].edge_dist)


def test_load_records_cif_dir(cif_dir):
    df = load_records(DataConfig(source="cif_dir", path=str(cif_dir), n_jobs=1, max_items=3))
    assert list(df["id"]) == ["a_nacl", "b_si", "e_broken"][:2]
    assert df.attrs["skipped"].keys() == {"e_broken"}
    assert df["structure"].iloc[0].composition.reduced_formula == "NaCl"
    assert df["caption"].iloc[1] == "Silicon revisited"


def test_table_sources(tmp_path, structures):
    names = ["rocksalt", "diamond", "hexagonal"]
    s = [structures[n] for n in names]
    frame = pd.DataFrame({
        "name": names,
        "structure": [s[0], s[1].as_dict(), str(CifWriter(s[2]))],
        "caption": ["rock  salt\n NaCl", "diamond silicon", "wurtzite ZnO"],
    })
    cfg = DataConfig(source="table", path="mem", id_column="name", n_jobs=1,
                     cache_dir=str(tmp_path / "c"))
    pairs = load_pairs(cfg, MODEL, show_progress_bar=False, frame=frame)
    assert pairs.ids == names and pairs.captions[0] == "rock salt NaCl"
    assert [g.num_nodes for g in pairs.graphs] == [len(x) for x in s]
    # files: JSONL with dicts, parquet with CIF text
    jsonl = tmp_path / "t.jsonl"
    with jsonl.open("w") as fh:
        for n, st in zip(names, s):
            fh.write(json.dumps({"structure": st.as_dict(), "caption": n}) + "\n")
    df = load_records(DataConfig(source="table", path=str(jsonl), n_jobs=1))
    assert list(df["caption"]) == names and list(df["id"]) == ["0", "1", "2"]
    assert df["structure"][2].composition.reduced_formula == "ZnO"
    parquet = tmp_path / "t.parquet"
    pd.DataFrame({"cif": [str(CifWriter(x)) for x in s] + ["junk"], "text": names + ["bad"],
                  }).to_parquet(parquet)
    cfg = DataConfig(source="table", path=str(parquet), structure_column="cif",
                     caption_column="text", n_jobs=1, cache_dir=str(tmp_path / "c"))
    pairs = load_pairs(cfg, MODEL, show_progress_bar=False)
    assert pairs.captions == names and list(pairs.skipped) == ["3"]
    with pytest.raises(ValueError, match="no column 'nope'"):
        load_records(DataConfig(source="table", path=str(parquet), structure_column="nope"))


def test_graph_cache_reused_and_invalidated(cif_dir, tmp_path, monkeypatch):
    cfg = DataConfig(source="cif_dir", path=str(cif_dir), cache_dir=str(tmp_path / "cache"),
                     n_jobs=1)
    first = load_pairs(cfg, MODEL, show_progress_bar=False)
    shards = list((tmp_path / "cache" / "graphs").glob("*/graphs-*.safetensors"))
    assert len(shards) == 1
    assert load_file(str(shards[0]))["x"].shape[1] == 92  # plain tensors, no pickle code

    class Boom:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("graph builder called")

    monkeypatch.setattr(graph_cache_mod, "CrystalGraphBuilder", Boom)
    second = load_pairs(cfg, MODEL, show_progress_bar=False)  # from cache: builder unused
    assert second.ids == first.ids and second.skipped == first.skipped
    for a, b in zip(first.graphs, second.graphs):
        assert set(a.keys()) == set(b.keys())
        for key in a.keys():
            assert torch.equal(a[key], b[key]) if isinstance(a[key], torch.Tensor) else True
    with pytest.raises(RuntimeError, match="graph builder called"):  # graph config changed
        load_pairs(cfg, ClaspConfig(cell="as_is", max_num_nbr=8), show_progress_bar=False)
    with pytest.raises(RuntimeError, match="graph builder called"):  # data changed
        (cif_dir / "b_si.cif").write_text((cif_dir / "b_si.cif").read_text() + "\n#edit\n")
        load_pairs(cfg, MODEL, show_progress_bar=False)


def test_graph_cache_text_fields_do_not_invalidate(cif_dir, tmp_path, monkeypatch):
    cfg = DataConfig(source="cif_dir", path=str(cif_dir), cache_dir=str(tmp_path / "cache"),
                     n_jobs=1)
    load_pairs(cfg, MODEL, show_progress_bar=False)

    class Boom:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("graph builder called")

    monkeypatch.setattr(graph_cache_mod, "CrystalGraphBuilder", Boom)
    pairs = load_pairs(cfg, ClaspConfig(cell="as_is", max_length=32, text_head_layers=2),
                       show_progress_bar=False)
    assert len(pairs) == 4


def test_process_pool_matches_inline(cif_dir, tmp_path):
    kw = dict(source="cif_dir", path=str(cif_dir))
    inline = load_pairs(DataConfig(**kw, cache_dir=str(tmp_path / "a"), n_jobs=1), MODEL,
                        show_progress_bar=False)
    pooled = load_pairs(DataConfig(**kw, cache_dir=str(tmp_path / "b"), n_jobs=2), MODEL,
                        show_progress_bar=False)
    assert pooled.ids == inline.ids and pooled.skipped.keys() == inline.skipped.keys()
    assert all(torch.equal(a.edge_index, b.edge_index) for a, b in zip(inline.graphs,
                                                                       pooled.graphs))


def _pairs(captions: list[str]) -> PairData:
    ids = [str(i) for i in range(len(captions))]
    graphs = [Data(x=torch.full((1, 2), float(i)), num_nodes=1) for i in range(len(captions))]
    return PairData(ids, graphs, list(captions), pd.DataFrame({"id": ids}), {})


def test_random_split_matches_paper_recipe():
    pairs = _pairs([f"title {i}" for i in range(103)])
    cfg = DataConfig(source="amcsd")
    split = split_indices(pairs, cfg)
    assert [len(split[k]) for k in ("train", "val", "test")] == [82, 10, 11]
    ref = torch.utils.data.random_split(range(103), [82, 10, 11],
                                        generator=torch.Generator().manual_seed(42))
    for key, subset in zip(("train", "val", "test"), ref):
        assert list(split[key]) == list(subset.indices)
    again = split_indices(pairs, cfg)
    assert all(np.array_equal(split[k], again[k]) for k in split)
    other = split_indices(pairs, DataConfig(source="amcsd", seed=1))
    assert not np.array_equal(split["train"], other["train"])


def test_grouped_split_keeps_captions_together():
    rng = np.random.default_rng(0)
    captions = [f"Title {int(k)}" + (" " if rng.random() < 0.5 else "") for k in
                rng.integers(0, 40, size=300)]
    captions[:5] = ["The  SAME title"] * 2 + ["the same TITLE"] * 3
    pairs = _pairs(captions)
    cfg = DataConfig(source="amcsd", split="grouped")
    split = split_indices(pairs, cfg)
    allidx = np.concatenate(list(split.values()))
    assert sorted(allidx.tolist()) == list(range(300))
    side = {}
    for key, idx in split.items():
        for i in idx:
            norm = " ".join(captions[i].lower().split())
            assert side.setdefault(norm, key) == key, f"{norm!r} on two sides"
    assert 0.7 * 300 <= len(split["train"]) <= 0.9 * 300
    assert len(split["val"]) > 0 and len(split["test"]) > 0
    again = split_indices(pairs, cfg)
    assert all(np.array_equal(split[k], again[k]) for k in split)


def test_pair_dataset_and_fingerprint():
    pairs = _pairs(["a", "b", "c", "d"])
    ds = PairDataset(pairs, np.array([2, 0]))
    assert len(ds) == 2
    graph, cap = ds[0]
    assert cap == 2 and pairs.captions[cap] == "c" and graph is pairs.graphs[2]
    with pytest.raises(IndexError):
        PairDataset(pairs, [7])
    fp = data_fingerprint(pairs)
    assert len(fp) == 64 and fp == data_fingerprint(_pairs(["a", "b", "c", "d"]))
    assert fp != data_fingerprint(_pairs(["a", "b", "c", "e"]))


def test_data_config_validation():
    with pytest.raises(ValueError, match="source"):
        DataConfig(source="cod")
    with pytest.raises(ValueError, match="needs a path"):
        DataConfig(source="cif_dir")
    with pytest.raises(ValueError, match="fractions"):
        DataConfig(source="amcsd", fractions=(0.5, 0.1, 0.1))
    with pytest.raises(ValueError, match="mineral_keywords needs captions='keywords'"):
        DataConfig(source="amcsd", mineral_keywords=True)
    with pytest.raises(ValueError, match="chemistry_keywords needs captions='keywords'"):
        DataConfig(source="amcsd", chemistry_keywords=True)


# ----------------------------------------------------------------------------- AMCSD

pytest.importorskip("larixite")


def _elements(formula: str) -> set[str]:
    return {e.symbol for e in Composition(formula.replace(" ", "")).elements}


def test_amcsd_subset_compositions(tmp_path):
    cfg = DataConfig(source="amcsd", max_items=60, n_jobs=1, cache_dir=str(tmp_path))
    df = load_records(cfg)
    assert len(df) + len(df.attrs["skipped"]) == 60 and len(df) >= 50
    for formula, structure in zip(df["formula"], df["structure"]):
        found = {e.symbol for e in structure.composition.elements}
        assert found <= _elements(formula)
        assert _elements(formula) - found <= {"H"}
    assert df["id"].iloc[0] == "amcsd-3" and not df["placeholder"].any()
    assert df["caption"].iloc[0] == "The crystal structures of some metallic sulfides"
    pairs = load_pairs(cfg, MODEL, show_progress_bar=False)
    assert set(pairs.ids) == set(df["id"]) and len(pairs.captions) == len(pairs.ids)


def test_amcsd_label_repair_and_placeholders(tmp_path):
    entries = {e["amcsd_id"]: e for e in read_amcsd_entries(ids=[9319, 9268, 18330, 11134])}
    # NH4 read as nihonium, BI as bismuth, CO3 as cobalt without the formula check
    # (the one door repairs from the CIF's own formula too: these CIFs have no type symbols)
    for ams_id, wrong, right in ((9319, "Nh", "N"), (9268, "Bi", "B"), (18330, "Co", "C")):
        raw = _raw_structure(entries[ams_id]["cif"])
        assert wrong in {e.symbol for e in raw.composition.elements}
        for formula in (entries[ams_id]["formula"], None):
            fixed, notes = parse_cif(entries[ams_id]["cif"], formula)
            elements = {e.symbol for e in fixed.composition.elements}
            assert wrong not in elements and right in elements
            assert any(f"{wrong}->{right}" in n for n in notes)
            assert len(fixed) == len(raw)
    raw = _raw_structure(entries[9268]["cif"])
    with pytest.raises(ValueError, match="not in the formula"):
        check_composition(raw, "Li2 Ge4 O7")


def _raw_structure(text):
    import warnings

    from pymatgen.io.cif import CifParser

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return CifParser.from_str(text).parse_structures(primitive=False)[0]


def test_amcsd_placeholders_dropped(tmp_path, monkeypatch):
    # read three known entries (one Wyckoff handbook entry) instead of the first N
    monkeypatch.setattr(sources_mod, "read_amcsd_entries",
                        lambda path, n, cache_dir: read_amcsd_entries(path, n,
                                                                      ids=[11134, 9319, 5]))
    cfg = DataConfig(source="amcsd", n_jobs=1, cache_dir=str(tmp_path))
    pairs = load_pairs(cfg, MODEL, show_progress_bar=False)
    assert pairs.ids == ["amcsd-9319", "amcsd-5"]
    assert pairs.skipped["amcsd-11134"].startswith("placeholder title")
    assert "repaired Nh->N" in pairs.meta["composition_note"].iloc[0]
    df = load_records(cfg)  # records keep placeholders, flagged
    assert list(df["placeholder"]) == [True, False, False]

    class Boom:
        def __init__(self, *args, **kwargs):
            raise RuntimeError("graph builder called")

    # caption choices reuse graphs
    monkeypatch.setattr(graph_cache_mod, "CrystalGraphBuilder", Boom)
    kept = load_pairs(DataConfig(source="amcsd", n_jobs=1, cache_dir=str(tmp_path),
                                 drop_placeholder_titles=False), MODEL, show_progress_bar=False)
    assert kept.ids[0] == "amcsd-11134"
    assert kept.captions[0] == "Cubic closest packed, ccp, structure"


def test_keyword_captions_in_pairs(cif_dir, tmp_path):
    cfg = DataConfig(source="cif_dir", path=str(cif_dir), cache_dir=str(tmp_path / "cache"),
                     n_jobs=1, captions="keywords", keyword_extractor="yake")
    pairs = load_pairs(cfg, MODEL, show_progress_bar=False)
    assert len(pairs) == 4 and all(pairs.captions)
    assert "piezoelectric" in pairs.captions[2].lower()
    assert list(pairs.meta["caption"]) == pairs.captions
    assert pairs.meta["title"].iloc[2] == "Zinc oxide thin films for piezoelectric devices"
    assert len(list((tmp_path / "cache" / "keywords").glob("yake-*.json"))) == 1


def test_mineral_names_and_chemistry_join_keyword_captions(tmp_path, monkeypatch):
    # real AMCSD entries: a garnet with a German title (Granat), a synthetic compound whose
    # "mineral" is a formula, and a mineral whose title names it by chemistry only
    ids = [17914, 16092, 9319]
    monkeypatch.setattr(sources_mod, "read_amcsd_entries",
                        lambda path, n, cache_dir: read_amcsd_entries(path, n, ids=ids))
    plain_cfg = DataConfig(source="amcsd", n_jobs=1, cache_dir=str(tmp_path), captions="keywords")
    plain = load_pairs(plain_cfg, MODEL, show_progress_bar=False)
    cfg = DataConfig(source="amcsd", n_jobs=1, cache_dir=str(tmp_path), captions="keywords",
                     mineral_keywords=True)
    pairs = load_pairs(cfg, MODEL, show_progress_bar=False)
    assert pairs.ids == plain.ids == ["amcsd-17914", "amcsd-16092", "amcsd-9319"]
    assert pairs.captions[0] == "Almandine, " + plain.captions[0]
    assert pairs.captions[1] == plain.captions[1]  # "Co Cu O2" is a formula, not a name
    assert pairs.captions[2] == "Salammoniac, " + plain.captions[2]
    assert list(pairs.meta["caption"]) == pairs.captions
    assert data_fingerprint(pairs) != data_fingerprint(plain)
    # the chemical class from the formula (after the mineral name, unless a keyword says it)
    both = load_pairs(DataConfig(source="amcsd", n_jobs=1, cache_dir=str(tmp_path),
                                 captions="keywords", mineral_keywords=True,
                                 chemistry_keywords=True), MODEL, show_progress_bar=False)
    assert both.captions[0] == "Almandine, silicate, " + plain.captions[0]
    assert both.captions[1] == "oxide, " + plain.captions[1]
    assert both.captions[2] == "Salammoniac, " + plain.captions[2]  # it says "chloride"


def test_one_split_of_a_pinned_data_set_builds_only_its_graphs(tmp_path, structures, monkeypatch):
    names = sorted(structures)
    frame = pd.DataFrame({"id": names, "structure": [structures[n] for n in names],
                          "caption": [f"study {i} of {n}" for i, n in enumerate(names)]})
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(names) + "\n")
    cfg = DataConfig(source="table", path="mem", id_column="id", split="grouped",
                     fractions=(0.5, 0.25, 0.25), seed=3, ids_file=str(ids_file),
                     cache_dir=str(tmp_path / "cache"), n_jobs=1)
    full = load_pairs(cfg, MODEL, show_progress_bar=False, frame=frame)
    built = []
    real_run_tasks = graph_cache_mod.run_tasks
    monkeypatch.setattr(graph_cache_mod, "run_tasks",
                        lambda items, *a: built.append(len(items)) or real_run_tasks(items, *a))
    for side, idx in split_indices(full, cfg).items():
        part = load_pairs(cfg, MODEL, show_progress_bar=False, frame=frame, split=side)
        assert part.ids == [full.ids[j] for j in idx] and len(idx) > 0
        assert split_ids(cfg, side, frame=frame) == part.ids  # the same side, no graphs
        records = load_records(cfg, frame=frame, ids=part.ids)  # only that side is parsed
        assert list(records["id"]) == part.ids
        assert part.captions == [full.captions[j] for j in idx]
        assert list(part.meta["id"]) == part.ids
        for j, g in zip(idx, part.graphs):
            assert torch.equal(g.x, full.graphs[j].x)
            assert torch.equal(g.edge_index, full.graphs[j].edge_index)
    assert sum(built) == len(full.ids)  # each side built only its own graphs
    # without a pinned data set the split would depend on which graphs build
    with pytest.raises(ValueError, match="ids_file"):
        load_pairs(DataConfig(source="table", path="mem", id_column="id", n_jobs=1,
                              cache_dir=str(tmp_path / "c2")), MODEL, frame=frame, split="test")
    # a pinned pair that no longer builds is named, not silently dropped
    bad = frame.copy()
    bad.loc[0, "structure"] = "data_x\nnot a CIF"
    cfg_bad = DataConfig(source="table", path="mem", id_column="id", split="random",
                         fractions=(0.0, 0.0, 1.0), ids_file=str(ids_file),
                         cache_dir=str(tmp_path / "c3"), n_jobs=1)
    with pytest.raises(ValueError, match=f"no longer build.*first: {names[0]}"):
        load_pairs(cfg_bad, MODEL, show_progress_bar=False, frame=bad, split="test")
    with pytest.raises(ValueError, match=f"no longer build.*first: {names[0]}"):
        load_pairs(cfg_bad, MODEL, show_progress_bar=False, frame=bad)  # the whole set too
