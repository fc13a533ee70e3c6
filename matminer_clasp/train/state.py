"""Training-state files of a checkpoint, written without pickle.

``trainer_state.safetensors`` holds every tensor (optimizer moments, loss parameters, RNG
states); ``trainer_state.json`` holds everything else (step, optimizer hyper-parameters, loss
scaler, Python/NumPy RNG scalars, early-stopping counters). Loading never unpickles anything.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

__all__ = ["capture_rng", "restore_rng", "save_trainer_state", "load_trainer_state"]

TENSORS_NAME = "trainer_state.safetensors"
JSON_NAME = "trainer_state.json"


def capture_rng() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Return this process's RNG states as (tensors, JSON-able values)."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = state
    np_state = np.random.get_state()
    tensors["numpy"] = torch.from_numpy(np.asarray(np_state[1], dtype=np.int64))
    py_version, py_state, py_gauss = random.getstate()
    values = {
        "numpy": [np_state[0], int(np_state[2]), int(np_state[3]), float(np_state[4])],
        "python": [py_version, list(py_state), py_gauss],
    }
    return tensors, values


def restore_rng(tensors: dict[str, torch.Tensor], values: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    torch.set_rng_state(tensors["torch"])
    cuda = sorted(k for k in tensors if k.startswith("cuda."))
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([tensors[k] for k in cuda])
    name, pos, has_gauss, cached = values["numpy"]
    np.random.set_state(
        (name, tensors["numpy"].numpy().astype(np.uint32), pos, has_gauss, cached)
    )
    version, state, gauss = values["python"]
    random.setstate((version, tuple(state), gauss))


def save_trainer_state(
    folder: Path,
    optimizer: torch.optim.Optimizer,
    loss_fn: torch.nn.Module,
    scaler_state: dict[str, Any],
    rng: list[tuple[dict[str, torch.Tensor], dict[str, Any]]],
    info: dict[str, Any],
    distill: torch.nn.Module | None = None,
) -> None:
    """Write the optimizer, loss, loss-scaler, per-rank RNG states and ``info`` to ``folder``.

    ``distill``: the run's distillation head (:mod:`.distill`), saved as ``distill.*`` tensors.
    """
    tensors: dict[str, torch.Tensor] = {}
    opt = optimizer.state_dict()
    opt_values: dict[str, Any] = {}
    for index, state in opt["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{key}"] = value
            else:
                opt_values[f"{index}.{key}"] = value
    for key, value in loss_fn.state_dict().items():
        tensors[f"loss.{key}"] = value
    if distill is not None:
        for key, value in distill.state_dict().items():
            tensors[f"distill.{key}"] = value
    rng_values = []
    for rank, (rank_tensors, values) in enumerate(rng):
        for key, value in rank_tensors.items():
            tensors[f"rng.{rank}.{key}"] = value
        rng_values.append(values)
    save_file(
        {k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(folder / TENSORS_NAME)
    )
    meta = {
        "info": info,
        "optimizer_param_groups": opt["param_groups"],
        "optimizer_scalars": opt_values,
        "scaler": scaler_state,
        "rng": rng_values,
    }
    (folder / JSON_NAME).write_text(json.dumps(meta, indent=1))


def load_trainer_state(folder: Path, optimizer: torch.optim.Optimizer, loss_fn: torch.nn.Module,
                       rank: int, distill: torch.nn.Module | None = None) -> dict[str, Any]:
    """Restore optimizer and loss state and this rank's RNG; return the JSON metadata.

    ``distill``: the run's distillation head; a checkpoint written with one resumes only into a
    run with one, and the other way round.

    Raises
    ------
    FileNotFoundError
        If ``folder`` lacks the state files.
    ValueError
        If the state does not fit the optimizer (different parameters or world size).
    """
    tensor_path, json_path = folder / TENSORS_NAME, folder / JSON_NAME
    for path in (tensor_path, json_path):
        if not path.is_file():
            raise FileNotFoundError(f"cannot resume: {path} not found")
    tensors = load_file(str(tensor_path))
    meta = json.loads(json_path.read_text())
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for key, value in meta["optimizer_scalars"].items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    try:
        optimizer.load_state_dict({"state": state, "param_groups": meta["optimizer_param_groups"]})
        loss_fn.load_state_dict(
            {k[5:]: v for k, v in tensors.items() if k.startswith("loss.")}, strict=True
        )
        saved_distill = {k[8:]: v for k, v in tensors.items() if k.startswith("distill.")}
        if distill is not None:
            distill.load_state_dict(saved_distill, strict=True)
        elif saved_distill:
            raise ValueError("the checkpoint was written by a run with distillation, this run "
                             "has none (set distill_features as before)")
    except (ValueError, RuntimeError, KeyError) as exc:
        raise ValueError(
            f"cannot resume from {folder}: the saved state does not fit ({exc})"
        ) from exc
    if rank >= len(meta["rng"]):
        raise ValueError(
            f"cannot resume from {folder}: it was written by {len(meta['rng'])} processes, "
            f"this run has more (rank {rank})"
        )
    prefix = f"rng.{rank}."
    restore_rng({k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)},
                meta["rng"][rank])
    return meta
