"""The training loop: :func:`fit`.

Follow one step: the epoch's order comes from ``seed`` and the epoch number alone
(:func:`epoch_order`); each contrastive batch is cut into one contiguous shard per process;
:func:`collate_pairs` turns ``(graph, caption id)`` items into a ``torch_geometric`` batch;
the crystal tower embeds the graphs and the text head embeds the cached pooled features of the
frozen text encoder (:func:`text_features`); embeddings are gathered across processes with
gradient; the loss from :mod:`.losses` sees the whole batch; gradients are averaged, clipped and
applied by AdamW under a warm-up + cosine schedule. Checkpoints hold the model
(``save_pretrained``) and the optimizer/scaler/RNG state (:mod:`.state`); because the data order
is a function of (seed, epoch) and the global step, resuming repeats the uninterrupted run.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import math
import random
import shutil
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file, save_file
from torch_geometric.data import Batch, Data
from tqdm.auto import tqdm

from matminer_clasp.config import WEIGHTS_NAME, ClaspConfig
from matminer_clasp.model.clasp import ClaspModel
from matminer_clasp.model.io import TEXT_ENCODER_PREFIX
from matminer_clasp.train.config import TrainConfig
from matminer_clasp.train.distributed import (
    DistInfo,
    average_gradients,
    convert_batchnorm,
    gather_no_grad,
    gather_with_grad,
    init_distributed,
)
from matminer_clasp.train.losses import make_loss
from matminer_clasp.train.state import capture_rng, load_trainer_state, save_trainer_state

__all__ = ["fit", "collate_pairs", "epoch_order", "text_features", "lr_factor", "CaptionIndex"]

log = logging.getLogger(__name__)

TEXT_FEATURES_NAME = "text_features.safetensors"
METRIC_COLUMNS = ["step", "epoch", "split", "loss", "lr", "samples_per_s",
                  "recall@1", "recall@5", "recall@10", "elapsed_s"]


# ---------------------------------------------------------------------------- data plumbing
class CaptionIndex:
    """Distinct captions (first-appearance order) and the distinct id of every pair."""

    def __init__(self, captions: Sequence[str]) -> None:
        ids: dict[str, int] = {}
        self.pair_ids = np.array([ids.setdefault(c, len(ids)) for c in captions], dtype=np.int64)
        self.distinct = list(ids)


class _Pairs(torch.utils.data.Dataset):
    def __init__(self, graphs: Sequence[Data], caption_ids: np.ndarray) -> None:
        self.graphs, self.caption_ids = graphs, caption_ids

    def __len__(self) -> int:
        return len(self.graphs)

    def __getitem__(self, i: int) -> tuple[Data, int]:
        return self.graphs[i], int(self.caption_ids[i])


def collate_pairs(items: Sequence[tuple[Data, int]]) -> tuple[Batch, torch.Tensor]:
    """Collate ``(graph, caption index)`` items into ``(Batch, LongTensor of caption indices)``."""
    graphs, caption_ids = zip(*items)
    return Batch.from_data_list(list(graphs)), torch.tensor(caption_ids, dtype=torch.long)


def epoch_order(train_indices: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """The shuffled training order of ``epoch``: a function of (seed, epoch) only."""
    rng = np.random.default_rng([int(seed), int(epoch)])
    return np.asarray(train_indices)[rng.permutation(len(train_indices))]


def lr_factor(step: int, total: int, warmup: int, schedule: str, min_ratio: float = 0.0) -> float:
    """Multiplier of the peak lr for optimizer step ``step`` (0-based) of ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    shape = 0.5 * (1.0 + math.cos(math.pi * progress)) if schedule == "cosine" else 1.0 - progress
    return min_ratio + (1.0 - min_ratio) * shape


