"""What a run writes besides metrics: model folders and ``checkpoint-<step>/`` folders.

A saved model records the scale (and bias) with which its loss turned cosines into logits
(:func:`save_model`: ``ClaspConfig.logit_scale`` / ``logit_bias`` in ``config.json``). A
checkpoint is such a model folder plus the trainer state of :mod:`.state`; it is written to a
temporary folder and renamed, so a killed run never leaves half a checkpoint, and only the
newest ``keep`` are kept. :func:`restore_checkpoint` refuses a checkpoint of other data or of
another number of processes, whose data order would differ.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from matminer_clasp.config import WEIGHTS_NAME
from matminer_clasp.errors import RunExistsError
from matminer_clasp.model.clasp import ClaspModel
from matminer_clasp.model.io import TEXT_ENCODER_PREFIX, _read_weights
from matminer_clasp.model.weights_check import check_tensors
from matminer_clasp.train.state import load_trainer_state, save_trainer_state

__all__ = [
    "RUN_FILES",
    "check_output_dir",
    "save_model",
    "write_checkpoint",
    "latest_checkpoint",
    "resume_folder",
    "restore_checkpoint",
]

log = logging.getLogger(__name__)

_PREFIX = "checkpoint-"

#: What marks a folder as holding a run (besides ``checkpoint-<step>/`` folders).
RUN_FILES = ("config.json", "model.safetensors", "best", "metrics.csv", "train_config.json",
             "train_summary.json", "data_fingerprint")


def check_output_dir(output_dir: Path, resume: bool | str | None) -> None:
    """Refuse to start a run in ``output_dir`` that would overwrite another run.

    A new run (``resume`` false) needs a folder without :data:`RUN_FILES` and checkpoints
    (other files, e.g. a cache or the config itself, are fine); ``resume=True`` needs a
    checkpoint when the folder holds a run. A resumed run keeps writing into its own folder.

    Raises
    ------
    RunExistsError
        Naming the folder and what it holds; nothing has been written.
    """
    if not output_dir.is_dir():
        return
    found = [name for name in RUN_FILES if (output_dir / name).exists()]
    found += [path.name for _, path in _checkpoints(output_dir)][:3]
    if not found:
        return
    if isinstance(resume, (str, os.PathLike)) and (
            Path(resume).expanduser().resolve().parent != output_dir.resolve()):
        raise RunExistsError(
            f"{output_dir} already holds a training run ({', '.join(found)}) and the checkpoint "
            f"to resume, {resume}, is not one of its own: resuming would overwrite that run; "
            "choose an empty --output-dir (or the checkpoint's own run folder); nothing was "
            "changed"
        )
    if resume is False or resume is None:
        raise RunExistsError(
            f"{output_dir} already holds a training run ({', '.join(found)}); pass --resume "
            "(resume: true) to continue it, or choose another --output-dir; nothing was changed"
        )
    if resume is True and latest_checkpoint(output_dir) is None:
        raise RunExistsError(
            f"{output_dir} holds a training run ({', '.join(found)}) but no complete checkpoint "
            "to resume from; choose another --output-dir; nothing was changed"
        )


def save_model(model: ClaspModel, loss_fn: torch.nn.Module, folder: Path) -> None:
    """``model.save_pretrained(folder)`` with the loss's logit scale and bias in its config.

    ``config.logit_scale`` is the multiplier of the cosine, ``logits = logit_scale * cos +
    logit_bias``: ``exp`` of the learned log-scale for InfoNCE (clamped as in training) and
    SigLIP, the fixed ``s`` for CosFace (its margin applies to training positives only).
    ``config.logit_bias`` is SigLIP's learned bias (``None`` for the others). The model's config
    object itself is updated, so the model in memory and the folder agree.
    """
    model.config.logit_scale, model.config.logit_bias = loss_fn.logit_scale_and_bias()
    model.save_pretrained(folder)


def _checkpoints(output_dir: Path) -> list[tuple[int, Path]]:
    found = []
    for path in output_dir.glob(_PREFIX + "*"):
        step = path.name.removeprefix(_PREFIX)
        if step.isdigit():
            found.append((int(step), path))
    return sorted(found)


def write_checkpoint(
    output_dir: Path,
    step: int,
    model: ClaspModel,
    optimizer: torch.optim.Optimizer,
    loss_fn: torch.nn.Module,
    scaler_state: dict[str, Any],
    rng: list[Any],
    info: dict[str, Any],
    keep: int | None,
    distill: torch.nn.Module | None = None,
) -> Path:
    """Write ``output_dir/checkpoint-<step>/`` atomically; keep the newest ``keep`` of them.

    ``rng`` holds every rank's :func:`~matminer_clasp.train.state.capture_rng` result and
    ``info`` the step counters that :func:`restore_checkpoint` reads back; ``distill`` is the
    run's distillation head, if any (trainer state only, never part of the model).
    """
    folder = output_dir / f"{_PREFIX}{step}"
    tmp = output_dir / f".tmp-{_PREFIX}{step}"
    shutil.rmtree(tmp, ignore_errors=True)
    save_model(model, loss_fn, tmp)
    save_trainer_state(tmp, optimizer, loss_fn, scaler_state, rng, info, distill)
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    if keep:  # only this run's older checkpoints; never the one just written
        older = [(s, p) for s, p in _checkpoints(output_dir) if s < step and p != folder]
        for _, path in older[: max(0, len(older) - (keep - 1))]:
            shutil.rmtree(path, ignore_errors=True)
    return folder


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The complete checkpoint of the highest step in ``output_dir``, or ``None``."""
    found = [(s, p) for s, p in _checkpoints(output_dir) if (p / "trainer_state.json").is_file()]
    return found[-1][1] if found else None


