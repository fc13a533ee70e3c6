from __future__ import annotations

import pickle
import shutil

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.pipeline import Pipeline
from sklearn.utils.estimator_checks import check_estimator

from matminer_clasp.zeroshot import (
    DEFAULT_NEGATIVE_TEMPLATES,
    DEFAULT_TEMPLATES,
    ZeroShotClassifier,
)

LABELS = ["ferroelectric", "garnet", "spinel oxide"]

_NEEDS_EMBEDDINGS = (
    "fits on random data with 1-10 features; a zero-shot classifier compares X with text "
    "embeddings, so X must be structures or embeddings of the model's width (it raises a clear "
    "ValueError instead)"
)

#: ``sklearn.utils.estimator_checks`` that cannot apply to a zero-shot classifier, and why. All
#: API checks (cloning, get/set_params, repr, tags, no work in ``__init__``, unfitted errors,
#: sparse / complex / empty / regression-target rejection, 1-D X) pass; the ones below fit on
#: random low-dimensional ``X``, which must be rejected here, or expect the classes of ``y`` back.
#: Their substance (pickling, idempotent fit, ``n_features_in_``, order / subset invariance,
#: proba-decision consistency, ``Pipeline``) is tested below on model-sized embeddings. Test
#: metadata, so it lives here, not in the library: ``check_estimator`` takes it from the caller.
EXPECTED_FAILED_CHECKS: dict[str, str] = {
    name: _NEEDS_EMBEDDINGS
    for name in (
        "check_fit_score_takes_y",
        "check_estimators_overwrite_params",
        "check_dont_overwrite_parameters",
        "check_estimators_fit_returns_self",
        "check_readonly_memmap_input",
        "check_n_features_in_after_fitting",
        "check_positive_only_tag_during_fit",
        "check_estimators_dtypes",
        "check_dtype_object",
        "check_pipeline_consistency",
        "check_estimators_nan_inf",
        "check_estimators_pickle",
        "check_f_contiguous_array_estimator",
        "check_classifier_data_not_an_array",
        "check_classifiers_classes",
        "check_classifiers_train",
        "check_supervised_y_2d",
        "check_decision_proba_consistency",
        "check_methods_sample_order_invariance",
        "check_methods_subset_invariance",
        "check_fit2d_1sample",
        "check_fit2d_1feature",
        "check_dict_unchanged",
        "check_fit_idempotent",
        "check_fit_check_is_fitted",
        "check_n_features_in",
        "check_fit2d_predict1d",
    )
}
EXPECTED_FAILED_CHECKS["check_classifiers_one_label"] = (
    "classes_ come from labels, so y with one class does not make a one-class classifier "
    "(and the check fits on 10-feature random X)"
)


def unit(rng, n, d=32):
    x = rng.normal(size=(n, d))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def clf(tiny_model_dir):
    return ZeroShotClassifier(LABELS, model=str(tiny_model_dir)).fit()


def ensemble(model, label, templates):
    e = model.encode_texts([t.format(label) if "{}" in t else t for t in templates])
    m = e.mean(axis=0)
    return m / np.linalg.norm(m)


def test_class_embeddings_are_renormalised_template_means(clf, tiny_model):
    assert list(clf.classes_) == LABELS
    assert clf.class_embeddings_.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(clf.class_embeddings_, axis=1), 1, atol=1e-5)
    for i, label in enumerate(LABELS):
        np.testing.assert_allclose(
            clf.class_embeddings_[i], ensemble(tiny_model, label, DEFAULT_TEMPLATES), atol=1e-5
        )
    assert clf.n_features_in_ == 32


def test_structures_embeddings_and_frames_agree(clf, tiny_model, structures):
    items = list(structures.values())
    emb = tiny_model.encode_structures(items)
    cos = emb @ clf.class_embeddings_.T
    np.testing.assert_allclose(clf.decision_function(items), cos, atol=1e-5)
    expected = np.asarray(LABELS)[cos.argmax(axis=1)]
    frame = pd.DataFrame(emb, columns=[f"clasp_{i}" for i in range(32)])
    frame["formula"] = [s.composition.reduced_formula for s in items]
    by_column = pd.DataFrame({"structure": items})
    for X in (items, emb, emb.tolist(), frame, pd.Series(items), by_column):
        assert list(clf.predict(X)) == list(expected)
    proba = clf.predict_proba(emb)
    np.testing.assert_allclose(proba.sum(axis=1), 1, atol=1e-6)
    assert (proba.argmax(axis=1) == cos.argmax(axis=1)).all()
    z = np.exp(cos / clf.temperature_)
    np.testing.assert_allclose(proba, z / z.sum(axis=1, keepdims=True), rtol=1e-5)
    # unnormalised embeddings are projected onto the sphere (cosine, not dot product)
    np.testing.assert_allclose(clf.decision_function(emb * 7.0), cos, atol=1e-5)
    assert clf.score(emb, expected) == 1.0