# ---------------------------------------------------------------------------- text features
def _text_fingerprint(model: ClaspModel, captions: Sequence[str]) -> str:
    h = hashlib.sha256()
    cfg = model.config
    h.update(f"{cfg.text_model}|{cfg.text_pooling}|{cfg.max_length}\n".encode())
    for name, tensor in sorted(model.text_tower.bert.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    for caption in captions:
        h.update(caption.encode() + b"\0")
    return h.hexdigest()


@torch.inference_mode()
def text_features(
    model: ClaspModel,
    captions: Sequence[str],
    device: torch.device,
    cache_file: Path | None = None,
    batch_size: int = 256,
    show_progress_bar: bool = False,
) -> torch.Tensor:
    """Pooled frozen-encoder features ``(n, hidden)`` of ``captions``, computed once.

    The encoder runs in eval mode (no dropout), each caption once, in length-sorted batches. With
    ``cache_file`` the result is stored as safetensors with a fingerprint of the encoder weights
    and captions, and reused when the fingerprint matches.
    """
    fingerprint = _text_fingerprint(model, captions)
    if cache_file is not None and cache_file.is_file():
        from safetensors import safe_open

        with safe_open(str(cache_file), framework="pt") as f:
            if (f.metadata() or {}).get("fingerprint") == fingerprint:
                return f.get_tensor("features").to(device)
    tower = model.text_tower
    was_training = tower.training
    tower.eval().to(device)
    out = None
    order = np.argsort([-len(c) for c in captions], kind="stable")
    try:
        for start in tqdm(range(0, len(captions), batch_size), desc="Caching text features",
                          disable=not show_progress_bar):
            idx = order[start : start + batch_size]
            tokens = model.tokenize([captions[i] for i in idx]).to(device)
            feats = tower.pooled_features(tokens["input_ids"], tokens["attention_mask"]).float()
            if out is None:
                out = torch.empty(len(captions), feats.shape[1], device=device)
            out[torch.as_tensor(idx, device=device)] = feats
    finally:
        tower.train(was_training)
    if cache_file is not None:
        save_file({"features": out.cpu().contiguous()}, str(cache_file),
                  metadata={"fingerprint": fingerprint})
    return out


# ---------------------------------------------------------------------------- helpers
def _as_config(config: TrainConfig | str | Path | dict[str, Any]) -> TrainConfig:
    if isinstance(config, TrainConfig):
        return config
    if isinstance(config, dict):
        return TrainConfig.from_dict(config)
    return TrainConfig.from_file(config)


def _build_model(cfg: TrainConfig) -> ClaspModel:
    torch.manual_seed(cfg.seed)
    if cfg.init_from is not None:
        return ClaspModel.from_pretrained(cfg.init_from)
    return ClaspModel(ClaspConfig.from_dict(cfg.model or {}))


def _autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "fp32":
        return None
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if precision == "bf16" else torch.float16


def _load_weights(model: ClaspModel, folder: Path) -> None:
    state = load_file(str(folder / WEIGHTS_NAME))
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(TEXT_ENCODER_PREFIX)]
    if missing or unexpected:
        raise ValueError(
            f"cannot resume from {folder}: its weights do not match the model ({missing[:3]} "
            f"missing, {unexpected[:3]} unexpected)"
        )


def _latest_checkpoint(output_dir: Path) -> Path | None:
    found = [(int(p.name.split("-")[1]), p) for p in output_dir.glob("checkpoint-*")
             if p.name.split("-")[1].isdigit() and (p / "trainer_state.json").is_file()]
    return max(found)[1] if found else None


def _barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


