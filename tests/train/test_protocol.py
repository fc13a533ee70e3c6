"""The evaluation protocol of the next default model: the ``auto`` keyword set, per-item arrays,
the paired bootstrap (``matminer-clasp compare``) and the split seed in the report."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import yaml

from matminer_clasp import cli
from matminer_clasp.train.auto_keywords import (
    AUTO_STOP_WORDS,
    auto_keywords,
    auto_min_papers,
    parse_auto_spec,
    title_forms,
    title_words,
)
from matminer_clasp.train.compare import (
    ITEMS_FILE,
    format_comparison,
    load_items,
    paired_bootstrap,
    save_items,
)
from matminer_clasp.train.evaluate import evaluate_embeddings
from matminer_clasp.train.keywords import keyword_labels

# ------------------------------------------------------------------------- auto keyword set


def test_auto_spec_and_threshold():
    assert parse_auto_spec("auto") == 0  # the threshold is left to auto_min_papers
    assert parse_auto_spec("auto:5") == 5
    assert auto_min_papers(393) == 8 and auto_min_papers(1000) == 20  # 2 %, rounded up
    assert auto_min_papers(100) == 5 and auto_min_papers(0) == 5  # at least 5
    assert auto_min_papers(1000, 3) == 3
    assert parse_auto_spec("amcsd") is None
    for bad in ("auto:", "auto:0", "auto:x", "auto:-3"):
        with pytest.raises(ValueError, match="auto:N"):
            parse_auto_spec(bad)


def test_title_words_drop_stop_words_short_words_and_formulas():
    words = title_words("The crystal structure of MgSiO3 garnet and Fe-rich spinels, "
                        "Verfeinerung der Kristallstruktur von Zirkon: single-crystal "
                        "refinements")
    assert words == {"garnet", "ferich", "rich", "spinels", "zirkon"}  # stop-word plurals too
    assert {"structure", "with", "und", "dans", "xray"} <= AUTO_STOP_WORDS
    assert title_forms("High-pressure phases of Fe-rich olivine") == {
        "high-pressure", "high", "pressure", "phases", "fe-rich", "rich", "olivine"}


def test_hyphenated_concepts_are_queried_as_written():
    titles = ([f"High-pressure phase {i}" for i in range(3)] + ["A highpressure polymorph",
              "Garnet at high pressure", "Pressure and high temperature"])
    kw = auto_keywords(titles, min_papers=4)
    assert kw["high-pressure"] == ("high-pressure",)  # the written form, not "highpressure"
    labels = keyword_labels(titles, kw, whole_word=True)["high-pressure"]
    assert labels.tolist() == [True] * 5 + [False]


def test_whole_word_matching_with_plurals():
    titles = ["Chemical zoning in micas", "The mica group", "Anhydrous phases",
              "Garnets from Norway", "A garnet", "Garnetite", "Garnet-type Li7La3Zr2O12"]
    labels = keyword_labels(titles, ["mica", "hydrous", "garnet"], whole_word=True)
    assert np.flatnonzero(labels["mica"]).tolist() == [0, 1]
    assert not labels["hydrous"].any()
    assert np.flatnonzero(labels["garnet"]).tolist() == [3, 4, 6]  # hyphen = word break
    # the official substring rule finds mica in "chemical" and garnet in "garnetite"
    assert keyword_labels(titles, ["mica"])["mica"][0]
    assert keyword_labels(titles, ["garnet"])["garnet"][5]


def test_auto_keywords_rule():
    titles = ([f"Garnet number {i}" for i in range(3)] + [f"garnets in rock {i}" for i in range(2)]
              + [f"Spinel phase {i}" for i in range(4)] + ["Olivine", "olivine"]
              + ["Garnet number 0"] * 5)  # duplicates count once (papers, not structures)
    kw = auto_keywords(titles, min_papers=4)
    # garnet + garnets: one concept, 5 papers, named by its most frequent form
    assert kw == {"garnet": ("garnet",), "spinel": ("spinel",), "phase": ("phase",)}
    assert list(kw)[0] == "garnet"  # most papers first, then alphabetical
    assert "number" not in auto_keywords(titles, min_papers=4)  # 3 papers
    assert "number" in auto_keywords(titles, min_papers=3)
    # papers are distinct title strings, as in the evaluation's per-title groups
    assert "olivine" in auto_keywords(titles, min_papers=2)
    assert "olivine" not in auto_keywords(titles, min_papers=3)
    assert auto_keywords(list(reversed(titles)), min_papers=4) == kw  # order-free
    assert auto_keywords([], min_papers=1) == {}
    # default threshold: 2 % of 16 distinct titles is below the floor of 5 papers
    assert auto_keywords(titles) == auto_keywords(titles, min_papers=5) == {"garnet": ("garnet",)}


# ------------------------------------------------------------------------- paired bootstrap


def _toy(rng, n_titles=60, per_title=3, quality=1.0):
    """Embeddings of a model whose structures point at their concept with strength quality."""
    n = n_titles * per_title
    concept = np.repeat(rng.integers(0, 3, n_titles), per_title)
    names = ["garnet", "spinel", "olivine"]
    titles = [f"{names[c]} paper {i // per_title}" for i, c in enumerate(concept)]
    basis = np.eye(8)[:3]
    emb = quality * basis[concept] + rng.normal(size=(n, 8))
    kw = {k: (k,) for k in names}
    kw_emb = {k: basis[j][None, :] for j, k in enumerate(names)}
    cap_of = np.repeat(np.arange(n_titles), per_title)
    cap_emb = rng.normal(size=(n_titles, 8)) + quality * basis[concept[::per_title]]
    return emb, titles, kw_emb, kw, cap_emb, cap_of


def _items(quality, seed=0):
    emb, titles, kw_emb, kw, cap_emb, cap_of = _toy(np.random.default_rng(seed), quality=quality)
    report = evaluate_embeddings(emb, titles, kw_emb, kw, cap_emb, cap_of, bootstrap=0,
                                 min_papers=1)
    return report, report["_items"]


def test_items_reproduce_the_report_at_unit_weights():
    report, items = _items(quality=2.0)
    assert items["scores"].shape == (180, 3) and items["labels"].dtype == bool
    assert len(np.unique(items["group"])) == report["n_titles"] == 60
    same = paired_bootstrap(items, items, n_boot=50, seed=1)
    m = same["metrics"]
    assert m["roc_auc"]["a"] == pytest.approx(report["per_structure"]["mean"]["roc_auc"])
    assert m["ap"]["a"] == pytest.approx(report["per_structure"]["mean"]["ap"])
    r = report["retrieval"]
    assert m["text_to_structure_recall@10"]["a"] == pytest.approx(
        r["text_to_structure"]["recall@10"])
    assert m["structure_to_text_recall@10"]["a"] == pytest.approx(
        r["structure_to_text"]["recall@10"])
    for row in m.values():  # a model against itself: zero difference on every resample
        assert row["diff"] == 0 and row["diff_ci95"] == [0.0, 0.0]


def test_better_model_wins_with_an_interval_that_excludes_zero():
    _, good = _items(quality=3.0, seed=5)
    _, bad = _items(quality=0.3, seed=5)
    bad["labels"], bad["ids"] = good["labels"], good["ids"]  # same structures and labels
    for resample in ("title", "structure"):
        out = paired_bootstrap(good, bad, n_boot=200, seed=0, resample=resample)
        auc = out["metrics"]["roc_auc"]
        assert auc["diff"] > 0.2 and auc["diff_ci95"][0] > 0
        assert auc["p_a_not_better"] == 0.0
        assert out["settings"]["resample"] == resample
    flipped = paired_bootstrap(bad, good, n_boot=200, seed=0)["metrics"]["roc_auc"]
    assert flipped["diff_ci95"][1] < 0 and flipped["p_a_not_better"] == 1.0
    # seeded: the same call gives the same interval
    again = paired_bootstrap(good, bad, n_boot=200, seed=0)
    assert again["metrics"]["ap"]["diff_ci95"] == paired_bootstrap(
        good, bad, n_boot=200, seed=0)["metrics"]["ap"]["diff_ci95"]
    text = format_comparison(again)
    assert "| roc_auc |" in text and "paired bootstrap over titles" in text


def test_title_resampling_is_wider_than_structure_resampling_for_clustered_items():
    # structures of one paper share their error: resampling them one by one understates it
    _, a = _items(quality=1.0, seed=11)
    b = {k: v.copy() for k, v in a.items()}
    noise = np.random.default_rng(3).normal(scale=0.8, size=(60, 3))
    b["scores"] = (b["scores"] + noise[b["group"]]).astype(np.float32)
    width = {}
    for resample in ("title", "structure"):
        ci = paired_bootstrap(a, b, n_boot=400, seed=2, resample=resample)["metrics"]["roc_auc"]
        width[resample] = ci["diff_ci95"][1] - ci["diff_ci95"][0]
    assert width["title"] > width["structure"]


def test_sides_with_several_runs_are_averaged_per_resample():
    _, good = _items(quality=3.0, seed=5)
    _, bad = _items(quality=0.3, seed=5)
    _, mid = _items(quality=1.0, seed=5)
    for runs in (bad, mid):
        runs["labels"], runs["ids"] = good["labels"], good["ids"]
    single = {k: paired_bootstrap(good, b, n_boot=100, seed=4)["metrics"] for k, b in
              (("bad", bad), ("mid", mid))}
    both = paired_bootstrap([good, good], [bad, mid], n_boot=100, seed=4)
    for name, row in both["metrics"].items():
        assert row["b"] == pytest.approx((single["bad"][name]["b"] + single["mid"][name]["b"]) / 2)
        assert row["diff"] == pytest.approx(
            (single["bad"][name]["diff"] + single["mid"][name]["diff"]) / 2)
    assert both["settings"]["n_runs_a"] == 2 and both["settings"]["n_runs_b"] == 2
    assert "mean of 2 vs 2 runs" in format_comparison(both)
    with pytest.raises(ValueError, match="at least one"):
        paired_bootstrap([], [bad], n_boot=5)


def test_mismatched_evaluations_are_refused():
    _, a = _items(quality=1.0)
    b = {k: v.copy() for k, v in a.items()}
    b["ids"] = b["ids"][::-1].copy()
    with pytest.raises(ValueError, match="same structures"):
        paired_bootstrap(a, b, n_boot=5)
    c = {k: v.copy() for k, v in a.items()}
    c["concepts"] = np.asarray(["x", "y", "z"])
    with pytest.raises(ValueError, match="different keyword concepts"):
        paired_bootstrap(a, c, n_boot=5)
    with pytest.raises(ValueError, match="resample"):
        paired_bootstrap(a, a, n_boot=5, resample="paper")


def test_items_round_trip_without_pickle(tmp_path):
    _, items = _items(quality=1.0)
    path = save_items(items, tmp_path)
    assert path.name == ITEMS_FILE
    back = load_items(tmp_path)
    for key, value in items.items():
        assert np.array_equal(back[key], value), key
    with pytest.raises(FileNotFoundError, match="rerun"):
        load_items(tmp_path / "nowhere")


# ------------------------------------------------------------------ the commands end to end


@pytest.fixture()
def table_config(tmp_path, structures):
    names = ["rocksalt", "diamond", "hexagonal", "triclinic"]
    families = ["garnet", "spinel", "perovskite"]  # words of the tiny vocabulary
    rows = [{"structure": structures[names[i % 4]].as_dict(),
             "caption": f"{families[i % 3]} oxide {i}", "name": f"s{i}"} for i in range(36)]
    table = tmp_path / "pairs.jsonl"
    table.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = {"data": {"source": "table", "path": str(table), "id_column": "name",
                       "split": "grouped", "fractions": [0.2, 0.8, 0.0], "seed": 2026,
                       "n_jobs": 1, "cache_dir": str(tmp_path / "cache")},
              "output_dir": str(tmp_path / "run")}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_evaluate_val_auto_then_compare(tmp_path, tiny_model_dir, table_config, capsys):
    from tests.conftest import make_tiny_model

    other = tmp_path / "other"
    make_tiny_model(tmp_path / "other-src", seed=3).save_pretrained(other)
    outs = []
    for name, model in (("a", tiny_model_dir), ("b", other)):
        out = tmp_path / f"eval-{name}"
        argv = ["evaluate", str(model), "--config", str(table_config), "--split", "val",
                "--keywords", "auto:3", "--bootstrap", "20", "--out", str(out)]
        assert cli.main(argv) == 0
        outs.append(out)
    report = json.loads((outs[0] / "report.json").read_text())
    assert report["split"] == "val" and report["split_seed"] == 2026
    assert report["split_definition"]["fractions"] == [0.2, 0.8, 0.0]
    assert report["keyword_set"]["name"] == "auto:3"
    assert report["settings"]["keyword_match"].startswith("whole word")
    # 36 captions, each its own group: about 80 % of them in val, all three families >= 3 papers
    assert set(report["per_structure"]["concepts"]) == {"garnet", "spinel", "perovskite", "oxide"}
    assert "_items" not in report and (outs[0] / ITEMS_FILE).is_file()
    capsys.readouterr()
    result_file = tmp_path / "cmp" / "compare.json"
    assert cli.main(["compare", str(outs[0]), str(outs[1]), "--bootstrap", "50",
                     "--out", str(result_file)]) == 0
    printed = capsys.readouterr().out
    assert "| roc_auc |" in printed and "text_to_structure_recall@10" in printed
    result = json.loads(result_file.read_text())
    assert result["a_split_seed"] == 2026 and result["settings"]["resample"] == "title"
    # a side may be several runs (comma-separated folders), averaged
    assert cli.main(["compare", f"{outs[0]},{outs[1]}", str(outs[1]), "--bootstrap", "20"]) == 0
    assert "mean of 2 vs 1 runs" in capsys.readouterr().out
    assert result["metrics"]["roc_auc"]["a"] == pytest.approx(
        report["per_structure"]["mean"]["roc_auc"])
    # a report of another split cannot be compared
    out_test = tmp_path / "eval-train"
    assert cli.main(["evaluate", str(other), "--config", str(table_config), "--split", "train",
                     "--keywords", "auto:1", "--bootstrap", "0", "--out", str(out_test)]) == 0
    assert cli.main(["compare", str(outs[0]), str(out_test)]) == 2
    assert "same structures" in capsys.readouterr().err


def test_a_concept_is_named_by_a_form_that_finds_all_its_spellings():
    # "highpressure" is the most frequent spelling, but only "high-pressure" finds all five
    titles = ([f"A highpressure polymorph {i}" for i in range(3)]
              + ["High-pressure phase 1", "High-pressure phase 2", "Low temperature"])
    kw = auto_keywords(titles, min_papers=4)
    assert "high-pressure" in kw and "highpressure" not in kw
    labels = keyword_labels(titles, kw, whole_word=True)["high-pressure"]
    assert labels.tolist() == [True] * 5 + [False]


def _protocol_script(name: str):
    import importlib.util
    from pathlib import Path

    folder = Path(__file__).parents[2] / "benchmarks" / "default_model" / "protocol"
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(folder))  # as when run as a script: its siblings import
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(folder))
    return module


def test_label_noise_audit_counts_members_the_titles_miss(tmp_path):
    noise = _protocol_script("label_noise")
    from matminer_clasp.train.mineral_families import is_family_member as member

    assert member("spinel", "Ulvöspinel") and member("garnet", "Menzerite-(Y)")
    assert member("pyroxene", "Pyroxene-ideal")
    assert not member("garnet", "Tapiolite-(Fe)") and not member("garnet", None)
    ids = np.array([f"amcsd-{i}" for i in range(6)])
    minerals = ["Pyrope", "Almandine", "Grossular", "Quartz", "Co O", None]
    formulas = ["Mg3 Al2 Si3 O12", "Fe3 Al2 Si3 O12", "Ca3 Al2 Si3 O12", "Si O2", "Co O", "Fe S"]
    entries = {i: {"mineral": m, "formula": f} for i, m, f in zip(ids, minerals, formulas)}
    # one title says garnet; the model ranks the three garnets first, the labelled one third;
    # two titles say silicate (pyrope, quartz), and the model ranks them 4th and 6th
    np.savez(tmp_path / "items.npz", ids=ids, concepts=np.array(["garnet", "silicate"]),
             scores=np.array([[0.7, 0.45], [0.9, 0.6], [0.8, 0.5], [0.1, 0.1], [0.2, 0.4],
                              [0.3, 0.9]], np.float32),
             labels=np.array([[True, True], [False, False], [False, False], [False, True],
                              [False, False], [False, False]]))
    rows = noise.audit(tmp_path, entries)
    row = rows["garnet"]
    assert (row["title"], row["members"], row["unlabelled"], row["top20_members"]) == (1, 3, 2, 2)
    assert row["ap_title"] == pytest.approx(1 / 3)
    assert row["ap_either"] == pytest.approx(1.0)
    # a perfect species classifier puts the labelled garnet 1st, 2nd or 3rd among the three
    assert row["oracle_ap"] == pytest.approx((1 + 1 / 2 + 1 / 3) / 3, abs=0.05)
    # the formula rule finds four silicates (three garnets, quartz), both title positives among them
    chem = rows["silicate"]
    assert (chem["title"], chem["rule_positive"], chem["rule_roc_auc"]) == (2, 4, 0.75)
    assert 0.5 < chem["rule_ap"] < 1  # two title positives in random order among four
    assert chem["roc_auc"] == pytest.approx(1 / 8)  # 0.45 beats one of four negatives


def test_ablation_table_in_the_report_is_regenerated():
    from pathlib import Path

    root = Path(__file__).parents[2]
    script = _protocol_script("ablation_table")
    docs = [root / "docs" / "model-report.md",
            root / "benchmarks" / "default_model" / "protocol.md"]
    assert script.main(["--check", *map(str, docs)]) == 0
    assert script.embedded(docs[0].read_text()).count("\n") == len(script.ROWS) + 2
    # the test split's block: its models, a blank line, its comparisons
    test_block = script.embedded(docs[0].read_text(), script.TEST_START, script.TEST_END)
    assert test_block.count("\n") == len(script.TEST_MODELS) + len(script.TEST_ROWS) + 5
    assert "| the candidate | the recipe |" in test_block


def test_test_split_models_are_the_mean_of_their_draws():
    import json

    script = _protocol_script("ablation_table")
    data = json.loads((script.RESULTS / "protocol_test.json").read_text())
    label, draws = script.TEST_MODELS[0]
    aps = [data["models"][d]["amcsd"]["per_structure"]["ap"] for d in draws]
    lines = script.test_tables().splitlines()
    row = next(line for line in lines if line.startswith(f"| {label} |"))
    assert f"{sum(aps) / 3:.3f} ({min(aps):.3f}-{max(aps):.3f})" == row.split(" | ")[2]
    # every comparison of the test split averages three draws on each side
    for _, _, key in script.TEST_ROWS:
        comparison = data["comparisons"][key]["amcsd"]
        assert (comparison["settings"]["n_runs_a"], comparison["settings"]["n_runs_b"]) == (3, 3)
        assert (comparison["a_split"], comparison["b_split"]) == ("test", "test")
        assert comparison["a_split_seed"] == comparison["b_split_seed"] == 2026


def _comparison(cis: dict[tuple[str, str], tuple[float, float]]) -> dict:
    out: dict = {}
    for keywords in ("amcsd", "auto"):
        metrics = {}
        for metric in ("roc_auc", "ap", "text_to_structure_recall@10",
                       "structure_to_text_recall@10"):
            low, high = cis.get((keywords, metric), (-0.01, 0.01))
            metrics[metric] = {"diff": (low + high) / 2, "diff_ci95": [low, high]}
        out[keywords] = {"metrics": metrics}
    return out


def test_ablation_verdict_is_the_decision_rule():
    script = _protocol_script("ablation_table")
    assert script.verdict(_comparison({})) == "not kept"
    assert script.verdict(_comparison({("auto", "ap"): (0.01, 0.05)})) == "kept"
    # a gain that is not a headline metric does not count
    assert script.verdict(_comparison({("amcsd", "roc_auc"): (0.01, 0.05)})) == "not kept"
    # a headline metric wholly below zero vetoes a gain elsewhere
    both = {("auto", "ap"): (0.01, 0.05), ("amcsd", "text_to_structure_recall@10"): (-0.05, -0.01)}
    assert script.verdict(_comparison(both)) == "not kept"
    # a loss on a metric outside the headline set does not veto
    side = {("auto", "ap"): (0.01, 0.05), ("amcsd", "structure_to_text_recall@10"): (-0.05, -0.01)}
    assert script.verdict(_comparison(side)) == "kept"


def test_collect_reads_each_keyword_set_of_a_comparison_and_nothing_longer(tmp_path):
    collect = _protocol_script("collect")
    prefix = tmp_path / "compare_a_vs_b"
    for keywords in ("amcsd", "auto"):
        body = {"metrics": {"ap": {"diff": 0.1}}, "settings": {"concepts": ["x"], "seed": 0}}
        (tmp_path / f"compare_a_vs_b_{keywords}.json").write_text(json.dumps(body))
    # a comparison whose name extends this one must not pass for a keyword set
    (tmp_path / "compare_a_vs_b_templates_amcsd.json").write_text(json.dumps({"settings": {}}))
    out = tmp_path / "collected.json"
    collect.main(["--out", str(out), "--compare", f"a_vs_b={prefix}"])
    comparisons = json.loads(out.read_text())["comparisons"]
    assert set(comparisons["a_vs_b"]) == {"amcsd", "auto"}
    assert "concepts" not in comparisons["a_vs_b"]["amcsd"]["settings"]


def test_lookup_baseline_backs_off_from_name_to_system_to_prior():
    lookup = _protocol_script("lookup_baseline")
    assert lookup.chemical_system("Mg3 Al2 (SiO4)3") == "Al-Mg-O-Si"
    assert lookup.chemical_system(None) == ""
    train = [("pyrope", "Al-Mg-O-Si")] * 3 + [("quartz", "O-Si")] * 2
    positive = np.array([True, True, False, False, False])
    prior = 2 / 5
    system = (2 + 2 * prior) / (3 + 2)  # Al-Mg-O-Si: 2 of 3, smoothed toward the prior
    queries = [("pyrope", "Al-Mg-O-Si"), ("almandine", "Al-Mg-O-Si"), ("almandine", "Fe-O"),
               ("", "")]
    scores = lookup.lookup_scores(train, positive, queries)
    np.testing.assert_allclose(scores, [(2 + 2 * system) / (3 + 2), system, prior, prior])