def test_pipeline_with_clasp_featurizer(tiny_model_dir, tiny_model, structures):
    from matminer_clasp.featurizers import ClaspFeaturizer

    items = list(structures.values())
    pipe = Pipeline(
        [
            ("feat", ClaspFeaturizer(model=str(tiny_model_dir))),
            ("clf", ZeroShotClassifier(LABELS, model=str(tiny_model_dir))),
        ]
    ).fit(items)
    direct = ZeroShotClassifier(LABELS, model=tiny_model).fit()
    assert list(pipe.predict(items)) == list(direct.predict(items))
    np.testing.assert_allclose(pipe.predict_proba(items), direct.predict_proba(items), atol=1e-5)
    assert set(pipe.predict(items)) <= set(LABELS)


def test_sklearn_estimator_checks(tiny_model_dir):
    statuses = {}

    def record(*, check_name, status, **_):
        statuses.setdefault(status, []).append(check_name)

    est = ZeroShotClassifier(LABELS, model=str(tiny_model_dir))
    check_estimator(
        est, expected_failed_checks=EXPECTED_FAILED_CHECKS, on_skip=None, on_fail=None,
        callback=record,
    )
    assert "failed" not in statuses, statuses.get("failed")
    assert not set(statuses.get("xfail", [])) - set(EXPECTED_FAILED_CHECKS)
    # the API checks really run and pass
    for name in ("check_get_params_invariance", "check_set_params", "check_estimators_unfitted",
                 "check_no_attributes_set_in_init", "check_estimator_sparse_array",
                 "check_complex_data", "check_classifiers_regression_target"):
        assert name in statuses["passed"]


def test_sklearn_contract_on_embeddings(clf, rng, tiny_model_dir):
    X = unit(rng, 40)
    # get_params returns the constructor arguments unchanged; clone does not load anything
    params = clf.get_params()
    assert params["labels"] is LABELS and params["model"] == str(tiny_model_dir)
    other = clone(clf)
    assert not hasattr(other, "classes_")
    np.testing.assert_array_equal(other.fit().predict(X), clf.predict(X))
    # idempotent fit, subset and order invariance
    np.testing.assert_allclose(clf.fit().decision_function(X), other.decision_function(X))
    perm = rng.permutation(40)
    np.testing.assert_allclose(clf.predict_proba(X[perm]), clf.predict_proba(X)[perm], atol=1e-6)
    np.testing.assert_allclose(clf.predict_proba(X[:7]), clf.predict_proba(X)[:7], atol=1e-6)
    # pickling keeps the fitted state but not the lazily loaded model
    blob = pickle.dumps(clf)
    assert len(blob) < 20_000
    back = pickle.loads(blob)
    np.testing.assert_allclose(back.predict_proba(X), clf.predict_proba(X), atol=1e-6)


def test_bad_inputs_raise_clear_errors(clf, rng):
    with pytest.raises(ValueError, match="X has 5 features.*expecting 32"):
        clf.predict(unit(rng, 3, 5))
    with pytest.raises(ValueError, match="2D"):
        clf.predict(unit(rng, 1)[0])
    X = unit(rng, 4)
    X[2, 3] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinity in rows \[2\]"):
        clf.predict(X)
    with pytest.raises(ValueError, match="all-zero rows"):
        clf.predict(np.zeros((2, 32)))
    with pytest.raises(ValueError, match="not in labels"):
        clone(clf).fit(unit(rng, 2), ["garnet", "perovskite"])
    with pytest.raises(ValueError, match="placeholder"):
        ZeroShotClassifier(LABELS, templates=["a material"], model=clf.model).fit()
    with pytest.raises(ValueError, match="at least two labels"):
        ZeroShotClassifier(["garnet"], model=clf.model).fit()
    with pytest.raises(ValueError, match="exactly one label"):
        ZeroShotClassifier(LABELS, binary=True, model=clf.model).fit()
    with pytest.raises(Exception, match="not fitted"):
        ZeroShotClassifier(LABELS, model=clf.model).predict(X)