class _MetricLog:
    """``metrics.csv`` (rank 0), plus TensorBoard when it is installed."""

    def __init__(self, folder: Path, enabled: bool, resume_step: int | None) -> None:
        self.enabled = enabled
        self.path = folder / "metrics.csv"
        self.tb = None
        if not enabled:
            return
        rows = []
        if resume_step is not None and self.path.is_file():
            with self.path.open() as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resume_step]
        with self.path.open("w", newline="") as f:
            writer = csv.DictWriter(f, METRIC_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        try:
            import tensorboard  # noqa: F401
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(folder / "tensorboard"))
        except ImportError:
            self.tb = None

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, METRIC_COLUMNS).writerow({k: row.get(k, "") for k in METRIC_COLUMNS})
        if self.tb is not None:
            for key, value in row.items():
                if key not in ("step", "epoch", "split") and isinstance(value, (int, float)):
                    self.tb.add_scalar(f"{row['split']}/{key}", value, row["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


# ---------------------------------------------------------------------------- the run
class _Run:
    """State of one call to :func:`fit` (kept in one object so the loop reads top to bottom)."""

    def __init__(self, cfg: TrainConfig, pairs: Any, splits: dict[str, np.ndarray] | None,
                 model: ClaspModel | None, callbacks: Sequence[Callable[[dict], None]]) -> None:
        from matminer_clasp.train import data as data_module

        self.cfg = cfg
        self.callbacks = list(callbacks)
        self.owns_group = not (dist.is_available() and dist.is_initialized())
        self.info, self.device = init_distributed(cfg.device)
        random.seed(cfg.seed + self.info.rank)
        np.random.seed((cfg.seed + self.info.rank) % 2**32)
        self.model = model if model is not None else _build_model(cfg)
        torch.manual_seed(cfg.seed + self.info.rank)
        self.out = Path(cfg.output_dir)
        if self.info.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        if pairs is None:  # rank 0 first, so that the on-disk graph cache is written once
            if not self.info.is_main:
                _barrier(self.info)
            pairs = data_module.load_pairs(cfg.data, self.model.config,
                                           show_progress_bar=self.info.is_main)
            if self.info.is_main:
                _barrier(self.info)
        self.pairs = pairs
        self.splits = splits if splits is not None else data_module.split_indices(pairs, cfg.data)
        self.fingerprint = data_module.data_fingerprint(pairs)
        self.captions = CaptionIndex(pairs.captions)
        self.train_idx = np.asarray(self.splits["train"], dtype=np.int64)
        self.val_idx = np.asarray(self.splits.get("val", []), dtype=np.int64)
        self.global_batch = cfg.batch_size * self.info.world_size
        micro_per_epoch = len(self.train_idx) // self.global_batch
        self.steps_per_epoch = micro_per_epoch // cfg.grad_accum_steps
        if self.steps_per_epoch < 1:
            raise ValueError(
                f"the training split has {len(self.train_idx)} pairs, fewer than one optimizer "
                f"step needs (batch_size {cfg.batch_size} x {self.info.world_size} processes x "
                f"grad_accum_steps {cfg.grad_accum_steps}); lower batch_size"
            )
        self.total_steps = cfg.max_steps or cfg.epochs * self.steps_per_epoch
        self.warmup = max(cfg.warmup_steps, int(cfg.warmup_ratio * self.total_steps))

    # -------------------------------------------------------------- setup
    def setup(self) -> None:
        cfg, model = self.cfg, self.model
        model.to(self.device)
        self.features = None
        if model.config.freeze_text and cfg.cache_text_features:
            cache = self.out / TEXT_FEATURES_NAME
            if self.info.is_main:
                self.features = text_features(model, self.captions.distinct, self.device, cache,
                                              show_progress_bar=True)
            _barrier(self.info)
            if not self.info.is_main:
                self.features = text_features(model, self.captions.distinct, self.device, cache)
        if self.info.enabled and cfg.sync_batchnorm:
            convert_batchnorm(model)
        self.loss_fn = make_loss(cfg.loss, **cfg.loss_kwargs).to(self.device)
        for name, param in model.named_parameters():
            if any(name.startswith(prefix) for prefix in cfg.freeze):
                param.requires_grad_(False)
        self.params = [p for p in model.parameters() if p.requires_grad]
        groups = [{"params": self.params, "weight_decay": cfg.weight_decay}]
        loss_params = list(self.loss_fn.parameters())
        if loss_params:
            groups.append({"params": loss_params, "weight_decay": 0.0})
        self.optimizer = torch.optim.AdamW(groups, lr=cfg.learning_rate)
        self.amp_dtype = _autocast_dtype(cfg.precision, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type,
                                           enabled=self.amp_dtype == torch.float16)
        self.step = 0
        self.best: float | None = None
        self.bad_evals = 0
        self.last_eval_step = -1
        resume_from = self._resume_folder()
        if resume_from is not None:
            self._resume(resume_from)
        if self.info.is_main:
            cfg.save(self.out / "train_config.json")
            (self.out / "data_fingerprint").write_text(self.fingerprint + "\n")
        self.metrics = _MetricLog(self.out, self.info.is_main,
                                  self.step if resume_from is not None else None)

    def _resume_folder(self) -> Path | None:
        resume = self.cfg.resume
        if resume is False or resume is None:
            return None
        if resume is True:
            folder = _latest_checkpoint(self.out)
            if folder is None:
                log.warning("resume=True but %s holds no checkpoint: starting afresh", self.out)
            return folder
        folder = Path(resume)
        if not folder.is_dir():
            raise FileNotFoundError(f"resume checkpoint {folder} not found")
        return folder

    def _resume(self, folder: Path) -> None:
        _load_weights(self.model, folder)
        meta = load_trainer_state(folder, self.optimizer, self.loss_fn, self.info.rank)
        info = meta["info"]
        if info["data_fingerprint"] != self.fingerprint:
            raise ValueError(
                f"cannot resume from {folder}: it was trained on different data (fingerprint "
                f"{info['data_fingerprint']}, now {self.fingerprint})"
            )
        if info["world_size"] != self.info.world_size:
            raise ValueError(
                f"cannot resume from {folder}: it was written by {info['world_size']} processes, "
                f"this run has {self.info.world_size}; the data order would differ"
            )
        if meta["scaler"]:
            self.scaler.load_state_dict(meta["scaler"])
        self.step = int(info["step"])
        self.best, self.bad_evals = info["best"], int(info["bad_evals"])
        self.last_eval_step = int(info["last_eval_step"])
        log.info("resumed from %s at step %d", folder, self.step)

    # -------------------------------------------------------------- one step
    def _autocast(self) -> Any:
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _embed(self, batch: Batch, caption_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        model = self.model
        crystal = model.embed_graphs(batch)
        if self.features is not None:
            text = model.embed_text_features(self.features[caption_ids])
        else:
            tokens = model.tokenize([self.captions.distinct[i] for i in caption_ids.tolist()])
            tokens = tokens.to(self.device)
            text = model.embed_tokens(tokens["input_ids"], tokens["attention_mask"])
        return crystal, text

    def _micro_batches(self, epoch: int, first_micro: int) -> torch.utils.data.DataLoader:
        order = epoch_order(self.train_idx, self.cfg.seed, epoch)
        bs, rank = self.cfg.batch_size, self.info.rank
        n_micro = self.steps_per_epoch * self.cfg.grad_accum_steps
        shards = [
            order[j * self.global_batch + rank * bs : j * self.global_batch + (rank + 1) * bs]
            for j in range(first_micro, n_micro)
        ]
        return torch.utils.data.DataLoader(
            _Pairs(self.pairs.graphs, self.captions.pair_ids),
            batch_sampler=[s.tolist() for s in shards],
            collate_fn=collate_pairs,
            num_workers=self.cfg.num_workers,
            generator=torch.Generator().manual_seed(self.cfg.seed * 1000 + epoch),
        )

    def _train_step(self, micro_batches: list[tuple[Batch, torch.Tensor]]) -> float:
        lr = self.cfg.learning_rate * lr_factor(self.step, self.total_steps, self.warmup,
                                                self.cfg.schedule, self.cfg.min_lr_ratio)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        total = 0.0
        for batch, caption_ids in micro_batches:
            batch, caption_ids = batch.to(self.device), caption_ids.to(self.device)
            with self._autocast():
                crystal, text = self._embed(batch, caption_ids)
            crystal = gather_with_grad(crystal.float())
            text = gather_with_grad(text.float())
            ids = gather_no_grad(caption_ids)
            loss = self.loss_fn(crystal, text, ids)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"non-finite training loss at step {self.step + 1}: lower lr or use fp32"
                )
            self.scaler.scale(loss / len(micro_batches)).backward()
            total += loss.item() / len(micro_batches)
        average_gradients(self.params + list(self.loss_fn.parameters()))
        self.scaler.unscale_(self.optimizer)
        if self.cfg.max_grad_value is not None:
            torch.nn.utils.clip_grad_value_(self.params, self.cfg.max_grad_value)
        if self.cfg.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.cfg.max_grad_norm)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.lr = lr
        return total

    # -------------------------------------------------------------- validation
    def validate(self) -> dict[str, float]:
        """Validation loss (contrastive batches of the training size) and text->structure recall."""
        from matminer_clasp.train.evaluate import retrieval_recall

        model, idx = self.model, self.val_idx
        graphs = [self.pairs.graphs[i] for i in idx]
        crystal = torch.from_numpy(model.encode_graphs(graphs, self.global_batch, self.device))
        ids = self.captions.pair_ids[idx]
        distinct = np.unique(ids)
        model.eval()
        with torch.inference_mode():
            if self.features is not None:
                text_d = model.embed_text_features(self.features[torch.as_tensor(distinct)])
                text_d = text_d.float().cpu()
            else:
                text_d = torch.from_numpy(model.encode_texts(
                    [self.captions.distinct[i] for i in distinct], device=self.device))
        position = {c: k for k, c in enumerate(distinct)}
        local = np.array([position[c] for c in ids])
        text = text_d[torch.as_tensor(local)]
        losses, weights = [], []
        with torch.inference_mode():
            for start in range(0, len(idx), self.cfg.eval_batch_size or self.global_batch):
                stop = start + (self.cfg.eval_batch_size or self.global_batch)
                if len(idx[start:stop]) < 2:
                    continue
                value = self.loss_fn(crystal[start:stop].to(self.device),
                                     text[start:stop].to(self.device),
                                     torch.as_tensor(ids[start:stop], device=self.device))
                losses.append(value.item())
                weights.append(len(idx[start:stop]))
        recall = retrieval_recall(crystal.numpy(), text_d.numpy(), local)["text_to_structure"]
        return {"loss": float(np.average(losses, weights=weights)) if losses else float("nan"),
                **{k: v for k, v in recall.items() if k.startswith("recall@")}}

    # -------------------------------------------------------------- files
    def save_checkpoint(self) -> None:
        rng = capture_rng()
        if self.info.enabled:
            gathered: list[Any] = [None] * self.info.world_size
            dist.all_gather_object(gathered, rng)
        else:
            gathered = [rng]
        if not self.info.is_main:
            return
        folder = self.out / f"checkpoint-{self.step}"
        tmp = self.out / f".tmp-checkpoint-{self.step}"
        shutil.rmtree(tmp, ignore_errors=True)
        self.model.save_pretrained(tmp)
        info = {"step": self.step, "epoch": self.step // self.steps_per_epoch,
                "world_size": self.info.world_size, "data_fingerprint": self.fingerprint,
                "best": self.best, "bad_evals": self.bad_evals,
                "last_eval_step": self.last_eval_step}
        save_trainer_state(tmp, self.optimizer, self.loss_fn, self.scaler.state_dict(),
                           gathered, info)
        shutil.rmtree(folder, ignore_errors=True)
        tmp.rename(folder)
        if self.cfg.keep_checkpoints:
            old = sorted((int(p.name.split("-")[1]), p) for p in self.out.glob("checkpoint-*")
                         if p.name.split("-")[1].isdigit())
            for _, path in old[: -self.cfg.keep_checkpoints]:
                shutil.rmtree(path, ignore_errors=True)

    def _evaluate_and_track(self, epoch: int) -> bool:
        """Validate, log, keep ``best/``; return True when early stopping triggers."""
        metrics = self.validate()
        self.last_eval_step = self.step
        self.metrics.write({"step": self.step, "epoch": epoch, "split": "val", **metrics})
        self._notify({"step": self.step, "epoch": epoch, "split": "val", **metrics})
        name = self.cfg.early_stopping_metric.removeprefix("val_")
        value = metrics[name]
        sign = 1.0 if name == "loss" else -1.0
        if self.best is None or sign * value < sign * self.best:
            self.best, self.bad_evals = value, 0
            if self.info.is_main:
                self.model.save_pretrained(self.out / "best")
        else:
            self.bad_evals += 1
        patience = self.cfg.early_stopping_patience
        return patience is not None and self.bad_evals >= patience

    def _notify(self, row: dict[str, Any]) -> None:
        for callback in self.callbacks:
            callback(dict(row))

    # -------------------------------------------------------------- loop
    def train(self) -> Path:
        cfg = self.cfg
        use_val = len(self.val_idx) >= 2 and cfg.eval_every != 0
        bar = tqdm(total=self.total_steps, initial=self.step, desc="Training", unit="step",
                   disable=not self.info.is_main)
        stop = False
        tick, seen = time.perf_counter(), 0
        start_time = time.perf_counter()
        while self.step < self.total_steps and not stop:
            epoch = self.step // self.steps_per_epoch
            in_epoch = self.step % self.steps_per_epoch
            loader = iter(self._micro_batches(epoch, in_epoch * cfg.grad_accum_steps))
            for _ in range(in_epoch, self.steps_per_epoch):
                micro = [next(loader) for _ in range(cfg.grad_accum_steps)]
                loss = self._train_step(micro)
                seen += self.global_batch * cfg.grad_accum_steps
                bar.update(1)
                row = {"step": self.step, "epoch": epoch, "split": "train", "loss": loss,
                       "lr": self.lr}
                if self.step % cfg.log_every == 0 or self.step == self.total_steps:
                    now = time.perf_counter()
                    row["samples_per_s"] = seen / max(now - tick, 1e-9)
                    row["elapsed_s"] = now - start_time
                    tick, seen = now, 0
                    self.metrics.write(row)
                    bar.set_postfix(loss=f"{loss:.4f}", lr=f"{self.lr:.2e}")
                self._notify(row)
                end_of_epoch = self.step % self.steps_per_epoch == 0
                due = (cfg.eval_every and self.step % cfg.eval_every == 0) or (
                    not cfg.eval_every and end_of_epoch)
                if use_val and due:
                    stop = self._evaluate_and_track(epoch)
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    self.save_checkpoint()
                if stop or self.step >= self.total_steps:
                    break
        bar.close()
        if use_val and self.last_eval_step != self.step:
            self._evaluate_and_track(self.step // self.steps_per_epoch)
        if self.info.is_main:
            self.model.save_pretrained(self.out)
            summary = {"steps": self.step, "best_" + cfg.early_stopping_metric: self.best,
                       "early_stopped": stop, "world_size": self.info.world_size}
            (self.out / "train_summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        self.metrics.close()
        _barrier(self.info)
        if self.info.enabled and self.owns_group:
            dist.destroy_process_group()
        return self.out


def fit(
    config: TrainConfig | str | Path | dict[str, Any],
    pairs: Any | None = None,
    splits: dict[str, np.ndarray] | None = None,
    model: ClaspModel | None = None,
    callbacks: Sequence[Callable[[dict[str, Any]], None]] = (),
) -> Path:
    """Train a CLaSP model; return the output folder.

    Parameters
    ----------
    config
        A :class:`TrainConfig`, a dict of its fields, or the path of a YAML/JSON file.
    pairs
        Already loaded :class:`~matminer_clasp.train.data.PairData`; default: loaded with
        ``load_pairs(config.data, model.config)``.
    splits
        ``{"train": ..., "val": ..., "test": ...}`` index arrays into ``pairs``; default:
        ``split_indices(pairs, config.data)``.
    model
        A model to train in place of the one ``config.model`` / ``config.init_from`` describes.
    callbacks
        Functions called with a dict (``step``, ``epoch``, ``split``, ``loss``, ``lr``, ...) after
        every optimizer step and every validation, on every process.

    Returns
    -------
    pathlib.Path
        ``config.output_dir``, holding the final model (``save_pretrained`` layout), ``best/``
        (when validation ran), ``checkpoint-<step>/`` folders, ``train_config.json``,
        ``metrics.csv``, ``data_fingerprint``, ``text_features.safetensors`` (frozen text
        encoder) and ``train_summary.json``.

    Notes
    -----
    Run on several GPUs or nodes with ``torchrun --nproc_per_node N -m matminer_clasp.train
    CONFIG``; only rank 0 writes files.
    """
    cfg = _as_config(config)
    run = _Run(cfg, pairs, splits, model, callbacks)
    run.setup()
    return run.train()
