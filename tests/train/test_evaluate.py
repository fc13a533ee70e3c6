import argparse
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from matminer_clasp.train.data import PairData
from matminer_clasp.train.evaluate import (
    DEFAULT_KEYWORDS,
    PAPER_CONCEPTS,
    add_evaluate_arguments,
    evaluate_embeddings,
    evaluate_model,
    keyword_counts,
    keyword_labels,
    ranking_metrics,
    retrieval_recall,
    write_report,
)


def test_keyword_matching_rules():
    titles = [
        "High-pressure phase of MgSiO3",        # 0 hyphen vs space
        "Spinels in meteorites",                 # 1 plural
        "Thermo-electric properties of PbTe",    # 2 hyphen inside a word
        "FERROMAGNETISM in thin films",          # 3 case, variation
        "A new garnet",                          # 4
        "Lithium batteries",                     # 5 -ies plural of a -y keyword
        "Pressure at high temperature",          # 6 words present but not as the phrase
    ]
    kw = {"high pressure": ["high pressure"], "spinel": ["spinels"], "battery": ["battery"],
          "thermoelectric": ["thermoelectric"], "ferromagnetic": PAPER_CONCEPTS["ferromagnetic"],
          "magnetic": ["magnetic"]}
    labels = keyword_labels(titles, kw)
    assert np.flatnonzero(labels["high pressure"]).tolist() == [0]
    assert np.flatnonzero(labels["spinel"]).tolist() == [1]
    assert np.flatnonzero(labels["thermoelectric"]).tolist() == [2]
    assert np.flatnonzero(labels["ferromagnetic"]).tolist() == [3]
    assert np.flatnonzero(labels["battery"]).tolist() == [5]
    assert np.flatnonzero(labels["magnetic"]).tolist() == []  # "ferromagnetism" lacks "magnetic"
    assert keyword_labels(["Ferromagnetic order"], ["magnetic"])["magnetic"].all()  # substring
    counts = keyword_counts(titles, ["garnet", "spinel", "zeolite"])
    assert counts.to_dict() == {"garnet": 1, "spinel": 1, "zeolite": 0}
    assert set(PAPER_CONCEPTS) <= set(DEFAULT_KEYWORDS)
    assert "superconductivity" in DEFAULT_KEYWORDS["superconductor"]


def test_ranking_metrics_match_sklearn_with_ties():
    rng = np.random.default_rng(0)
    scores = np.round(rng.normal(size=200), 1)  # many ties
    labels = rng.random(200) < 0.3
    auc, ap = ranking_metrics(scores, labels)
    assert auc[0] == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert ap[0] == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
    # weights = resampling counts: same as evaluating the resampled list
    idx = rng.integers(0, 200, 200)
    w = np.bincount(idx, minlength=200)[None, :]
    auc_w, ap_w = ranking_metrics(scores, labels, w)
    assert auc_w[0] == pytest.approx(roc_auc_score(labels[idx], scores[idx]), abs=1e-12)
    assert ap_w[0] == pytest.approx(average_precision_score(labels[idx], scores[idx]), abs=1e-12)
    nan_auc, nan_ap = ranking_metrics(scores, np.zeros(200, bool))
    assert np.isnan(nan_auc[0]) and np.isnan(nan_ap[0])


def _synthetic(n_titles=30, per_title=3, seed=0):
    """Embeddings where 'garnet' structures point along axis 0: perfectly separable."""
    rng = np.random.default_rng(seed)
    titles, emb = [], []
    for t in range(n_titles):
        garnet = t % 3 == 0
        title = f"Study {t} of a {'garnet' if garnet else 'pyroxene'}"
        for _ in range(per_title):
            v = rng.normal(size=8) * 0.1
            v[0] = 1.0 if garnet else -1.0
            titles.append(title)
            emb.append(v)
    return np.array(emb), titles


def test_perfectly_separable_keyword():
    emb, titles = _synthetic()
    kw_emb = {"garnet": np.eye(8)[:1], "pyroxene": -np.eye(8)[:1]}
    kw = {"garnet": ("garnet",), "pyroxene": ("pyroxene",)}
    report = evaluate_embeddings(emb, titles, kw_emb, kw, bootstrap=200, seed=1)
    for unit in ("per_structure", "per_title"):
        row = report[unit]["concepts"]["garnet"]
        assert row["roc_auc"] == 1.0 and row["ap"] == 1.0
        assert row["roc_auc_ci95"] == [1.0, 1.0]
    assert report["per_structure"]["concepts"]["garnet"]["n_positive"] == 30
    assert report["per_title"]["concepts"]["garnet"]["n_positive"] == 10
    assert report["n_titles"] == 30
    assert report["per_structure"]["mean"]["roc_auc"] == 1.0


