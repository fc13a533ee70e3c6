"""Distillation from a pretrained crystal model: its features as an auxiliary training target.

A foundation model of crystals (CHGNet, whose weights ship inside the ``chgnet`` wheel) knows
more about local chemistry than 8,000 captioned structures can teach, but running it costs about
100 ms a structure. Distillation keeps the knowledge and drops the cost:

1. :func:`compute_teacher_features` runs the teacher once over the structures of a data config
   (``matminer-clasp teacher-features CONFIG --out FILE``) and :func:`save_teacher_features`
   writes ``features`` (``(n, d)`` float32, a NaN row where the teacher could not run, e.g. a
   disordered structure) with the entry ids, the teacher's name and the reasons as metadata.
2. ``TrainConfig.distill_features`` names that file. :class:`Distillation` aligns it with the
   training pairs (:func:`load_teacher_targets`), standardises it with the training rows'
   statistics, and adds ``distill_weight * MSE(head(cgcnn vector), standardised target)`` to
   the contrastive loss, where the CGCNN vector is the crystal tower's pooled graph vector,
   caught by a forward hook, and ``head`` a linear map fitted alongside.

The head lives in the training run only (its state is in checkpoints, for resuming), never in
the saved model: a distilled model has the architecture, file format and inference cost of an
undistilled one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

logger = logging.getLogger(__name__)

__all__ = [
    "TEACHERS",
    "Distillation",
    "compute_teacher_features",
    "load_teacher_features",
    "load_teacher_targets",
    "save_teacher_features",
]

#: Teachers :func:`compute_teacher_features` knows, with what their vector is.
TEACHERS = {"chgnet": "CHGNet crystal features (crystal_fea, 64-d), energy task"}

_FORMAT = "matminer_clasp.teacher_features/1"


# ----------------------------------------------------------------------------- teacher features
def compute_teacher_features(
    ids: Sequence[str],
    structures: Sequence[Any],
    teacher: str = "chgnet",
    batch_size: int = 16,
    show_progress_bar: bool = False,
) -> tuple[np.ndarray, dict[str, str]]:
    """Run the teacher on ``structures``; return ``(features, reasons)``.

    Parameters
    ----------
    ids
        One id per structure (named in ``reasons``).
    structures
        pymatgen ``Structure`` objects.
    teacher
        A key of :data:`TEACHERS`.
    batch_size
        Structures per teacher call.
    show_progress_bar
        tqdm bar over the batches.

    Returns
    -------
    features : numpy.ndarray
        ``(n, d)`` float32; the row of a structure the teacher could not take is NaN.
    reasons : dict
        ``id -> why`` for every NaN row (disordered sites, a teacher error).
    """
    if teacher not in TEACHERS:
        raise ValueError(f"unknown teacher {teacher!r}; known: {sorted(TEACHERS)}")
    if len(ids) != len(structures):
        raise ValueError(f"{len(ids)} ids for {len(structures)} structures")
    try:
        from chgnet.model import CHGNet
    except ImportError as exc:
        raise ImportError("teacher 'chgnet' needs the chgnet package: pip install chgnet") from exc
    from tqdm.auto import tqdm

    model = CHGNet.load(verbose=False)
    model.eval()
    reasons: dict[str, str] = {}
    ready = []
    for i, (id_, structure) in enumerate(zip(ids, structures)):
        if not structure.is_ordered:
            reasons[id_] = "disordered structure (CHGNet needs one element per site)"
        else:
            ready.append(i)
    rows: dict[int, np.ndarray] = {}
    batches = [ready[k : k + batch_size] for k in range(0, len(ready), batch_size)]
    for batch in tqdm(batches, desc=f"{teacher} features", disable=not show_progress_bar):
        try:
            out = model.predict_structure([structures[i] for i in batch], task="e",
                                          return_crystal_feas=True, batch_size=len(batch))
            if isinstance(out, dict):  # CHGNet answers a list of one with a bare dict
                out = [out]
        except Exception:  # one bad structure fails the batch: retry one by one
            out = []
            for i in batch:
                try:
                    out.append(model.predict_structure(structures[i], task="e",
                                                       return_crystal_feas=True))
                except Exception as exc:
                    reasons[ids[i]] = f"{teacher} failed: {type(exc).__name__}: {exc}"[:300]
                    out.append(None)
        for i, result in zip(batch, out):
            if result is not None:
                rows[i] = np.asarray(result["crystal_fea"], dtype=np.float32).reshape(-1)
    dim = len(next(iter(rows.values()))) if rows else 64
    features = np.full((len(ids), dim), np.nan, dtype=np.float32)
    for i, row in rows.items():
        if np.isfinite(row).all():
            features[i] = row
        else:
            reasons[ids[i]] = f"{teacher} returned non-finite features"
    return features, reasons


def save_teacher_features(path: str | Path, ids: Sequence[str], features: np.ndarray,
                          teacher: str, reasons: dict[str, str] | None = None,
                          overwrite: bool = False) -> Path:
    """Write teacher features as safetensors (``features``; ids, teacher, reasons as metadata).

    Refuses an existing ``path`` unless ``overwrite``.
    """
    from safetensors.numpy import save_file

    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists: refusing to overwrite teacher features "
                              "(remove it or choose another file)")
    features = np.ascontiguousarray(features, dtype=np.float32)
    if features.ndim != 2 or features.shape[0] != len(ids):
        raise ValueError(f"features of shape {features.shape} for {len(ids)} ids")
    meta = {"format": _FORMAT, "teacher": teacher, "ids": json.dumps(list(map(str, ids))),
            "reasons": json.dumps(reasons or {})}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file({"features": features}, str(tmp), metadata=meta)
    tmp.replace(path)
    return path


def load_teacher_features(path: str | Path) -> tuple[list[str], np.ndarray, dict[str, Any]]:
    """Read and validate a teacher-features file; return ``(ids, features, metadata)``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If it is not a teacher-features file, or its ids, shape or values are inconsistent (a
        row must be all finite or all NaN); the message names the file.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"teacher features {path} not found")
    try:
        with safe_open(str(path), framework="numpy") as handle:
            meta = dict(handle.metadata() or {})
            if "features" not in handle.keys():
                raise ValueError("no 'features' tensor")
            features = handle.get_tensor("features")
        if meta.get("format") != _FORMAT:
            raise ValueError(f"format {meta.get('format')!r}, expected {_FORMAT!r}")
        ids = json.loads(meta["ids"])
        reasons = json.loads(meta.get("reasons", "{}"))
    except Exception as exc:  # bad JSON, missing keys, safetensors' errors for a damaged file
        raise ValueError(f"{path} is not a readable teacher-features file: {exc}") from exc
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ValueError(f"{path}: metadata 'ids' is not a list of strings")
    if len(set(ids)) != len(ids):
        raise ValueError(f"{path}: duplicate ids in the metadata")
    if features.ndim != 2 or features.shape[0] != len(ids) or features.shape[1] < 1:
        raise ValueError(f"{path}: features of shape {features.shape} for {len(ids)} ids")
    if features.dtype != np.float32:
        raise ValueError(f"{path}: features are {features.dtype}, expected float32")
    finite = np.isfinite(features)
    mixed = np.flatnonzero(finite.any(axis=1) & ~finite.all(axis=1))
    if mixed.size:
        raise ValueError(f"{path}: row of id {ids[mixed[0]]!r} is partly non-finite")
    return ids, features, {"teacher": meta.get("teacher", ""), "reasons": reasons}


