"""The training loop: :func:`fit`.

Follow one step: the epoch's order comes from ``seed`` and the epoch number alone
(:func:`~.batches.epoch_order`); each contrastive batch is cut into one contiguous shard per
process; :func:`~.batches.collate_pairs` turns ``(graph, caption id)`` items into a
``torch_geometric`` batch; the crystal tower embeds the graphs and the text head embeds the cached
pooled features of the frozen text encoder (:func:`~.text_cache.text_features`); embeddings are
gathered across processes with gradient (:mod:`.distributed`); the loss from :mod:`.losses` sees
the whole batch (plus, with ``distill_features``, the auxiliary loss of :mod:`.distill` on the
CGCNN vector); gradients are averaged, clipped and applied by AdamW at the rate of
:func:`~.optimization.lr_factor`. Checkpoints (:mod:`.checkpoint`) hold the model and the
optimizer/scaler/RNG state (:mod:`.state`); because the data order is a function of
(seed, epoch) and the global step, resuming repeats the uninterrupted run. Every saved model
(final, ``best/``, checkpoints) carries the loss's logit scale (:func:`~.checkpoint.save_model`).
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch_geometric.data import Batch
from tqdm.auto import tqdm

from matminer_clasp.config import ClaspConfig
from matminer_clasp.model.clasp import ClaspModel
from matminer_clasp.train.batches import (
    CaptionIndex,
    PairDataset,
    chemical_systems,
    collate_pairs,
    epoch_order,
)
from matminer_clasp.train.checkpoint import (
    check_output_dir,
    restore_checkpoint,
    resume_folder,
    save_model,
    write_checkpoint,
)
from matminer_clasp.train.config import TrainConfig
from matminer_clasp.train.distill import Distillation
from matminer_clasp.train.distributed import (
    DistInfo,
    average_gradients,
    convert_batchnorm,
    gather_no_grad,
    gather_with_grad,
    init_distributed,
)
from matminer_clasp.train.losses import make_loss
from matminer_clasp.train.metric_log import MetricLog
from matminer_clasp.train.metrics import retrieval_recall
from matminer_clasp.train.optimization import (
    autocast_dtype,
    lr_factor,
    optimizer_for,
    peak_rates,
    scheduled_lr,
    unfreeze_text_encoder,
)
from matminer_clasp.train.state import capture_rng
from matminer_clasp.train.text_cache import TEXT_FEATURES_NAME, text_features

# collate_pairs, epoch_order, text_features, lr_factor and CaptionIndex live in their own
# modules now; they stay importable from here, where they were first published.
__all__ = ["fit", "collate_pairs", "epoch_order", "text_features", "lr_factor", "CaptionIndex"]


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


def _barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


# ---------------------------------------------------------------------------- the run
class _Run:
    """State of one call to :func:`fit` (kept in one object so the loop reads top to bottom)."""

    def __init__(self, cfg: TrainConfig, pairs: Any, splits: dict[str, np.ndarray] | None,
                 model: ClaspModel | None, callbacks: Sequence[Callable[[dict], None]]) -> None:
        from matminer_clasp.train import data as data_module

        if os.environ.get("RANK", "0") == "0":  # the writer checks, before anything is written
            check_output_dir(Path(cfg.output_dir), cfg.resume)
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
        self.train_idx = np.asarray(self.splits["train"], dtype=np.int64)
        self.captions = CaptionIndex(pairs.captions,
                                     self.train_idx if cfg.keyword_sampling > 0 else None)
        self.val_idx = np.asarray(self.splits.get("val", []), dtype=np.int64)
        self.global_batch = cfg.batch_size * self.info.world_size
        self.batch_groups = (
            chemical_systems(pairs.graphs) if cfg.batch_grouping == "chemsys" else None
        )
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
        if cfg.text_lr is not None:
            unfreeze_text_encoder(model)
        if model.config.freeze_text and cfg.text_lr is None and cfg.cache_text_features:
            cache = self.out / TEXT_FEATURES_NAME
            if self.info.is_main:  # sibling runs (members, seeds, draws) often share captions
                siblings = sorted(self.out.parent.glob(f"*/{TEXT_FEATURES_NAME}"))
                self.features = text_features(model, self.captions.distinct, self.device, cache,
                                              show_progress_bar=True, sources=siblings)
            _barrier(self.info)
            if not self.info.is_main:
                self.features = text_features(model, self.captions.distinct, self.device, cache)
        if self.info.enabled and cfg.sync_batchnorm:
            convert_batchnorm(model)
        self.loss_fn = make_loss(cfg.loss, **cfg.loss_kwargs).to(self.device)
        self.distill = self._distillation() if cfg.distill_features is not None else None
        self.optimizer, self.params = optimizer_for(model, cfg, self.loss_fn, self.distill)
        self.peak_lrs = peak_rates(self.optimizer)
        self.amp_dtype = autocast_dtype(cfg.precision, self.device)
        self.scaler = torch.amp.GradScaler(self.device.type,
                                           enabled=self.amp_dtype == torch.float16)
        self.step = 0
        self.best: float | None = None
        self.bad_evals = 0
        self.last_eval_step = -1
        resume_from = resume_folder(cfg.resume, self.out)
        if resume_from is not None:
            info = restore_checkpoint(resume_from, model, self.optimizer, self.loss_fn,
                                      self.scaler, self.info.rank, self.info.world_size,
                                      self.fingerprint, self.distill)
            self.step = int(info["step"])
            self.best, self.bad_evals = info["best"], int(info["bad_evals"])
            self.last_eval_step = int(info["last_eval_step"])
        if self.info.is_main:
            cfg.save(self.out / "train_config.json")
            (self.out / "data_fingerprint").write_text(self.fingerprint + "\n")
        self.metrics = MetricLog(self.out, self.info.is_main,
                                 self.step if resume_from is not None else None)

    def _distillation(self) -> Distillation:
        """The auxiliary distillation term of ``cfg.distill_features``, hooked on the CGCNN."""
        source = str(self.cfg.distill_features)
        distill = Distillation.for_model(self.model, source, self.pairs.ids, self.train_idx)
        distill.to(self.device)
        if self.info.is_main:
            print(f"distillation from {source}: {distill.coverage:.0%} of the training pairs "
                  f"have a target (weight {self.cfg.distill_weight})")
        return distill

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
        order = epoch_order(self.train_idx, self.cfg.seed, epoch, self.batch_groups,
                            self.global_batch)
        bs, rank = self.cfg.batch_size, self.info.rank
        n_micro = self.steps_per_epoch * self.cfg.grad_accum_steps
        shards = [
            order[j * self.global_batch + rank * bs : j * self.global_batch + (rank + 1) * bs]
            for j in range(first_micro, n_micro)
        ]
        caption_ids = self.captions.epoch_ids(self.cfg.keyword_sampling, self.cfg.seed, epoch)
        return torch.utils.data.DataLoader(
            PairDataset(self.pairs.graphs, caption_ids, with_index=self.distill is not None),
            batch_sampler=[s.tolist() for s in shards],
            collate_fn=collate_pairs,
            num_workers=self.cfg.num_workers,
            generator=torch.Generator().manual_seed(self.cfg.seed * 1000 + epoch),
        )

    def _train_step(self, micro_batches: list[tuple[Batch, torch.Tensor]]) -> float:
        factor = lr_factor(self.step, self.total_steps, self.warmup, self.cfg.schedule,
                           self.cfg.min_lr_ratio)
        scheduled_lr(self.optimizer, self.peak_lrs, factor)
        lr = self.cfg.learning_rate * factor
        self.model.train()
        total = 0.0
        self.distill_total = 0.0
        for batch, caption_ids, *pair_idx in micro_batches:
            batch, caption_ids = batch.to(self.device), caption_ids.to(self.device)
            with self._autocast():
                crystal, text = self._embed(batch, caption_ids)
            crystal = gather_with_grad(crystal.float())
            text = gather_with_grad(text.float())
            ids = gather_no_grad(caption_ids)
            loss = self.loss_fn(crystal, text, ids)
            objective = loss
            if self.distill is not None:
                aux = self.distill.loss(pair_idx[0])
                objective = loss + self.cfg.distill_weight * aux
                self.distill_total += aux.item() / len(micro_batches)
            if not torch.isfinite(objective):
                raise FloatingPointError(
                    f"non-finite training loss at step {self.step + 1}: lower lr or use fp32"
                )
            self.scaler.scale(objective / len(micro_batches)).backward()
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
        model, idx = self.model, self.val_idx
        graphs = [self.pairs.graphs[i] for i in idx]
        crystal = torch.from_numpy(model.encode_graphs(graphs, self.global_batch, self.device))
        ids = self.captions.pair_ids[idx]
        distinct, local = np.unique(ids, return_inverse=True)
        model.eval()
        with torch.inference_mode():
            if self.features is not None:
                text_d = model.embed_text_features(self.features[torch.as_tensor(distinct)])
                text_d = text_d.float().cpu()
            else:
                text_d = torch.from_numpy(model.encode_texts(
                    [self.captions.distinct[i] for i in distinct], device=self.device))
        text = text_d[torch.as_tensor(local)]
        losses, weights = [], []
        size = self.cfg.eval_batch_size or self.global_batch
        with torch.inference_mode():
            for start in range(0, len(idx), size):
                stop = start + size
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
        info = {"step": self.step, "epoch": self.step // self.steps_per_epoch,
                "world_size": self.info.world_size, "data_fingerprint": self.fingerprint,
                "best": self.best, "bad_evals": self.bad_evals,
                "last_eval_step": self.last_eval_step}
        write_checkpoint(self.out, self.step, self.model, self.optimizer, self.loss_fn,
                         self.scaler.state_dict(), gathered, info, self.cfg.keep_checkpoints,
                         self.distill)

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
                save_model(self.model, self.loss_fn, self.out / "best")
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
                if self.distill is not None:
                    row["distill_loss"] = self.distill_total
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
            save_model(self.model, self.loss_fn, self.out)
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
    try:
        return run.train()
    finally:
        if run.distill is not None:
            run.distill.detach_hook()  # the model leaves as it came, even on an error