def test_bootstrap_interval_contains_estimate_and_is_seeded():
    rng = np.random.default_rng(3)
    emb = rng.normal(size=(300, 8))
    titles = [f"t{i} {'spinel' if rng.random() < 0.3 else 'oxide'}" for i in range(300)]
    labels = np.array(["spinel" in t for t in titles])
    emb[labels, 0] += 0.8  # informative but noisy
    kw_emb = {"spinel": np.eye(8)[:1]}
    a = evaluate_embeddings(emb, titles, kw_emb, {"spinel": ("spinel",)}, bootstrap=300, seed=5)
    b = evaluate_embeddings(emb, titles, kw_emb, {"spinel": ("spinel",)}, bootstrap=300, seed=5)
    row = a["per_structure"]["concepts"]["spinel"]
    assert 0.5 < row["roc_auc"] < 1.0
    lo, hi = row["roc_auc_ci95"]
    assert lo < row["roc_auc"] < hi and hi - lo < 0.3
    lo, hi = row["ap_ci95"]
    assert lo < row["ap"] < hi
    assert row == b["per_structure"]["concepts"]["spinel"]
    assert row["prevalence"] == pytest.approx(labels.mean())


def test_recall_with_duplicate_titles():
    # captions: 0 shared by structures 0,1 ; 1 by structure 2 ; 2 by structure 3
    captions = np.eye(3, 4)
    structures = np.array([[0, 0, 0, 1.0], [1, 0, 0, 0.1], [0, 1, 0, 0], [0, 0.9, 0.1, 0]])
    structures /= np.linalg.norm(structures, axis=1, keepdims=True)
    owner = np.array([0, 0, 1, 2])
    out = retrieval_recall(structures, captions, owner, ks=(1, 2))
    t2s, s2t = out["text_to_structure"], out["structure_to_text"]
    # caption 0: its structure 1 ranks first (a hit although its structure 0 is far away);
    # caption 1: structure 2 first; caption 2: only structure 3 has a positive cosine
    assert t2s["recall@1"] == pytest.approx(1.0)
    # structure 0 is orthogonal to all captions -> ties, broken in its favour (hit);
    # structure 3 prefers caption 1 over its own caption 2 -> miss at 1, hit at 2
    assert s2t["recall@1"] == pytest.approx(3 / 4)
    assert s2t["recall@2"] == pytest.approx(1.0)
    assert s2t["random@1"] == pytest.approx(1 / 3)
    # random text->structure: caption 0 has 2 of 4 structures -> 1/2; others 1/4
    assert t2s["random@1"] == pytest.approx((0.5 + 0.25 + 0.25) / 3)


def test_random_embeddings_near_baselines():
    rng = np.random.default_rng(0)
    n = 400
    emb = rng.normal(size=(n, 16))
    titles = [f"paper {i // 2} {'zeolite' if (i // 2) % 4 == 0 else 'mica'}" for i in range(n)]
    owner = np.arange(n) // 2
    caps = rng.normal(size=(owner.max() + 1, 16))
    caps /= np.linalg.norm(caps, axis=1, keepdims=True)
    report = evaluate_embeddings(emb, titles, {"zeolite": rng.normal(size=(1, 16))},
                                 {"zeolite": ("zeolite",)}, caps, owner, bootstrap=0)
    row = report["per_structure"]["concepts"]["zeolite"]
    assert abs(row["roc_auc"] - 0.5) < 0.1 and row["roc_auc_ci95"] is None
    assert report["retrieval"]["structure_to_text"]["recall@10"] < 0.15


def _titled_pairs(model, structures) -> PairData:
    """8 pairs of 4 structures, titled so that garnet has 2 papers and spinel 1."""
    graphs = model.build_graphs([structures[k] for k in ("rocksalt", "diamond", "hexagonal",
                                                         "triclinic")] * 2)
    titles = ["Garnet A", "Spinel B", "garnet C", "Perovskite D"] * 2
    meta = pd.DataFrame({"id": [str(i) for i in range(8)], "title": titles})
    return PairData(ids=list(meta.id), graphs=graphs, captions=[t.lower() for t in titles],
                    meta=meta, skipped={})


def test_evaluate_model_and_reports(tmp_path, tiny_model, structures):
    pairs = _titled_pairs(tiny_model, structures)
    report = evaluate_model(tiny_model, pairs, np.arange(8), keywords=["garnet", "spinel"],
                            bootstrap=20, seed=0, min_papers=1)
    assert report["per_structure"]["concepts"]["garnet"]["n_positive"] == 4
    assert report["per_title"]["concepts"]["garnet"]["n_positive"] == 2
    assert report["retrieval"]["structure_to_text"]["n_candidates"] == 4
    assert report["label_source"] == "title"
    json_path, md_path = write_report(report, tmp_path / "rep")
    loaded = json.loads(json_path.read_text())
    assert loaded["n_structures"] == 8
    text = md_path.read_text()
    assert "| garnet | 4 |" in text and "Random ROC-AUC is 0.5" in text
    with pytest.raises(ValueError, match="no structures"):
        evaluate_model(tiny_model, pairs, [], bootstrap=0)


