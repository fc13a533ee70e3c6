"""Training loop: loss goes down, outputs, resume equivalence, text cache, 2-process gloo run."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import BertTokenizerFast

from matminer_clasp.config import ClaspConfig
from matminer_clasp.model import ClaspModel
from matminer_clasp.train.config import TrainConfig
from matminer_clasp.train.data import PairData
from matminer_clasp.train.optimization import (
    build_optimizer,
    peak_rates,
    scheduled_lr,
    unfreeze_text_encoder,
)
from matminer_clasp.train.trainer import (
    collate_pairs,
    epoch_order,
    fit,
    lr_factor,
)
from tests.conftest import _structures, make_tiny_bert, make_tiny_model, make_tokenizer

CAPTIONS = ["ferroelectric perovskite", "garnet mineral", "spinel oxide", "high pressure"]


def make_pairs(model: ClaspModel, n: int = 24, seed: int = 0) -> PairData:
    """Perturbed (some supercelled) conftest structures; 4 distinct captions, many duplicates."""
    rng = np.random.default_rng(seed)
    base = [s for name, s in _structures().items() if name != "disordered"]
    structures, captions = [], []
    for i in range(n):
        s = base[i % len(base)].copy()
        if i % 5 == 4:
            s.make_supercell([1, 1, 2])
        s.perturb(0.05 + 0.1 * rng.random(), seed=seed * 1000 + i)  # same pairs in every process
        structures.append(s)
        captions.append(CAPTIONS[(i // len(base) + i) % len(CAPTIONS)])
    graphs = model.build_graphs(structures)
    ids = [f"syn-{i}" for i in range(n)]
    meta = pd.DataFrame({"id": ids, "title": captions, "caption": captions})
    return PairData(ids=ids, graphs=graphs, captions=captions, meta=meta, skipped={})


def tiny_model_with_vocab(tmp: Path, seed: int = 0, **overrides) -> ClaspModel:
    """conftest's tiny model with a tokenizer that really uses the tiny vocabulary.

    (``BertTokenizerFast(vocab_file=...)`` in conftest ignores the file under transformers 5,
    so every word becomes [UNK] and all captions get the same features; ``from_pretrained`` on
    the folder reads ``vocab.txt``.) Mean pooling: the random 1-layer BERT's [CLS]/pooler output
    hardly depends on the other tokens, which would leave the text BatchNorm with ~0 variance.
    """
    model = make_tiny_model(tmp, seed=seed, text_pooling="mean", **overrides)
    model.tokenizer = BertTokenizerFast.from_pretrained(str(tmp / "vocab"), do_lower_case=True)
    return model


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("tiny-train")
    folder = tmp / "model"
    tiny_model_with_vocab(tmp).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def pairs(tiny_model_dir) -> PairData:
    model = ClaspModel.from_pretrained(tiny_model_dir)
    tokens = model.tokenize(CAPTIONS)
    with torch.no_grad():
        feats = model.text_tower.pooled_features(tokens["input_ids"], tokens["attention_mask"])
    assert torch.cdist(feats, feats).topk(2, largest=False).values[:, 1].min() > 0.1
    return make_pairs(model)


def base_config(out: Path, init_from: Path, **overrides) -> dict:
    cfg = {
        "data": {"source": "table", "path": "unused.csv", "fractions": [0.75, 0.25, 0.0]},
        "init_from": str(init_from), "output_dir": str(out), "batch_size": 4,
        "lr": 1e-3, "schedule": "constant", "epochs": 2, "log_every": 1, "seed": 3,
        "device": "cpu", "eval_every": 0,
    }
    cfg.update(overrides)
    return cfg


def record():
    rows: list[dict] = []
    return rows, lambda row: rows.append(row) if row["split"] == "train" else None


class Killed(RuntimeError):
    """Raised by :func:`kill_at` to cut a run short (a crash at a known step)."""


def kill_at(step: int):
    """A callback that raises :class:`Killed` when the run reaches ``step``."""

    def kill(row):
        if row["step"] == step:
            raise Killed

    return kill


def test_helpers():
    order0 = epoch_order(np.arange(10), 1, 0)
    assert sorted(order0) == list(range(10))
    assert (epoch_order(np.arange(10), 1, 0) == order0).all()
    assert not (epoch_order(np.arange(10), 1, 1) == order0).all()
    assert lr_factor(0, 100, 10, "cosine") == pytest.approx(0.1)
    assert lr_factor(10, 100, 10, "cosine") == pytest.approx(1.0)
    assert lr_factor(99, 100, 10, "cosine") < 0.01
    assert lr_factor(55, 100, 10, "linear") == pytest.approx(0.5)
    assert lr_factor(55, 100, 0, "constant") == 1.0


@pytest.mark.parametrize("schedule", ["cosine", "linear", "constant"])
def test_lr_factor_against_transformers_schedules(schedule):
    # after the warm-up lr_factor is transformers' schedule; during it, one step ahead (the
    # reason it is not replaced: transformers' first step has lr 0; see lr_factor's notes)
    from transformers import (
        get_constant_schedule_with_warmup,
        get_cosine_schedule_with_warmup,
        get_linear_schedule_with_warmup,
    )

    total, warmup = 50, 5
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    if schedule == "constant":
        scheduler = get_constant_schedule_with_warmup(optimizer, warmup)
    else:
        make = {"cosine": get_cosine_schedule_with_warmup,
                "linear": get_linear_schedule_with_warmup}[schedule]
        scheduler = make(optimizer, warmup, total)
    theirs = []
    for _ in range(total + 1):
        theirs.append(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()
    ours = [lr_factor(step, total, warmup, schedule) for step in range(total)]
    assert theirs[0] == 0.0 and ours[0] == pytest.approx(1 / warmup)
    np.testing.assert_allclose(ours[:warmup], theirs[1 : warmup + 1], rtol=1e-12)
    np.testing.assert_allclose(ours[warmup:], theirs[warmup:total], rtol=1e-12, atol=1e-15)


def test_collate(pairs):
    batch, ids = collate_pairs([(pairs.graphs[0], 3), (pairs.graphs[1], 0)])
    assert batch.num_graphs == 2 and ids.tolist() == [3, 0]


def test_loss_decreases_and_outputs(tmp_path, tiny_model_dir, pairs):
    rows, cb = record()
    # one batch = the 18 training pairs: 4-pair batches that repeat captions made the logged
    # loss too noisy to show a trend in 24 steps (it passed or failed with the random init)
    cfg = base_config(tmp_path / "run", tiny_model_dir, max_steps=24, eval_every=6,
                      early_stopping_metric="val_recall@1", batch_size=18)
    out = fit(cfg, pairs=pairs, splits=_splits(pairs), callbacks=[cb])
    losses = [r["loss"] for r in rows]
    assert len(losses) == 24
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.3
    for name in ("config.json", "model.safetensors", "train_config.json", "metrics.csv",
                 "data_fingerprint", "best/config.json", "text_features.safetensors"):
        assert (out / name).exists(), name
    metrics = pd.read_csv(out / "metrics.csv")
    assert set(metrics["split"]) == {"train", "val"}
    assert (metrics.loc[metrics.split == "train", "samples_per_s"] > 0).all()
    assert TrainConfig.from_file(out / "train_config.json").max_steps == 24
    model = ClaspModel.from_pretrained(out)
    assert model.encode_texts(["garnet"]).shape == (1, 32)


def test_freeze_keeps_crystal_tower_at_init(tmp_path, tiny_model_dir, pairs):
    cfg = base_config(tmp_path / "run", tiny_model_dir, max_steps=3, eval_every=0,
                      freeze=["crystal_tower"])
    out = fit(cfg, pairs=pairs, splits=_splits(pairs))
    before = load_file(str(tiny_model_dir / "model.safetensors"))
    after = load_file(str(out / "model.safetensors"))
    frozen = [k for k in before if k.startswith("crystal_tower") and "running" not in k
              and "num_batches" not in k]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    head = "text_tower.head.out.weight"
    assert not torch.equal(before[head], after[head])


def _splits(pairs):
    n = len(pairs.ids)
    return {"train": np.arange(0, 18), "val": np.arange(18, n), "test": np.arange(0)}


def test_resume_matches_uninterrupted(tmp_path, tiny_model_dir, pairs):
    common = dict(max_steps=8, grad_accum_steps=2, schedule="cosine", warmup_steps=2,
                  loss="infonce", checkpoint_every=3, precision="fp32")
    full_rows, cb = record()
    fit(base_config(tmp_path / "full", tiny_model_dir, **common), pairs=pairs,
        splits=_splits(pairs), callbacks=[cb])
    assert len(full_rows) == 8

    cfg = base_config(tmp_path / "cut", tiny_model_dir, **common)
    with pytest.raises(Killed):
        fit(cfg, pairs=pairs, splits=_splits(pairs), callbacks=[kill_at(5)])
    assert (tmp_path / "cut" / "checkpoint-3" / "trainer_state.safetensors").is_file()
    resumed_rows, cb = record()
    fit({**cfg, "resume": True}, pairs=pairs, splits=_splits(pairs), callbacks=[cb])
    assert [r["step"] for r in resumed_rows] == [4, 5, 6, 7, 8]
    for got, want in zip(resumed_rows, full_rows[3:]):
        assert got["loss"] == pytest.approx(want["loss"], abs=1e-6)
        assert got["lr"] == pytest.approx(want["lr"], rel=1e-12)
    steps = pd.read_csv(tmp_path / "cut" / "metrics.csv")["step"].tolist()
    assert steps == list(range(1, 9))  # rows after the checkpoint were replaced, not duplicated


@pytest.mark.parametrize("loss", ["infonce", "siglip", "cosface"])
def test_saved_models_store_the_loss_logit_scale(tmp_path, tiny_model_dir, pairs, loss):
    from matminer_clasp.zeroshot import ZeroShotClassifier

    cfg = base_config(tmp_path / "run", tiny_model_dir, max_steps=3, eval_every=3,
                      checkpoint_every=3, loss=loss)
    out = fit(cfg, pairs=pairs, splits=_splits(pairs))
    state = load_file(str(out / "checkpoint-3" / "trainer_state.safetensors"))
    if loss == "cosface":  # the fixed scale s; the margin is not used at inference
        scale, bias = 3.0, None
    else:  # the learned multiplier exp(logit_scale), not its log
        scale = float(state["loss.logit_scale"].exp())
        initial = {"infonce": 1 / 0.07, "siglip": 10.0}[loss]
        assert scale != pytest.approx(initial, rel=1e-5)  # learned, not the initial value
        bias = float(state["loss.logit_bias"]) if loss == "siglip" else None
    for folder in (out, out / "best", out / "checkpoint-3"):
        saved = json.loads((folder / "config.json").read_text())
        assert saved["logit_scale"] == pytest.approx(scale, rel=1e-6), folder
        if bias is None:
            assert saved["logit_bias"] is None
        else:
            assert saved["logit_bias"] == pytest.approx(bias, rel=1e-6)
    model = ClaspModel.from_pretrained(out)
    assert model.config.logit_scale == pytest.approx(scale, rel=1e-6)
    clf = ZeroShotClassifier(CAPTIONS, model=model).fit()
    assert clf.temperature_ == pytest.approx(1 / scale, rel=1e-6)


def test_text_features_computed_once(tmp_path, pairs):
    model = tiny_model_with_vocab(tmp_path)
    seen = []
    model.text_tower.bert.register_forward_hook(
        lambda module, args, kwargs, output: seen.append(kwargs["input_ids"].shape[0]),
        with_kwargs=True,
    )
    cfg = base_config(tmp_path / "run", tmp_path, max_steps=6)
    cfg["init_from"] = None
    fit(cfg, pairs=pairs, splits=_splits(pairs), model=model)
    assert sum(seen) == len(set(pairs.captions)) == len(CAPTIONS)
    cached = load_file(str(tmp_path / "run" / "text_features.safetensors"))["features"]
    assert cached.shape == (len(CAPTIONS), 16)
    assert torch.pdist(cached).min() > 0.1


def test_text_features_reused_from_a_sibling_run(tmp_path, pairs, caplog):
    model = tiny_model_with_vocab(tmp_path)
    seen = []
    model.text_tower.bert.register_forward_hook(
        lambda module, args, kwargs, output: seen.append(kwargs["input_ids"].shape[0]),
        with_kwargs=True,
    )
    runs = tmp_path / "runs"
    for name in ("member_a", "member_b"):  # two members of one recipe, same captions
        cfg = base_config(runs / name, tmp_path, max_steps=2)
        cfg["init_from"] = None
        with caplog.at_level(logging.INFO, logger="matminer_clasp.train.text_cache"):
            fit(cfg, pairs=pairs, splits=_splits(pairs), model=model)
    assert sum(seen) == len(CAPTIONS)  # the second run did not run the encoder
    assert "reused from" in caplog.text and "member_a" in caplog.text
    first, second = (load_file(str(runs / n / "text_features.safetensors"))["features"]
                     for n in ("member_a", "member_b"))
    torch.testing.assert_close(first, second)

    # a sibling whose captions differ is not reused (and is left as it was)
    other = dataclasses.replace(pairs, captions=[c + " phase" for c in pairs.captions])
    before = (runs / "member_a" / "text_features.safetensors").read_bytes()
    cfg = base_config(runs / "member_c", tmp_path, max_steps=2)
    cfg["init_from"] = None
    fit(cfg, pairs=other, splits=_splits(other), model=model)
    assert sum(seen) == 2 * len(CAPTIONS)
    assert (runs / "member_a" / "text_features.safetensors").read_bytes() == before

    # a damaged sibling is skipped, never trusted
    (runs / "member_c" / "text_features.safetensors").write_bytes(b"not a safetensors file")
    cfg = base_config(runs / "member_d", tmp_path, max_steps=2)
    cfg["init_from"] = None
    fit(cfg, pairs=other, splits=_splits(other), model=model)
    assert sum(seen) == 3 * len(CAPTIONS)


def test_train_from_architecture(tmp_path, pairs):
    folder = tmp_path / "tiny-bert"
    make_tiny_bert().save_pretrained(folder)
    make_tokenizer(folder)
    model_cfg = {"text_model": str(folder), "embedding_dim": 16, "text_hidden_dim": 16,
                 "atom_fea_len": 8, "n_conv": 1, "cell": "as_is"}
    cfg = base_config(tmp_path / "run", folder, max_steps=2, model=model_cfg)
    cfg["init_from"] = None
    out = fit(cfg, pairs=pairs, splits=_splits(pairs))
    assert ClaspModel.from_pretrained(out).config.embedding_dim == 16


def test_too_few_pairs(tmp_path, tiny_model_dir, pairs):
    cfg = base_config(tmp_path / "run", tiny_model_dir, batch_size=64)
    with pytest.raises(ValueError, match="lower batch_size"):
        fit(cfg, pairs=pairs, splits=_splits(pairs))


def test_config_errors(tmp_path, tiny_model_dir):
    cfg = base_config(tmp_path, tiny_model_dir)
    with pytest.raises(ValueError, match="unknown TrainConfig keys.*learning_rte"):
        TrainConfig.from_dict({**cfg, "learning_rte": 1.0})
    with pytest.raises(ValueError, match="unknown data keys"):
        TrainConfig.from_dict({**cfg, "data": {"source": "table", "path": "x", "colour": 1}})
    with pytest.raises(ValueError, match="not both"):
        TrainConfig.from_dict({**cfg, "model": {}})
    with pytest.raises(ValueError, match="init_from"):
        TrainConfig.from_dict({**cfg, "init_from": None, "stage": "finetune"})
    with pytest.raises(ValueError, match="unknown ClaspConfig keys"):
        TrainConfig.from_dict({**cfg, "init_from": None, "model": {"layers": 3}})
    yaml_path = tmp_path / "c.yaml"
    yaml_path.write_text("data: {source: table, path: t.csv}\nbatch_size: 8\nlr: 1.0e-4\n")
    loaded = TrainConfig.from_file(yaml_path)
    assert loaded.batch_size == 8 and loaded.learning_rate == 1e-4
    assert loaded.data.fractions == (0.8, 0.1, 0.1)
    assert TrainConfig.from_dict({"data": {"source": "table", "path": "t"}}).learning_rate == 2e-5
    json_path = tmp_path / "c.json"
    json_path.write_text(json.dumps({**cfg, "epochs": 0}))
    with pytest.raises(ValueError, match=r"c\.json.*epochs"):
        TrainConfig.from_file(json_path)


# ---------------------------------------------------------------------------- two processes
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _grads(model_dir: Path, pairs, rows: np.ndarray, world: int, rank: int) -> dict:
    """Parameter gradients of one CosFace step on ``rows`` (this rank's share), averaged."""
    from matminer_clasp.train.distributed import (
        average_gradients,
        convert_batchnorm,
        gather_no_grad,
        gather_with_grad,
    )
    from matminer_clasp.train.losses import CosFaceLoss
    from matminer_clasp.train.trainer import CaptionIndex, text_features

    model = ClaspModel.from_pretrained(model_dir)
    index = CaptionIndex(pairs.captions)
    feats = text_features(model, index.distinct, torch.device("cpu"))
    convert_batchnorm(model).train()
    mine = rows[rank * len(rows) // world : (rank + 1) * len(rows) // world]
    batch, ids = collate_pairs([(pairs.graphs[i], int(index.pair_ids[i])) for i in mine])
    crystal = gather_with_grad(model.embed_graphs(batch))
    text = gather_with_grad(model.embed_text_features(feats[ids]))
    CosFaceLoss()(crystal, text, gather_no_grad(ids)).backward()
    params = [p for p in model.parameters() if p.requires_grad]
    average_gradients(params)
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def _worker(rank: int, world: int, port: int, cfg: dict, pairs, splits, out_file: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world),
                      RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    torch.distributed.init_process_group("gloo")
    rows: list[dict] = []
    fit(cfg, pairs=pairs, splits=splits, callbacks=[lambda r: rows.append(r)])
    Path(f"{out_file}.{rank}").write_text(json.dumps(rows))
    grads = _grads(Path(cfg["init_from"]), pairs, splits["train"][:8], world, rank)
    if rank == 0:
        save_file({k: v.contiguous() for k, v in grads.items()}, f"{out_file}.grads")
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_two_processes_match_one(tmp_path, tiny_model_dir, pairs):
    splits = {"train": np.arange(16), "val": np.arange(16, 24), "test": np.arange(0)}
    common = dict(max_steps=3, checkpoint_every=3, eval_every=3)
    single_rows, cb = record()
    fit(base_config(tmp_path / "one", tiny_model_dir, batch_size=8, **common), pairs=pairs,
        splits=splits, callbacks=[cb])
    cfg = base_config(tmp_path / "two", tiny_model_dir, batch_size=4, **common)
    torch.multiprocessing.spawn(_worker, args=(2, _free_port(), cfg, pairs, splits,
                                               str(tmp_path / "rows")), nprocs=2, join=True)
    ranks = [json.loads(Path(f"{tmp_path / 'rows'}.{r}").read_text()) for r in range(2)]
    train = [[r for r in rows if r["split"] == "train"] for rows in ranks]
    for got in train:
        assert [r["step"] for r in got] == [1, 2, 3]
        # same global batch and BatchNorm statistics: the same first loss
        assert got[0]["loss"] == pytest.approx(single_rows[0]["loss"], abs=1e-5)
        # later steps agree less tightly: Adam's first updates are ~lr * sign(grad), so float
        # noise on gradients that are 0 in exact arithmetic (biases before BatchNorm) shows up
        for g, want in zip(got[1:], single_rows[1:]):
            assert g["loss"] == pytest.approx(want["loss"], abs=3e-4)
    # the averaged gradient equals the single-process gradient of the whole batch
    two = load_file(f"{tmp_path / 'rows'}.grads")
    one = _grads(tiny_model_dir, pairs, splits["train"][:8], 1, 0)
    for name, grad in one.items():
        scale = grad.norm().item()
        if scale > 1e-4:  # skip gradients that vanish exactly (bias before BatchNorm)
            assert (two[name] - grad).norm().item() < 1e-3 * scale, name
    val = [r for r in ranks[0] if r["split"] == "val"]
    assert val and np.isfinite(val[0]["loss"])
    # only rank 0 wrote files, and the checkpoint holds both ranks' RNG states
    assert (tmp_path / "two" / "checkpoint-3" / "trainer_state.json").is_file()
    meta = json.loads((tmp_path / "two" / "checkpoint-3" / "trainer_state.json").read_text())
    assert len(meta["rng"]) == 2 and meta["info"]["world_size"] == 2


def test_finetune_a_merged_ensemble(tmp_path, tiny_model_dir, pairs):
    # the bundled model is an ensemble: fine-tuning it must train every member's heads
    from matminer_clasp.model import merge_models

    member = ClaspModel.from_pretrained(tiny_model_dir)
    comp = tiny_model_with_vocab(tmp_path / "comp", crystal_encoder="composition")
    merged = merge_models([member, comp])
    merged.save_pretrained(tmp_path / "ens")
    rows, cb = record()
    out = fit(base_config(tmp_path / "run", tmp_path / "ens", max_steps=12), pairs=pairs,
              splits=_splits(pairs), callbacks=[cb])
    losses = [r["loss"] for r in rows]
    assert np.mean(losses[-4:]) < np.mean(losses[:4])
    before = load_file(str(tmp_path / "ens" / "model.safetensors"))
    after = load_file(str(out / "model.safetensors"))
    for i in (0, 1):
        key = f"text_tower.head.members.{i}.out.weight"
        assert not torch.equal(before[key], after[key]), key
        key = f"crystal_tower.members.{i}.head.out.weight"
        assert not torch.equal(before[key], after[key]), key
    again = ClaspModel.from_pretrained(out)
    assert again.config.members is not None and again.encode_texts(["garnet"]).shape == (1, 64)


def test_chemsys_batches_keep_chemical_systems_together(pairs):
    from matminer_clasp.train.batches import chemical_systems

    groups = chemical_systems(pairs.graphs)
    assert len(set(groups.tolist())) == 4  # NaCl, Si, ZnO and the triclinic one
    train = np.arange(len(pairs.graphs))
    for epoch in range(3):
        order = epoch_order(train, 5, epoch, groups, batch_size=6)
        assert sorted(order.tolist()) == train.tolist()
        assert (order == epoch_order(train, 5, epoch, groups, batch_size=6)).all()
        # consecutive members of one system: at most one change of system inside a group's run
        runs = 1 + int((groups[order][1:] != groups[order][:-1]).sum())
        assert runs <= 4 + len(order) // 6  # each batch boundary may split a system once
    random_runs = 1 + int(np.sum(np.diff(groups[epoch_order(train, 5, 0)]) != 0))
    assert random_runs > 4 + len(train) // 6


def test_chemsys_grouping_trains(tmp_path, tiny_model_dir, pairs):
    rows, cb = record()
    cfg = base_config(tmp_path / "run", tiny_model_dir, max_steps=6, batch_grouping="chemsys")
    fit(cfg, pairs=pairs, splits=_splits(pairs), callbacks=[cb])
    assert len(rows) == 6 and np.isfinite([r["loss"] for r in rows]).all()
    with pytest.raises(ValueError, match="batch_grouping"):
        TrainConfig.from_dict({**base_config(tmp_path / "x", tiny_model_dir),
                               "batch_grouping": "nope"})


def test_caption_index_samples_single_keywords():
    from matminer_clasp.train.batches import CaptionIndex

    captions = ["garnet, almandine", "spinel", "olivine, high pressure, garnet", "spinel"]
    index = CaptionIndex(captions, keyword_pairs=[0, 2])
    assert index.distinct == ["garnet, almandine", "spinel", "olivine, high pressure, garnet",
                              "garnet", "almandine", "olivine", "high pressure"]
    np.testing.assert_array_equal(index.pair_ids, [0, 1, 2, 1])
    np.testing.assert_array_equal(index.sampled_ids(0.0, np.random.default_rng(0)), [0, 1, 2, 1])
    draws = np.stack([index.sampled_ids(1.0, np.random.default_rng(s)) for s in range(300)])
    assert set(draws[:, 0]) == {3, 4} and set(draws[:, 2]) == {5, 6, 3}  # own keywords only
    assert (draws[:, 1] == 1).all() and (draws[:, 3] == 1).all()  # not keyword pairs
    counts = np.bincount(draws[:, 2], minlength=7)[[3, 5, 6]]
    assert counts.min() > 70  # uniform over the three keywords (100 each expected)
    half = np.stack([index.sampled_ids(0.5, np.random.default_rng(s)) for s in range(300)])
    assert 100 < (half[:, 0] == 0).sum() < 200  # the whole caption about half of the epochs
    np.testing.assert_array_equal(index.sampled_ids(0.5, np.random.default_rng(7)),
                                  index.sampled_ids(0.5, np.random.default_rng(7)))
    assert CaptionIndex(captions).distinct == captions[:3]  # without keyword pairs: as before
    # an epoch's draw depends on (seed, epoch) alone; probability 0 keeps the captions
    np.testing.assert_array_equal(index.epoch_ids(0.5, 3, 1), index.epoch_ids(0.5, 3, 1))
    np.testing.assert_array_equal(index.epoch_ids(0.0, 3, 1), index.pair_ids)
    epochs = np.stack([index.epoch_ids(1.0, 3, e) for e in range(20)])
    assert len({tuple(row) for row in epochs}) > 1


def test_keyword_sampling_trains_on_single_keywords(tmp_path, tiny_model_dir, pairs):
    from matminer_clasp.train.trainer import _Run

    keyword_pairs = PairData(ids=pairs.ids, graphs=pairs.graphs,
                             captions=[c.replace(" ", ", ") for c in pairs.captions],
                             meta=pairs.meta, skipped={})
    cfg = base_config(tmp_path / "run", tiny_model_dir, max_steps=4, keyword_sampling=1.0)
    cfg["data"]["captions"] = "keywords"
    run = _Run(TrainConfig.from_dict(cfg), keyword_pairs, _splits(keyword_pairs), None, [])
    run.setup()
    words = {w for c in CAPTIONS for w in c.split()}
    assert words <= set(run.captions.distinct)
    assert run.features.shape[0] == len(run.captions.distinct)  # keywords: features once
    seen = set()
    for epoch in (0, 1):
        for _, caption_ids in run._micro_batches(epoch, 0):
            seen |= {run.captions.distinct[i] for i in caption_ids.tolist()}
    assert seen and seen <= words  # probability 1: every training caption is one keyword
    rows, cb = record()
    fit({**cfg, "output_dir": str(tmp_path / "fit")}, pairs=keyword_pairs,
        splits=_splits(keyword_pairs), callbacks=[cb])
    assert len(rows) == 4 and np.isfinite([r["loss"] for r in rows]).all()
    with pytest.raises(ValueError, match="keyword captions"):
        TrainConfig.from_dict(base_config(tmp_path / "x", tiny_model_dir, keyword_sampling=0.5))
    with pytest.raises(ValueError, match=r"keyword_sampling must be in \[0, 1\]"):
        TrainConfig.from_dict({**cfg, "keyword_sampling": 1.5})


def test_build_optimizer_gives_the_text_encoder_its_own_rate():
    heads, text = [torch.nn.Parameter(torch.zeros(2))], [torch.nn.Parameter(torch.zeros(3))]
    opt = build_optimizer(heads, [], 1e-3, 0.01, text, 1e-5)
    peaks = peak_rates(opt)
    assert peaks == [1e-3, 1e-5]
    scheduled_lr(opt, peaks, 0.5)
    assert [g["lr"] for g in opt.param_groups] == [5e-4, 5e-6]
    with pytest.raises(ValueError, match="text_lr"):
        build_optimizer(heads, [], 1e-3, 0.01, text, None)


def test_text_lr_tunes_the_encoder_and_saves_it(tmp_path, tiny_model_dir, pairs):
    before = load_file(str(tiny_model_dir / "model.safetensors"))
    frozen_run = fit(base_config(tmp_path / "frozen", tiny_model_dir, max_steps=3),
                     pairs=pairs, splits=_splits(pairs))
    after = load_file(str(frozen_run / "model.safetensors"))
    bert = [k for k in before if k.startswith("text_tower.bert.")]
    assert bert and all(torch.equal(before[k], after[k]) for k in bert)

    cfg = base_config(tmp_path / "tuned", tiny_model_dir, max_steps=3, text_lr=1e-3,
                      freeze=["text_tower.bert.embeddings"])
    out = fit(cfg, pairs=pairs, splits=_splits(pairs))
    tuned = load_file(str(out / "model.safetensors"))
    embeddings = [k for k in bert if k.startswith("text_tower.bert.embeddings.")]
    layers = [k for k in bert if k.startswith("text_tower.bert.encoder.") and "weight" in k]
    assert embeddings and all(torch.equal(before[k], tuned[k]) for k in embeddings)
    assert layers and all(not torch.equal(before[k], tuned[k]) for k in layers)
    assert not (out / "text_features.safetensors").exists()  # no cache of a moving encoder
    saved = ClaspConfig.load(out)
    assert saved.text_weights == "checkpoint" and saved.freeze_text is True
    reloaded = ClaspModel.from_pretrained(out)
    assert torch.equal(reloaded.state_dict()[layers[0]], tuned[layers[0]])
    # a later run from the tuned model without text_lr keeps its encoder as it is
    again = fit(base_config(tmp_path / "again", out, max_steps=2), pairs=pairs,
                splits=_splits(pairs))
    kept = load_file(str(again / "model.safetensors"))
    assert all(torch.equal(tuned[k], kept[k]) for k in bert)
    with pytest.raises(ValueError, match="text_lr must be positive"):
        TrainConfig.from_dict(base_config(tmp_path / "bad", tiny_model_dir, text_lr=0))


def test_unfreeze_text_encoder_stores_an_installed_encoder_with_the_model(tmp_path):
    model = make_tiny_model(tmp_path)
    model.config.text_weights = "external"  # as the bundled model: MiniLM from its package
    model.text_tower.bert.requires_grad_(False)
    unfreeze_text_encoder(model)
    assert model.config.text_weights == "checkpoint" and model.config.freeze_text
    assert all(p.requires_grad for p in model.text_tower.bert.parameters())
    model.save_pretrained(tmp_path / "saved")
    state = load_file(str(tmp_path / "saved" / "model.safetensors"))
    assert any(k.startswith("text_tower.bert.") for k in state)
    assert (tmp_path / "saved" / "tokenizer").is_dir()


def test_an_unfrozen_encoder_without_text_lr_trains_at_the_heads_rate(tmp_path, pairs):
    folder = tmp_path / "unfrozen"
    tiny_model_with_vocab(tmp_path, freeze_text=False).save_pretrained(folder)
    out = fit(base_config(tmp_path / "run", folder, max_steps=3), pairs=pairs,
              splits=_splits(pairs))
    before = load_file(str(folder / "model.safetensors"))
    after = load_file(str(out / "model.safetensors"))
    layers = [k for k in before if k.startswith("text_tower.bert.encoder.") and "weight" in k]
    assert layers and all(not torch.equal(before[k], after[k]) for k in layers)