def load_teacher_targets(path: str | Path, pair_ids: Sequence[str]) -> torch.Tensor:
    """Teacher features aligned with ``pair_ids``: ``(n_pairs, d)``, NaN where there is none."""
    ids, features, _ = load_teacher_features(path)
    row_of = {id_: i for i, id_ in enumerate(ids)}
    out = np.full((len(pair_ids), features.shape[1]), np.nan, dtype=np.float32)
    missing = 0
    for j, id_ in enumerate(pair_ids):
        i = row_of.get(id_)
        if i is None:
            missing += 1
        else:
            out[j] = features[i]
    if missing:
        logger.info("teacher features %s: %d of %d pairs have no row", path, missing,
                    len(pair_ids))
    return torch.from_numpy(out)


# ----------------------------------------------------------------------------- the training term
class Distillation(nn.Module):
    """The auxiliary loss: a linear head from the CGCNN vector to the standardised teacher target.

    Parameters
    ----------
    in_dim
        Width of the CGCNN vector (``ClaspConfig.atom_fea_len``).
    targets
        ``(n_pairs, d)`` teacher features of every pair, NaN rows where there is none.
    train_idx
        Training pairs: their finite rows give the mean and spread of the standardisation.
    source
        Where the targets came from (for messages).

    Notes
    -----
    :meth:`attach` hooks the crystal tower's CGCNN; after each training forward pass,
    :meth:`loss` compares the caught vectors of the batch's pairs with their targets. Pairs with
    no target add nothing; a batch with none gives a zero that keeps the graph connected.
    """

    def __init__(self, in_dim: int, targets: torch.Tensor, train_idx: np.ndarray,
                 source: str = "teacher features") -> None:
        super().__init__()
        train_rows = targets[torch.as_tensor(np.asarray(train_idx, dtype=np.int64))]
        usable = train_rows[torch.isfinite(train_rows).all(dim=1)]
        if usable.shape[0] < 2:
            raise ValueError(f"{source}: {usable.shape[0]} training pairs have a teacher target; "
                             "distillation needs at least 2")
        self.register_buffer("mean", usable.mean(dim=0))
        self.register_buffer("scale", usable.std(dim=0).clamp_min(1e-6))
        self.head = nn.Linear(in_dim, targets.shape[1])
        self.targets = targets  # not a buffer: derived from the file, not training state
        self.coverage = usable.shape[0] / max(train_rows.shape[0], 1)
        self._caught: torch.Tensor | None = None
        self._hook: Any = None

    @classmethod
    def for_model(cls, model: nn.Module, source: str, pair_ids: Sequence[str],
                  train_idx: np.ndarray) -> Distillation:
        """The distillation of ``model``'s CGCNN towards the features file ``source``, attached.

        ``pair_ids`` are the ids of every pair (the targets' rows), ``train_idx`` the training
        pairs. Raises a ``ValueError`` when the model's crystal tower has no CGCNN.
        """
        cgcnn = getattr(model.crystal_tower, "cgcnn", None)
        if cgcnn is None:
            raise ValueError(f"distill_features={source!r} needs a CGCNN in the crystal tower; "
                             f"this model's is {model.config.crystal_encoder!r}")
        distill = cls(model.config.atom_fea_len, load_teacher_targets(source, pair_ids),
                      train_idx, source)
        distill.attach(cgcnn)
        return distill

    def attach(self, cgcnn: nn.Module) -> None:
        """Catch ``cgcnn``'s output vector on every training forward pass."""

        def catch(module: nn.Module, args: Any, output: torch.Tensor) -> None:
            if module.training:
                self._caught = output

        self._hook = cgcnn.register_forward_hook(catch)

    def detach_hook(self) -> None:
        """Remove the hook (the model is then as it was)."""
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def loss(self, pair_idx: torch.Tensor) -> torch.Tensor:
        """MSE of the last caught batch against the targets of ``pair_idx`` (its pairs)."""
        caught = self._caught
        if caught is None:
            raise RuntimeError("Distillation.loss: no CGCNN vector caught; call attach() and run "
                               "the crystal tower in training mode first")
        self._caught = None
        if caught.shape[0] != pair_idx.shape[0]:
            raise RuntimeError(f"Distillation.loss: {caught.shape[0]} vectors for "
                               f"{pair_idx.shape[0]} pairs")
        target = self.targets[pair_idx.cpu()].to(caught.device)
        has = torch.isfinite(target).all(dim=1)
        if not bool(has.any()):
            return caught.sum() * 0.0
        z = (target[has] - self.mean) / self.scale
        pred = self.head(caught[has].float())
        return torch.nn.functional.mse_loss(pred, z)