def test_cli_arguments():
    parser = add_evaluate_arguments(argparse.ArgumentParser())
    args = parser.parse_args(["model-dir", "--config", "c.yaml", "--out", "o", "--keywords",
                              "garnet", "spinel"])
    assert args.split == "test" and args.bootstrap == 1000 and args.keywords == ["garnet", "spinel"]


def test_keyword_presets():
    from matminer_clasp.train.evaluate import (
        AMCSD_EXTENDED_KEYWORDS,
        AMCSD_KEYWORDS,
        KEYWORD_PRESETS,
        PAPER_CONCEPTS,
        STRUCTURE_FAMILIES,
    )

    assert len(AMCSD_KEYWORDS) == 10 and set(STRUCTURE_FAMILIES) <= set(AMCSD_KEYWORDS)
    assert len(AMCSD_EXTENDED_KEYWORDS) == 16 and "mica" not in AMCSD_EXTENDED_KEYWORDS
    assert set(AMCSD_KEYWORDS) <= set(AMCSD_EXTENDED_KEYWORDS)
    assert KEYWORD_PRESETS["amcsd"] is AMCSD_KEYWORDS
    assert KEYWORD_PRESETS["amcsd-extended"] is AMCSD_EXTENDED_KEYWORDS
    assert KEYWORD_PRESETS["paper"] is PAPER_CONCEPTS


def test_concepts_with_fewer_than_min_papers_are_skipped(rng):
    n = 40
    emb = rng.normal(size=(n, 8))
    titles = [f"paper {i // 4} {'garnet' if i < 8 else 'spinel' if i < 24 else 'x'}"
              for i in range(n)]  # garnet: 2 papers, spinel: 4 papers
    kw = {"garnet": ("garnet",), "spinel": ("spinel",)}
    kw_emb = {k: rng.normal(size=(1, 8)) for k in kw}
    report = evaluate_embeddings(emb, titles, kw_emb, kw, bootstrap=10, seed=0)
    assert "garnet" not in report["per_structure"]["concepts"]
    assert "garnet" in report["skipped_concepts"] and report["positive_papers"]["garnet"] == 2
    assert list(report["per_structure"]["concepts"]) == ["spinel"]
    assert report["per_structure"]["mean"]["n_concepts"] == 1
    assert len(report["per_structure"]["mean"]["ap_boot"]) == 10


def test_evaluate_model_with_prompt_templates(tmp_path, tiny_model, structures):
    """Templates change only the keyword queries: each variation becomes its prompt centroid."""
    from matminer_clasp.zeroshot import DEFAULT_TEMPLATES, prompt_centroids

    pairs = _titled_pairs(tiny_model, structures)
    keywords = {"garnet": ("garnet",), "spinel": ("spinel", "spinell")}
    plain = evaluate_model(tiny_model, pairs, np.arange(8), keywords, bootstrap=0, min_papers=1)
    templated = evaluate_model(tiny_model, pairs, np.arange(8), keywords, bootstrap=0,
                               min_papers=1, templates=DEFAULT_TEMPLATES)
    assert templated["retrieval"] == plain["retrieval"]
    assert templated["positive_papers"] == plain["positive_papers"]
    assert templated["settings"]["templates"] == list(DEFAULT_TEMPLATES)
    assert "templates" not in plain["settings"]
    _, md_path = write_report(templated, tmp_path / "templated")
    assert "Keywords queried through the templates `{}`, `a {} material`" in md_path.read_text()
    _, md_path = write_report(plain, tmp_path / "plain")
    assert "queried through the templates" not in md_path.read_text()
    # the scores are the max over variations of the cosine to each variation's prompt centroid
    emb = tiny_model.encode_graphs(pairs.graphs)
    centroids = prompt_centroids(tiny_model, [[t.format(v) for t in DEFAULT_TEMPLATES]
                                              for v in keywords["spinel"]])
    expected = (emb @ centroids.T).max(axis=1)
    column = list(templated["_items"]["concepts"]).index("spinel")
    np.testing.assert_allclose(templated["_items"]["scores"][:, column], expected, atol=1e-5)
    assert not np.allclose(templated["_items"]["scores"], plain["_items"]["scores"])
    with pytest.raises(ValueError, match="placeholder"):
        evaluate_model(tiny_model, pairs, np.arange(8), keywords, bootstrap=0,
                       templates=["no placeholder"])


