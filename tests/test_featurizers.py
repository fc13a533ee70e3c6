"""ClaspFeaturizer / ClaspTextFeaturizer: batching, matminer error semantics, pickling, pools."""

from __future__ import annotations

import copy
import pickle
import shutil

import numpy as np
import pandas as pd
import pytest
from matminer.featurizers.base import MultipleFeaturizer
from matminer.featurizers.structure import DensityFeatures
from pymatgen.core import Lattice, Molecule, Structure

from matminer_clasp import ClaspStructureFeaturizer
from matminer_clasp.errors import InvalidStructureError, InvalidTextError
from matminer_clasp.featurizers import ClaspFeaturizer, ClaspTextFeaturizer
from matminer_clasp.model import ClaspModel

BAD_ROWS = (7, 31)


def _good_structures(structures, n: int) -> list[Structure]:
    """``n`` distinct real structures: the conftest ones at several volumes."""
    base = list(structures.values())
    out = []
    for i in range(n):
        s = base[i % len(base)].copy()
        s.scale_lattice(s.volume * (0.9 + 0.02 * (i // len(base))))
        out.append(s)
    return out


def _bad_element() -> Structure:
    # mendelevium (Z=101) is beyond the 100-row CGCNN feature table
    return Structure(Lattice.cubic(4.0), ["Md", "O"], [[0, 0, 0], [0.5, 0.5, 0.5]])


@pytest.fixture(scope="module")
def frame(structures):
    good = _good_structures(structures, 48)
    rows = list(good)
    rows.insert(BAD_ROWS[0], Molecule(["O", "H", "H"], [[0, 0, 0], [0.96, 0, 0], [-0.24, 0.93, 0]]))
    rows.insert(BAD_ROWS[1], _bad_element())
    df = pd.DataFrame({"structure": rows, "id": [f"mp-{i}" for i in range(50)]})
    return df, good


def _clasp_block(df: pd.DataFrame, dim: int, prefix: str = "clasp") -> np.ndarray:
    return df[[f"{prefix}_{i}" for i in range(dim)]].to_numpy(dtype=float)


def test_featurize_dataframe_batched_with_bad_rows(frame, tiny_model_dir, tiny_model):
    df, good = frame
    dim = tiny_model.config.embedding_dim
    featurizer = ClaspFeaturizer(tiny_model_dir, batch_size=16)
    out = featurizer.featurize_dataframe(df, "structure", ignore_errors=True, pbar=False)
    labels = [f"clasp_{i}" for i in range(dim)]
    assert featurizer.feature_labels() == labels
    assert list(out.columns) == ["structure", "id", *labels]
    assert all(out[c].dtype == np.float64 for c in labels)
    emb = _clasp_block(out, dim)
    good_rows = [i for i in range(50) if i not in BAD_ROWS]
    assert np.isnan(emb[list(BAD_ROWS)]).all()
    assert np.isfinite(emb[good_rows]).all()
    np.testing.assert_allclose(np.linalg.norm(emb[good_rows], axis=1), 1.0, atol=1e-5)
    expected = tiny_model.encode_structures(good)
    np.testing.assert_allclose(emb[good_rows], expected, atol=1e-5)
    # the input frame is untouched and the row order is kept
    assert list(out["id"]) == list(df["id"])


def test_return_errors_column_matches_matminer(frame, tiny_model_dir):
    df, _ = frame
    featurizer = ClaspFeaturizer(tiny_model_dir)
    out = featurizer.featurize_dataframe(
        df, "structure", ignore_errors=True, return_errors=True, pbar=False
    )
    errors = out["ClaspFeaturizer Exceptions"]
    assert errors.drop(index=list(BAD_ROWS)).isna().all()
    molecule_error, element_error = errors[BAD_ROWS[0]], errors[BAD_ROWS[1]]
    # matminer's featurize_wrapper stores the formatted traceback; so do we
    assert molecule_error.startswith("Traceback (most recent call last):")
    assert "InvalidStructureError: got a pymatgen Molecule" in molecule_error
    assert "Md" in element_error and "no CGCNN atom features" in element_error
    # same text as matminer's own per-entry wrapper produces (last line)
    reference = featurizer.featurize_wrapper(
        (df["structure"][BAD_ROWS[0]],), return_errors=True, ignore_errors=True
    )[-1]
    assert molecule_error.strip().splitlines()[-1] == reference.strip().splitlines()[-1]


def test_bad_row_raises_naming_the_row(frame, tiny_model_dir):
    df, _ = frame
    featurizer = ClaspFeaturizer(tiny_model_dir)
    with pytest.raises(InvalidStructureError, match=r"row 7: got a pymatgen Molecule"):
        featurizer.featurize_dataframe(df, "structure", pbar=False)
    labelled = df.set_index("id")
    with pytest.raises(InvalidStructureError, match=r"row 7 \(index 'mp-7'\)"):
        featurizer.featurize_dataframe(labelled, "structure", pbar=False)
    with pytest.raises(InvalidStructureError, match="got None"):
        featurizer.featurize(None)
    with pytest.raises(ValueError, match="ignore_errors"):
        featurizer.featurize_many([None], return_errors=True)


def test_without_ignore_errors_the_work_stops_at_the_first_bad_row(structures, tiny_model_dir):
    rows = _good_structures(structures, 400)
    rows[5] = None
    featurizer = ClaspFeaturizer(tiny_model_dir, batch_size=4)
    taken = []
    with pytest.raises(InvalidStructureError, match=r"^row 5: .*None"):
        bar = {"file": _Counter(taken), "mininterval": 0, "miniters": 1}
        featurizer.featurize_many(rows, pbar=bar)
    # the bar counts every item taken from the input: the bad row's batch and the few the
    # graph workers had fetched ahead, not the 400
    assert 6 <= max(taken, default=0) <= 60


class _Counter:
    """A tqdm ``file`` that records the counts tqdm prints (``n/total``)."""

    def __init__(self, seen: list[int]) -> None:
        self.seen = seen

    def write(self, text: str) -> None:
        import re

        self.seen.extend(int(m) for m in re.findall(r"(\d+)/400", text))

    def flush(self) -> None:
        pass


def test_model_is_called_in_batches(frame, tiny_model_dir):
    df, good = frame
    model = ClaspModel.from_pretrained(tiny_model_dir)
    calls: list[int] = []
    real = model.encode_graphs

    def counting(graphs, *args, **kwargs):
        calls.append(len(graphs))
        return real(graphs, *args, **kwargs)

    model.encode_graphs = counting
    featurizer = ClaspFeaturizer(model, batch_size=16)
    rows = featurizer.featurize_many(df["structure"], ignore_errors=True, pbar=False)
    assert len(rows) == 50
    assert calls == [15, 15, 16, 2]  # 50 rows in chunks of 16, minus the two bad ones
    calls.clear()
    one = featurizer.featurize(good[0])
    assert calls == [1] and len(one) == model.config.embedding_dim
    assert all(isinstance(v, float) for v in one)


def test_a_failing_input_costs_only_its_row(structures, tiny_model_dir):
    model = ClaspModel.from_pretrained(tiny_model_dir)
    real = model.encode_graphs
    single = Structure(Lattice.cubic(3.35), ["Po"], [[0, 0, 0]])

    def fragile(graphs, *args, **kwargs):
        if any(g.num_nodes == 1 for g in graphs):
            raise RuntimeError("simulated kernel failure")
        return real(graphs, *args, **kwargs)

    model.encode_graphs = fragile
    items = [structures["rocksalt"], single, structures["diamond"]]
    featurizer = ClaspFeaturizer(model)
    rows = featurizer.featurize_many(items, ignore_errors=True, return_errors=True, pbar=False)
    assert np.isnan(rows[1][:-1]).all() and "simulated kernel failure" in rows[1][-1]
    assert np.isnan(rows[0][-1]) and np.isnan(rows[2][-1])
    np.testing.assert_allclose(
        [rows[0][:-1], rows[2][:-1]],
        ClaspModel.from_pretrained(tiny_model_dir).encode_structures(items[::2]),
        atol=1e-5,
    )

    def poisoned(graphs, *args, **kwargs):
        out = real(graphs, *args, **kwargs)
        out[[g.num_nodes == 1 for g in graphs]] = np.nan
        return out

    model.encode_graphs = poisoned
    with pytest.raises(RuntimeError, match="row 1: the model produced NaN"):
        featurizer.featurize_many(items, pbar=False)


def test_pickle_without_weights(structures, tiny_model_dir):
    featurizer = ClaspFeaturizer(tiny_model_dir)
    items = list(structures.values())
    before = np.asarray(featurizer.featurize_many(items, pbar=False))
    blob = pickle.dumps(featurizer)
    assert len(blob) < (tiny_model_dir / "model.safetensors").stat().st_size / 10
    clone = pickle.loads(blob)
    assert clone.get_model() is featurizer.get_model()  # one copy, in the model registry
    after = np.asarray(clone.featurize_many(items, pbar=False))
    np.testing.assert_array_equal(before, after)
    assert clone.get_params()["model"] == tiny_model_dir


def test_model_instance(structures, tiny_model_dir, tiny_model):
    by_instance = ClaspFeaturizer(tiny_model)
    by_folder = ClaspFeaturizer(str(tiny_model_dir))
    s = structures["triclinic"]
    np.testing.assert_allclose(by_instance.featurize(s), by_folder.featurize(s), atol=1e-6)
    assert by_instance.get_model() is tiny_model
    with pytest.raises(TypeError, match="save_pretrained"):
        pickle.dumps(by_instance)
    # in-process copies are fine: deepcopy copies the instance, copy shares it
    deep, shallow = copy.deepcopy(by_instance), copy.copy(by_instance)
    assert deep.get_model() is not tiny_model and shallow.get_model() is tiny_model
    np.testing.assert_allclose(deep.featurize(s), by_instance.featurize(s), atol=1e-6)
    by_instance.set_n_jobs(2)
    with pytest.raises(ValueError, match="n_jobs=2"):
        by_instance.featurize_many([s, s], pbar=False)


def test_alias_and_metadata(tiny_model_dir):
    assert ClaspStructureFeaturizer is ClaspFeaturizer
    featurizer = ClaspFeaturizer(tiny_model_dir)
    assert featurizer.n_jobs == 1
    assert featurizer.fit([1, 2]) is featurizer
    bib = "\n".join(featurizer.citations())
    assert "10.1088/2632-2153/ade58c" in bib and "10.1103/PhysRevLett.120.145301" in bib
    assert featurizer.implementors()
    assert featurizer.featurize_many([], pbar=False) == []
    with pytest.raises(TypeError, match="one column"):
        featurizer.featurize_many([(1, 2)], pbar=False)


def test_precheck_reads_config_only(frame, tiny_model_dir, tmp_path, monkeypatch):
    def no_loading(*args, **kwargs):
        raise AssertionError("precheck and feature_labels must not load the model")

    monkeypatch.setattr("matminer_clasp.model.io.load_model", no_loading)
    df, _ = frame
    no_weights = tmp_path / "config_only"
    shutil.copytree(tiny_model_dir, no_weights)
    (no_weights / "model.safetensors").unlink()
    featurizer = ClaspFeaturizer(no_weights)
    assert featurizer.precheck_dataframe(df, "structure") == pytest.approx(48 / 50)
    flagged = featurizer.precheck_dataframe(df, "structure", return_frac=False)
    assert not flagged["ClaspFeaturizer precheck pass"][list(BAD_ROWS)].any()
    assert featurizer.precheck(df["structure"][0]) and not featurizer.precheck(None)
    assert len(featurizer.feature_labels()) == 32


@pytest.mark.parametrize("iterate_over_entries", [True, False])
def test_multiple_featurizer(frame, tiny_model_dir, iterate_over_entries):
    df, _ = frame
    df = df.iloc[:12]
    clasp = ClaspFeaturizer(tiny_model_dir)
    density = DensityFeatures()
    multi = MultipleFeaturizer([clasp, density], iterate_over_entries=iterate_over_entries)
    multi.set_n_jobs(1)
    out = multi.featurize_dataframe(
        df, "structure", ignore_errors=True, return_errors=True, pbar=False
    )
    alone = clasp.featurize_dataframe(df, "structure", ignore_errors=True, pbar=False)
    np.testing.assert_allclose(_clasp_block(out, 32), _clasp_block(alone, 32), atol=1e-5)
    dens = density.featurize_dataframe(df, "structure", ignore_errors=True, pbar=False)
    np.testing.assert_allclose(
        out[density.feature_labels()].to_numpy(float),
        dens[density.feature_labels()].to_numpy(float),
    )
    assert "got a pymatgen Molecule" in out["ClaspFeaturizer Exceptions"][BAD_ROWS[0]]
    assert out["ClaspFeaturizer Exceptions"].drop(index=BAD_ROWS[0]).isna().all()


def test_process_pool_gives_the_same_numbers(frame, tiny_model_dir):
    df, _ = frame
    df = df.iloc[:20]
    batched = ClaspFeaturizer(tiny_model_dir).featurize_dataframe(
        df, "structure", ignore_errors=True, return_errors=True, pbar=False
    )
    pooled_featurizer = ClaspFeaturizer(tiny_model_dir)
    pooled_featurizer.set_n_jobs(2)
    pooled = pooled_featurizer.featurize_dataframe(
        df, "structure", ignore_errors=True, return_errors=True, pbar=False
    )
    np.testing.assert_allclose(_clasp_block(pooled, 32), _clasp_block(batched, 32), atol=1e-5)
    errors = pooled["ClaspFeaturizer Exceptions"]
    assert "got a pymatgen Molecule" in errors[BAD_ROWS[0]]
    assert errors.drop(index=BAD_ROWS[0]).isna().all()
    # MultipleFeaturizer's default n_jobs is the CPU count: it pickles the featurizer
    multi = MultipleFeaturizer([ClaspFeaturizer(tiny_model_dir), DensityFeatures()])
    multi.set_n_jobs(2)
    out = multi.featurize_dataframe(df, "structure", ignore_errors=True, pbar=False)
    np.testing.assert_allclose(_clasp_block(out, 32), _clasp_block(batched, 32), atol=1e-5)


def test_text_featurizer(tiny_model_dir, tiny_model):
    texts = [
        "ferroelectric perovskite oxide",
        "",
        3.5,
        "garnet",
        "   ",
        None,
        "high pressure structure of the spinel mineral",
    ]
    df = pd.DataFrame({"text": texts}, index=[f"t{i}" for i in range(len(texts))])
    featurizer = ClaspTextFeaturizer(tiny_model_dir, batch_size=2)
    out = featurizer.featurize_dataframe(
        df, "text", ignore_errors=True, return_errors=True, pbar=False
    )
    dim = tiny_model.config.embedding_dim
    assert featurizer.feature_labels()[:2] == ["clasp_text_0", "clasp_text_1"]
    emb = _clasp_block(out, dim, "clasp_text")
    good, bad = [0, 3, 6], [1, 2, 4, 5]
    assert np.isnan(emb[bad]).all()
    np.testing.assert_allclose(
        emb[good], tiny_model.encode_texts([texts[i] for i in good]), atol=1e-5
    )
    np.testing.assert_allclose(np.linalg.norm(emb[good], axis=1), 1.0, atol=1e-5)
    errors = out["ClaspTextFeaturizer Exceptions"]
    assert "empty or whitespace" in errors["t1"] and "expected a string, got float" in errors["t2"]
    assert errors.iloc[good].isna().all()
    with pytest.raises(InvalidTextError, match=r"row 1 \(index 't1'\): the text is empty"):
        featurizer.featurize_dataframe(df, "text", pbar=False)
    assert featurizer.precheck_dataframe(df, "text") == pytest.approx(3 / 7)
    single = featurizer.featurize("garnet")
    np.testing.assert_allclose(single, emb[3], atol=1e-5)
    restored = pickle.loads(pickle.dumps(featurizer))
    np.testing.assert_allclose(restored.featurize("garnet"), single, atol=1e-6)