def resume_folder(resume: bool | str | None, output_dir: Path) -> Path | None:
    """The checkpoint a ``TrainConfig.resume`` value names (``None``: start afresh).

    Raises
    ------
    FileNotFoundError
        If ``resume`` is a path that is not a folder.
    """
    if resume is False or resume is None:
        return None
    if resume is True:
        folder = latest_checkpoint(output_dir)
        if folder is None:
            log.warning("resume=True but %s holds no checkpoint: starting afresh", output_dir)
        return folder
    folder = Path(resume)
    if not folder.is_dir():
        raise FileNotFoundError(f"resume checkpoint {folder} not found")
    return folder


def _load_weights(model: ClaspModel, folder: Path) -> None:
    path = folder / WEIGHTS_NAME
    state, metadata = _read_weights(path, None)  # an unreadable file is a ModelLoadError
    expected = model.state_dict()
    unknown = sorted(set(state) - set(expected))
    if not unknown:
        check_tensors(path, state, expected, metadata)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(TEXT_ENCODER_PREFIX)]
    if missing or unexpected:
        raise ValueError(
            f"cannot resume from {folder}: its weights do not match the model ({missing[:3]} "
            f"missing, {unexpected[:3]} unexpected)"
        )


def restore_checkpoint(
    folder: Path,
    model: ClaspModel,
    optimizer: torch.optim.Optimizer,
    loss_fn: torch.nn.Module,
    scaler: torch.amp.GradScaler,
    rank: int,
    world_size: int,
    data_fingerprint: str,
    distill: torch.nn.Module | None = None,
) -> dict[str, Any]:
    """Load weights, optimizer, loss, scaler, this rank's RNG and distillation head from ``folder``.

    Returns
    -------
    dict
        The checkpoint's ``info`` (``step``, ``best``, ``bad_evals``, ``last_eval_step``, ...).

    Raises
    ------
    ValueError
        If the weights or state do not fit, or the checkpoint was written for other data or
        another number of processes.
    """
    _load_weights(model, folder)
    meta = load_trainer_state(folder, optimizer, loss_fn, rank, distill)
    info = meta["info"]
    if info["data_fingerprint"] != data_fingerprint:
        raise ValueError(
            f"cannot resume from {folder}: it was trained on different data (fingerprint "
            f"{info['data_fingerprint']}, now {data_fingerprint})"
        )
    if info["world_size"] != world_size:
        raise ValueError(
            f"cannot resume from {folder}: it was written by {info['world_size']} processes, "
            f"this run has {world_size}; the data order would differ"
        )
    if meta["scaler"]:
        scaler.load_state_dict(meta["scaler"])
    log.info("resumed from %s at step %d", folder, int(info["step"]))
    return info