def test_cli_templates_option():
    parser = add_evaluate_arguments(argparse.ArgumentParser())
    assert parser.parse_args(["m"]).templates is None
    assert parser.parse_args(["m", "--templates", "default"]).templates == ["default"]
    args = parser.parse_args(["m", "--templates", "{}", "a {} mineral"])
    assert args.templates == ["{}", "a {} mineral"]


def test_species_labels_of_the_families():
    from matminer_clasp.train.mineral_families import (
        is_family_member,
        species_key,
        species_positives,
    )

    assert species_key("Pyrope") == "pyrope" and species_key("Spessartine-(Y)") == "spessartine"
    assert species_key("Ulvöspinel") == "ulvospinel" and species_key(None) == ""
    assert species_key(float("nan")) == ""
    assert is_family_member("garnet", "Almandine") and is_family_member("spinel", "Ulvospinel")
    assert not is_family_member("garnet", "Quartz") and not is_family_member("olivine", None)
    with pytest.raises(KeyError):
        is_family_member("silicate", "Quartz")  # a chemistry word has no species list
    found = species_positives(["Pyrope", "Forsterite", None, "hydrogarnet"],
                              ["garnet", "olivine", "silicate"])
    assert set(found) == {"garnet", "olivine"}  # only families get species labels
    assert found["garnet"].tolist() == [True, False, False, True]
    assert found["olivine"].tolist() == [False, True, False, False]


def test_extra_positives_join_the_title_labels(rng):
    n = 12
    emb = rng.normal(size=(n, 8))
    titles = [f"paper {i // 2}" + (" garnet" if i < 4 else "") for i in range(n)]
    kw = {"garnet": ("garnet",)}
    kw_emb = {"garnet": rng.normal(size=(1, 8))}
    species = np.zeros(n, bool)
    species[[4, 6, 7]] = True  # three structures of two papers whose titles do not say garnet
    plain = evaluate_embeddings(emb, titles, kw_emb, kw, bootstrap=0, min_papers=1)
    both = evaluate_embeddings(emb, titles, kw_emb, kw, bootstrap=0, min_papers=1,
                               extra_positives={"garnet": species, "spinel": species})
    assert plain["per_structure"]["concepts"]["garnet"]["n_positive"] == 4
    assert both["per_structure"]["concepts"]["garnet"]["n_positive"] == 7
    assert plain["positive_papers"]["garnet"] == 2 and both["positive_papers"]["garnet"] == 4
    assert both["per_title"]["concepts"]["garnet"]["n_positive"] == 4
    assert both["_items"]["labels"][:, 0].sum() == 7
    # the scores do not change, only what counts as a positive
    np.testing.assert_array_equal(plain["_items"]["scores"], both["_items"]["scores"])
    with pytest.raises(ValueError, match="one entry per structure"):
        evaluate_embeddings(emb, titles, kw_emb, kw, bootstrap=0,
                            extra_positives={"garnet": species[:5]})


def test_evaluate_model_title_or_species(tmp_path, tiny_model, structures):
    pairs = _titled_pairs(tiny_model, structures)
    pairs.meta["mineral"] = ["Pyrope", "Spinel", None, "Almandine"] * 2
    kwargs = dict(keywords=["garnet", "spinel"], bootstrap=0, min_papers=1)
    title = evaluate_model(tiny_model, pairs, np.arange(8), **kwargs)
    either = evaluate_model(tiny_model, pairs, np.arange(8), labels="title-or-species", **kwargs)
    # garnet: titles A and C (4 structures) plus the almandine of paper D (2 structures)
    assert title["per_structure"]["concepts"]["garnet"]["n_positive"] == 4
    assert either["per_structure"]["concepts"]["garnet"]["n_positive"] == 6
    assert either["species_positives"] == {"garnet": 4, "spinel": 2}
    assert either["label_source"] == "title or mineral species (families)"
    assert "mineral species" in either["settings"]["labels"]
    assert "official" in title["settings"]["labels"]
    _, md_path = write_report(either, tmp_path / "either")
    assert "Keyword positives: title match, or, for the structure-defined families" in (
        md_path.read_text())
    with pytest.raises(ValueError, match="expected one of"):
        evaluate_model(tiny_model, pairs, np.arange(8), labels="species", **kwargs)
    pairs.meta = pairs.meta.drop(columns="mineral")
    with pytest.raises(ValueError, match="mineral"):
        evaluate_model(tiny_model, pairs, np.arange(8), labels="title-or-species", **kwargs)


def test_cli_labels_argument():
    parser = add_evaluate_arguments(argparse.ArgumentParser())
    assert parser.parse_args(["m"]).labels == "title"
    assert parser.parse_args(["m", "--labels", "title-or-species"]).labels == "title-or-species"
    with pytest.raises(SystemExit):
        parser.parse_args(["m", "--labels", "species"])
