"""Every caller that turns structures into vectors goes through ClaspModel.encode_structures.

``encode_graphs`` (the batched forward) is patched to fail unless it is called from inside
``encode_structures``; each caller must still produce its embeddings, so a caller with a loop of
its own fails here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pymatgen.io.cif import CifWriter

from matminer_clasp import cli
from matminer_clasp.featurizers import ClaspFeaturizer
from matminer_clasp.index import EmbeddingIndex
from matminer_clasp.model.clasp import ClaspModel
from matminer_clasp.model.registry import get_model
from matminer_clasp.screening import screen
from matminer_clasp.zeroshot import ZeroShotClassifier


@pytest.fixture
def guarded(tiny_model_dir, monkeypatch):
    """The shared model of ``tiny_model_dir``, its forward reachable only via encode_structures."""
    model = get_model(str(tiny_model_dir))
    calls = {"encode_structures": 0, "inside": 0}
    real_encode, real_graphs = ClaspModel.encode_structures, ClaspModel.encode_graphs

    def encode_structures(self, *args, **kwargs):
        calls["encode_structures"] += 1
        calls["inside"] += 1
        try:
            return real_encode(self, *args, **kwargs)
        finally:
            calls["inside"] -= 1

    def encode_graphs(self, *args, **kwargs):
        assert calls["inside"], "a caller bypassed ClaspModel.encode_structures"
        return real_graphs(self, *args, **kwargs)

    monkeypatch.setattr(ClaspModel, "encode_structures", encode_structures)
    monkeypatch.setattr(ClaspModel, "encode_graphs", encode_graphs)
    return model, calls


def _check(calls):
    assert calls["encode_structures"] > 0
    calls["encode_structures"] = 0


def test_the_guard_catches_a_bypass(guarded, structures):
    model, _ = guarded
    graphs = model.build_graphs(list(structures.values())[:2])
    with pytest.raises(AssertionError, match="bypassed"):
        model.encode_graphs(graphs)


def test_featurizers_index_screen_and_classifier_use_the_one_path(guarded, tiny_model_dir,
                                                                  structures):
    model, calls = guarded
    items = list(structures.values())[:3]
    rows = ClaspFeaturizer(model=str(tiny_model_dir)).featurize_many(items, pbar=False)
    assert np.isfinite(np.asarray(rows)).all()
    _check(calls)
    assert len(EmbeddingIndex.build(list(structures.values())[:3], model=str(tiny_model_dir),
                                    show_progress_bar=False)) == 3
    _check(calls)
    assert len(screen("garnet", items, top_k=2, model=str(tiny_model_dir))) == 2
    _check(calls)
    clf = ZeroShotClassifier(["garnet", "spinel"], model=str(tiny_model_dir)).fit()
    assert len(clf.predict(list(structures.values())[:3])) == 3
    _check(calls)


def test_cli_commands_use_the_one_path(guarded, tiny_model_dir, structures, tmp_path, capsys):
    model, calls = guarded
    folder = tmp_path / "cifs"
    folder.mkdir()
    for i, s in enumerate(list(structures.values())[:3]):
        CifWriter(s).write_file(folder / f"s{i}.cif")
    args = ["--model", str(tiny_model_dir)]
    assert cli.main(["embed", str(folder), str(tmp_path / "e.parquet"), *args]) == 0
    _check(calls)
    assert cli.main(["index", str(folder), "--out", str(tmp_path / "ix"), *args]) == 0
    _check(calls)
    assert cli.main(["classify", str(folder), "--labels", "garnet,spinel", *args]) == 0
    _check(calls)
    assert cli.main(["screen", "garnet", str(folder), *args]) == 0
    _check(calls)
    capsys.readouterr()


def test_dask_partitions_use_the_one_path(guarded, tiny_model_dir, structures):
    from matminer_clasp.dask import featurize_partition

    _, calls = guarded
    part = pd.DataFrame({"structure": list(structures.values())[:3]})
    out = featurize_partition(part, ClaspFeaturizer(model=str(tiny_model_dir)), "structure")
    assert len(out) == 3
    _check(calls)