def test_binary_mode(tiny_model_dir, tiny_model, rng):
    clf = ZeroShotClassifier("ferroelectric", binary=True, model=str(tiny_model_dir)).fit()
    assert clf.classes_.tolist() == [False, True]
    pos = ensemble(tiny_model, "ferroelectric", DEFAULT_TEMPLATES)
    neg = ensemble(tiny_model, "ferroelectric", DEFAULT_NEGATIVE_TEMPLATES)
    X = unit(rng, 50)
    margin = X @ pos - X @ neg
    np.testing.assert_allclose(clf.decision_function(X), margin, atol=1e-5)
    np.testing.assert_array_equal(clf.predict(X), clf.decision_function(X) > 0)
    sure = np.abs(margin) > 1e-4
    np.testing.assert_array_equal(clf.predict(X)[sure], (margin > 0)[sure])
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba[:, 1], 1 / (1 + np.exp(-margin / clf.temperature_)), rtol=1e-5)
    np.testing.assert_array_equal(proba[:, 1] > 0.5, clf.predict(X))

    # user-given negative prompts, literal (no placeholder)
    lit = ZeroShotClassifier(
        ["ferroelectric"], binary=True, negative_templates=["a paraelectric material"],
        model=tiny_model,
    ).fit()
    np.testing.assert_allclose(
        lit.class_embeddings_[0], tiny_model.encode_texts("a paraelectric material")[0], atol=1e-5
    )


def test_binary_calibration_threshold_and_temperature(tiny_model_dir, rng):
    base = ZeroShotClassifier("garnet", binary=True, model=str(tiny_model_dir)).fit()
    X = unit(rng, 200)
    margin = base.decision_function(X)
    cut = np.quantile(margin, 0.7)
    y = margin > cut  # ground truth: a shifted decision boundary
    cal = clone(base).fit(X, y)
    assert cal.threshold_ == pytest.approx(float(cut), abs=float(np.ptp(margin)) / 50)
    assert (cal.predict(X) == y).mean() == 1.0
    assert (base.predict(X) == y).mean() < 1.0
    np.testing.assert_array_equal(cal.predict_proba(X)[:, 1] > 0.5, cal.predict(X))
    # 0/1 and label strings are accepted too
    y01 = y.astype(int)
    assert clone(base).fit(X, y01).threshold_ == cal.threshold_
    ystr = np.where(y, "garnet", "other")
    assert clone(base).fit(X, ystr).threshold_ == cal.threshold_
    # calibrate=False keeps the zero-shot rule
    assert clone(base).set_params(calibrate=False).fit(X, y).threshold_ == 0.0


def test_multiclass_temperature_calibration(clf, rng):
    X = unit(rng, 300)
    truth = clf.classes_[clf.decision_function(X).argmax(axis=1)]
    sharp = clone(clf).fit(X, truth)
    noisy = clone(clf).fit(X, rng.permutation(truth))
    assert sharp.temperature_ < noisy.temperature_
    np.testing.assert_array_equal(sharp.predict(X), clf.predict(X))  # argmax unchanged
    # the tiny model stores no logit scale: the fallback temperature
    assert clf.temperature is None and clf.temperature_ == 0.1


def test_default_temperature_is_the_models_logit_scale(tiny_model_dir, tmp_path, rng):
    import json

    folder = tmp_path / "scaled"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(logit_scale=25.0, logit_bias=-10.0)
    (folder / "config.json").write_text(json.dumps(config))
    X = unit(rng, 20)
    clf = ZeroShotClassifier(LABELS, model=str(folder)).fit()
    assert clf.temperature_ == pytest.approx(1 / 25.0)
    z = np.exp(25.0 * clf.decision_function(X))
    np.testing.assert_allclose(clf.predict_proba(X), z / z.sum(axis=1, keepdims=True), rtol=1e-6)
    binary = ZeroShotClassifier("garnet", binary=True, model=str(folder)).fit()
    margin = binary.decision_function(X)  # the bias cancels in "X" vs "not X"
    np.testing.assert_allclose(binary.predict_proba(X)[:, 1], 1 / (1 + np.exp(-25.0 * margin)),
                               rtol=1e-6)
    # a given temperature wins; calibration still replaces it
    assert ZeroShotClassifier(LABELS, model=str(folder), temperature=0.5).fit().temperature_ == 0.5
    truth = clf.classes_[clf.decision_function(X).argmax(axis=1)]
    assert clone(clf).fit(X, truth).temperature_ != pytest.approx(1 / 25.0)
    with pytest.raises(ValueError, match="temperature must be positive"):
        ZeroShotClassifier(LABELS, model=str(folder), temperature=0.0).fit()
