"""Distillation from a pretrained crystal model: teacher files, the auxiliary loss, training."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.numpy import save_file
from safetensors.torch import load_file

from matminer_clasp.cli import main as cli_main
from matminer_clasp.model import ClaspModel
from matminer_clasp.train.distill import (
    Distillation,
    compute_teacher_features,
    load_teacher_features,
    load_teacher_targets,
    save_teacher_features,
)
from matminer_clasp.train.trainer import fit
from tests.conftest import _structures

# the tests/train/test_trainer.py fixtures (tiny model folder, 24 synthetic pairs)
from tests.train.test_trainer import (  # noqa: F401
    Killed,
    _splits,
    base_config,
    kill_at,
    pairs,
    record,
    tiny_model_dir,
)


def teacher_file(path, pairs, dim=5, missing=(), seed=0):  # noqa: F811
    """Targets that depend on the structure (so a head can learn them); NaN for ``missing``."""
    rng = np.random.default_rng(seed)
    proj = rng.normal(size=(101, dim)).astype(np.float32)
    comps = np.stack([g.comp.reshape(-1).numpy() for g in pairs.graphs])
    feats = (comps @ proj + 3.0).astype(np.float32)  # offset: standardisation must remove it
    for i in missing:
        feats[i] = np.nan
    reasons = {pairs.ids[i]: "disordered" for i in missing}
    return save_teacher_features(path, pairs.ids, feats, "test", reasons)


# ----------------------------------------------------------------------------- files
def test_teacher_file_round_trip_and_alignment(tmp_path, pairs):  # noqa: F811
    path = teacher_file(tmp_path / "t.safetensors", pairs, missing=[2])
    ids, feats, meta = load_teacher_features(path)
    assert ids == pairs.ids and feats.shape == (24, 5) and meta["teacher"] == "test"
    assert meta["reasons"] == {pairs.ids[2]: "disordered"}
    # aligned by id, in the order asked for; an id without a row is NaN
    targets = load_teacher_targets(path, ["syn-5", "nope", "syn-2", "syn-0"])
    assert torch.equal(targets[0], torch.from_numpy(feats[5]))
    assert torch.isnan(targets[1]).all() and torch.isnan(targets[2]).all()
    assert torch.equal(targets[3], torch.from_numpy(feats[0]))
    with pytest.raises(FileExistsError, match="refusing to overwrite"):
        teacher_file(tmp_path / "t.safetensors", pairs)


def test_teacher_files_are_validated(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.safetensors"):
        load_teacher_features(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a safetensors file at all")
    with pytest.raises(ValueError, match="junk.safetensors"):
        load_teacher_features(junk)

    def write(name, features, ids, fmt="matminer_clasp.teacher_features/1"):
        path = tmp_path / name
        save_file({"features": features}, str(path),
                  metadata={"format": fmt, "ids": json.dumps(ids), "teacher": "t"})
        return path

    ok = np.ones((2, 3), dtype=np.float32)
    with pytest.raises(ValueError, match="format"):
        load_teacher_features(write("fmt.safetensors", ok, ["a", "b"], fmt="other"))
    with pytest.raises(ValueError, match="duplicate ids"):
        load_teacher_features(write("dup.safetensors", ok, ["a", "a"]))
    with pytest.raises(ValueError, match="shape"):
        load_teacher_features(write("shape.safetensors", ok, ["a", "b", "c"]))
    with pytest.raises(ValueError, match="float32"):
        load_teacher_features(write("f64.safetensors", ok.astype(np.float64), ["a", "b"]))
    partly = ok.copy()
    partly[1, 0] = np.nan
    with pytest.raises(ValueError, match="'b' is partly non-finite"):
        load_teacher_features(write("nan.safetensors", partly, ["a", "b"]))


# ----------------------------------------------------------------------------- the loss term
def test_distillation_loss_standardises_and_skips_missing_targets():
    torch.manual_seed(0)
    targets = torch.randn(6, 3) * 4 + 10
    targets[1] = float("nan")
    dist = Distillation(4, targets, np.arange(6))
    finite = targets[[0, 2, 3, 4, 5]]
    assert torch.allclose(dist.mean, finite.mean(0)) and torch.allclose(dist.scale, finite.std(0))
    assert dist.coverage == pytest.approx(5 / 6)
    cgcnn = torch.nn.Linear(2, 4)
    dist.attach(cgcnn)
    cgcnn.train()
    x = torch.randn(3, 2)
    cgcnn(x)
    loss = dist.loss(torch.tensor([0, 1, 2]))  # pair 1 has no target: rows 0 and 2 count
    with torch.no_grad():
        z = (targets[[0, 2]] - dist.mean) / dist.scale
        want = torch.nn.functional.mse_loss(dist.head(cgcnn(x)[[0, 2]]), z)
    assert loss.item() == pytest.approx(want.item(), rel=1e-6)
    loss.backward()
    assert cgcnn.weight.grad is not None and dist.head.weight.grad is not None
    cgcnn(x)
    assert dist.loss(torch.tensor([1, 1, 1])).item() == 0.0  # no target in the batch
    cgcnn.eval()
    cgcnn(x)  # inference passes are not caught
    with pytest.raises(RuntimeError, match="no CGCNN vector caught"):
        dist.loss(torch.tensor([0, 2, 3]))
    dist.detach_hook()
    with pytest.raises(ValueError, match="at least 2"):
        Distillation(4, torch.full((3, 2), float("nan")), np.arange(3))


# ----------------------------------------------------------------------------- training
def test_training_with_distillation(tmp_path, tiny_model_dir, pairs):  # noqa: F811
    path = teacher_file(tmp_path / "teacher.safetensors", pairs, missing=[0, 7])
    rows, cb = record()
    cfg = base_config(tmp_path / "run", tiny_model_dir, max_steps=30, batch_size=18,
                      distill_features=str(path), distill_weight=5.0)
    out = fit(cfg, pairs=pairs, splits=_splits(pairs), callbacks=[cb])
    aux = [r["distill_loss"] for r in rows]
    assert len(aux) == 30 and np.isfinite(aux).all()
    assert np.mean(aux[-5:]) < 0.6 * np.mean(aux[:5])  # the CGCNN vector learns the teacher
    metrics = pd.read_csv(out / "metrics.csv")
    assert metrics["distill_loss"].notna().sum() == 30
    # the saved model is an ordinary model: same tensors as the one it started from
    before, after = (load_file(str(d / "model.safetensors")) for d in (tiny_model_dir, out))
    assert set(before) == set(after)
    model = ClaspModel.from_pretrained(out)
    assert not model.crystal_tower.cgcnn._forward_hooks  # no hook left behind either


def test_distillation_resumes_exactly(tmp_path, tiny_model_dir, pairs):  # noqa: F811
    path = teacher_file(tmp_path / "teacher.safetensors", pairs, missing=[3])
    common = dict(max_steps=6, checkpoint_every=3, precision="fp32", loss="infonce",
                  distill_features=str(path), distill_weight=2.0)
    full, cb = record()
    fit(base_config(tmp_path / "full", tiny_model_dir, **common), pairs=pairs,
        splits=_splits(pairs), callbacks=[cb])

    cfg = base_config(tmp_path / "cut", tiny_model_dir, **common)
    model = ClaspModel.from_pretrained(tiny_model_dir)
    with pytest.raises(Killed):
        fit(cfg, pairs=pairs, splits=_splits(pairs), callbacks=[kill_at(4)], model=model)
    assert not model.crystal_tower.cgcnn._forward_hooks  # removed on the way out of the error
    state = load_file(str(tmp_path / "cut" / "checkpoint-3" / "trainer_state.safetensors"))
    assert "distill.head.weight" in state
    resumed, cb = record()
    fit({**cfg, "resume": True}, pairs=pairs, splits=_splits(pairs), callbacks=[cb])
    for got, want in zip(resumed, full[3:]):
        assert got["loss"] == pytest.approx(want["loss"], abs=1e-6)
        assert got["distill_loss"] == pytest.approx(want["distill_loss"], abs=1e-6)
    # a checkpoint with a distillation head does not resume into a run without one
    plain = {k: v for k, v in cfg.items() if not k.startswith("distill")}
    with pytest.raises(ValueError, match="cannot resume"):
        fit({**plain, "resume": str(tmp_path / "cut" / "checkpoint-3")}, pairs=pairs,
            splits=_splits(pairs))


def test_distillation_config_errors(tmp_path, tiny_model_dir, pairs):  # noqa: F811
    with pytest.raises(ValueError, match="distill_weight"):
        fit(base_config(tmp_path / "a", tiny_model_dir, distill_features="x", distill_weight=0),
            pairs=pairs, splits=_splits(pairs))
    with pytest.raises(FileNotFoundError, match="nowhere.safetensors"):
        fit(base_config(tmp_path / "b", tiny_model_dir,
                        distill_features=str(tmp_path / "nowhere.safetensors")),
            pairs=pairs, splits=_splits(pairs))
    path = teacher_file(tmp_path / "teacher.safetensors", pairs)
    cfg = base_config(tmp_path / "c", tiny_model_dir, distill_features=str(path))
    model = ClaspModel.from_pretrained(tiny_model_dir)
    model.crystal_tower.cgcnn = None  # a composition-only tower
    with pytest.raises(ValueError, match="needs a CGCNN"):
        fit(cfg, pairs=pairs, splits=_splits(pairs), model=model)


# ----------------------------------------------------------------------------- the real teacher
@pytest.mark.slow
def test_chgnet_teacher_on_real_structures(tmp_path):
    structures = _structures()
    names = ["rocksalt", "disordered"]
    picked = [structures[n] for n in names]
    feats, reasons = compute_teacher_features(names, picked, "chgnet")
    for name, s, row in zip(names, picked, feats):
        if s.is_ordered:
            assert row.shape == (64,) and np.isfinite(row).all()
        else:
            assert np.isnan(row).all() and "disordered" in reasons[name]
    with pytest.raises(ValueError, match="unknown teacher"):
        compute_teacher_features(names, picked, "nope")


def test_teacher_features_cli_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "t.safetensors"
    out.write_bytes(b"x")
    code = cli_main(["teacher-features", "unused.yaml", "--out", str(out)])
    assert code == 2 and "refusing to overwrite" in capsys.readouterr().err


@pytest.mark.slow
def test_teacher_features_cli_on_real_amcsd_cifs(tmp_path, capsys):
    """Two ordered AMCSD minerals and a split-site one, through the command a user runs."""
    import shutil
    from pathlib import Path

    real = Path(__file__).resolve().parent.parent / "fixtures" / "real_cifs"
    cifs = tmp_path / "cifs"
    cifs.mkdir()
    names = ["ordinary-amcsd236", "ordinary-amcsd4495", "split_site-amcsd14168"]
    for name in names:
        shutil.copy(real / f"{name}.cif", cifs / f"{name}.cif")
    config = tmp_path / "config.yaml"
    config.write_text(f"data:\n  source: cif_dir\n  path: {cifs}\n  n_jobs: 1\n"
                      f"  cache_dir: {tmp_path / 'cache'}\n")
    out = tmp_path / "teacher.safetensors"
    assert cli_main(["teacher-features", str(config), "--out", str(out)]) == 0
    assert "of 2 of 3 structures (64-d)" in capsys.readouterr().out
    ids, feats, meta = load_teacher_features(out)
    assert ids == names
    assert np.isfinite(feats[:2]).all() and np.isnan(feats[2]).all()
    assert "disordered" in meta["reasons"]["split_site-amcsd14168"]
    # a pinned split is needed for --split
    assert cli_main(["teacher-features", str(config), "--out", str(tmp_path / "x.safetensors"),
                     "--split", "train"]) == 2
    assert "ids_file" in capsys.readouterr().err
