"""``TrainConfig``: everything one training run needs, loadable from YAML or JSON.

Defaults follow the official CLaSP pretraining (Toyota/clasp ``configs/training.yaml``, fact
sheet 5.2): CosFace loss with ``s=3.0, m=0.5``, AdamW with lr 2e-5 and weight decay 0.01,
mixed precision where the device supports it. Where this code differs from the official run
(warm-up + cosine schedule, duplicate captions as positives, cached text features) the field
says so.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matminer_clasp.config import ClaspConfig

__all__ = ["TrainConfig", "STAGES", "PRECISIONS", "SCHEDULES", "EARLY_STOPPING_METRICS"]

STAGES = ("pretrain", "finetune")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SCHEDULES = ("cosine", "linear", "constant")
#: How an epoch groups pairs into batches (``TrainConfig.batch_grouping``).
BATCH_GROUPINGS = ("random", "chemsys")
EARLY_STOPPING_METRICS = ("val_loss", "val_recall@1", "val_recall@5", "val_recall@10")

#: Official learning rates: ``training.yaml`` (2e-5) and ``finetuning.yaml`` (1e-6).
DEFAULT_LR = {"pretrain": 2e-5, "finetune": 1e-6}


def _data_config_class() -> type:
    from matminer_clasp.train.data import DataConfig

    return DataConfig


@dataclass
class TrainConfig:
    """Settings of one training run (see ``docs`` and :func:`matminer_clasp.train.fit`).

    Parameters
    ----------
    data
        A :class:`~matminer_clasp.train.data.DataConfig` (or a dict of its fields).
    model
        :class:`~matminer_clasp.config.ClaspConfig` fields of a model trained from scratch
        (``None`` with no ``init_from``: the official architecture). Exclusive with ``init_from``.
    init_from
        Folder or Hub id of a saved model to start from (fine-tuning). Required for
        ``stage="finetune"``.
    stage
        ``"pretrain"`` (paper stage 1: titles as captions) or ``"finetune"`` (stage 2: keyword
        captions, starting from a pretrained model; lr default 1e-6).
    loss, loss_kwargs
        Loss name for :func:`~matminer_clasp.train.losses.make_loss` and its arguments
        (CosFace defaults ``s=3.0, m=0.5``).
    lr
        Peak learning rate; ``None``: 2e-5 for pretraining, 1e-6 for fine-tuning (official).
    weight_decay
        AdamW weight decay (official: 0.01, the torch default).
    schedule, warmup_steps, warmup_ratio, min_lr_ratio
        Linear warm-up over ``max(warmup_steps, warmup_ratio * total_steps)`` optimizer steps,
        then ``"cosine"`` / ``"linear"`` decay to ``min_lr_ratio * lr``, or ``"constant"``
        (the official run used no schedule).
    epochs, max_steps
        Passes over the training split; ``max_steps`` (optimizer steps), when set, takes over.
    batch_size
        Pairs per process and micro-batch. Embeddings are gathered across processes, so the
        contrastive batch is ``batch_size * world_size`` (official: 2048 per device).
    grad_accum_steps
        Micro-batches per optimizer step (each micro-batch is its own contrastive batch).
    max_grad_norm, max_grad_value
        Optional gradient clipping by global norm / by value (official fine-tuning: value 2.0).
    precision
        ``"auto"`` (bf16 autocast on GPUs that support it, fp16 + loss scaling on older GPUs,
        fp32 on CPU), or ``"fp32"``, ``"bf16"``, ``"fp16"``.
    checkpoint_every
        Write ``checkpoint-<step>/`` every this many optimizer steps (``None``: never).
    keep_checkpoints
        Keep only the newest this many checkpoints (``None``: keep all).
    eval_every
        Validate every this many optimizer steps (``None``: at the end of every epoch; 0: never).
    early_stopping_patience, early_stopping_metric
        Stop after this many validations without improvement of the metric (``None``: never).
    output_dir
        Run folder: final model, ``best/``, checkpoints, ``metrics.csv``, ``train_config.json``.
    resume
        ``True``: continue from the newest checkpoint in ``output_dir``; a path: from that
        checkpoint folder; ``False``: start afresh.
    seed
        Seeds model initialisation, data order (``seed`` + epoch) and dropout.
    num_workers
        DataLoader worker processes for collation.
    log_every
        Log training loss, lr and throughput every this many optimizer steps.
    cache_text_features
        With a frozen text encoder, compute its pooled features once per distinct caption (eval
        mode, so BERT dropout is off, unlike the official run) and train only the text head.
    sync_batchnorm
        With several processes, compute BatchNorm statistics over the global batch, so the run
        is equivalent to one process on the whole batch (the official DDP run did not).
    device
        ``"cuda"``, ``"cpu"``, ...; ``None``: CUDA when available.
    eval_batch_size
        Batch size of validation embedding (``None``: ``batch_size * world_size``).
    freeze
        Parameter-name prefixes kept at their initial values, e.g. ``["crystal_tower"]`` for the
        untrained (random) crystal-tower baseline. BatchNorm running statistics still update.
    batch_grouping
        ``"random"`` (default): every batch a random sample of the training pairs.
        ``"chemsys"``: hard negatives; each epoch fills its batches with whole chemical systems
        (the set of elements), taken in random order, and shuffles the batches, so structures of
        one chemical system meet in a batch and must be told apart by more than composition.
    keyword_sampling
        With keyword captions (``data.captions: keywords``): the probability that a training
        pair's caption is, for one epoch, a single keyword drawn uniformly from its caption
        instead of the whole list, redrawn every epoch from ``(seed, epoch)``. A zero-shot query
        is one word; this trains on such queries too. Validation keeps the whole captions.
        ``0`` (default): off.
    text_lr
        Train the text encoder too, at this peak learning rate (the heads and the crystal
        tower keep ``lr``; a pretrained encoder wants a rate about ten times lower). Without it
        (``None``, default) the encoder stays frozen and its features are cached. Parameters
        named in ``freeze`` (e.g. ``text_tower.bert.encoder.layer.0.``) stay frozen, so only the
        top layers can be tuned. The saved model then carries the tuned encoder and its
        tokenizer (``text_weights: checkpoint``; about 90 MB for MiniLM), and ensembles can only
        merge members that share one encoder.
    distill_features, distill_weight
        Distillation from a pretrained crystal model (:mod:`~matminer_clasp.train.distill`): a
        teacher-features file written by ``matminer-clasp teacher-features`` (a path relative
        to the config file is read from there), and the weight of its auxiliary loss, added to
        the contrastive loss. Needs a CGCNN in the crystal tower. The saved model is unchanged
        in size and speed.
    """

    data: Any = None
    model: dict[str, Any] | None = None
    init_from: str | None = None
    stage: str = "pretrain"
    loss: str = "cosface"
    loss_kwargs: dict[str, Any] = field(default_factory=dict)
    lr: float | None = None
    weight_decay: float = 0.01
    schedule: str = "cosine"
    warmup_steps: int = 0
    warmup_ratio: float = 0.0
    min_lr_ratio: float = 0.0
    epochs: int = 10
    max_steps: int | None = None
    batch_size: int = 256
    grad_accum_steps: int = 1
    max_grad_norm: float | None = None
    max_grad_value: float | None = None
    precision: str = "auto"
    checkpoint_every: int | None = None
    keep_checkpoints: int | None = 3
    eval_every: int | None = None
    early_stopping_patience: int | None = None
    early_stopping_metric: str = "val_loss"
    output_dir: str = "clasp-run"
    resume: bool | str = False
    seed: int = 42
    num_workers: int = 0
    log_every: int = 10
    cache_text_features: bool = True
    sync_batchnorm: bool = True
    device: str | None = None
    eval_batch_size: int | None = None
    freeze: list[str] = field(default_factory=list)
    batch_grouping: str = "random"
    distill_features: str | None = None
    distill_weight: float = 0.1
    keyword_sampling: float = 0.0
    text_lr: float | None = None

    def __post_init__(self) -> None:
        data_cls = _data_config_class()
        if self.data is None:
            raise ValueError("TrainConfig.data is required (a DataConfig or a dict of its fields)")
        if isinstance(self.data, dict):
            self.data = _build(data_cls, self.data, "data")
        elif not isinstance(self.data, data_cls):
            raise ValueError(f"TrainConfig.data must be a DataConfig or dict, got {self.data!r}")
        for name, value, allowed in (
            ("stage", self.stage, STAGES),
            ("precision", self.precision, PRECISIONS),
            ("schedule", self.schedule, SCHEDULES),
            ("early_stopping_metric", self.early_stopping_metric, EARLY_STOPPING_METRICS),
            ("batch_grouping", self.batch_grouping, BATCH_GROUPINGS),
        ):
            if value not in allowed:
                raise ValueError(f"TrainConfig.{name}={value!r}; expected one of {allowed}")
        if self.model is not None and self.init_from is not None:
            raise ValueError(
                "TrainConfig: give either 'model' (a new architecture) or 'init_from' (a saved "
                "model to continue from), not both"
            )
        if self.model is not None:
            ClaspConfig.from_dict(self.model)  # unknown/invalid architecture keys fail here
        if self.stage == "finetune" and self.init_from is None:
            raise ValueError(
                "TrainConfig.stage='finetune' fine-tunes a pretrained model: set init_from to "
                "the output folder (or Hub id) of a pretraining run"
            )
        for name in ("batch_size", "grad_accum_steps", "epochs", "log_every"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_steps", "checkpoint_every", "keep_checkpoints"):
            value = getattr(self, name)
            if value is not None and int(value) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1 or null, got {value}")
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"TrainConfig.warmup_ratio must be in [0, 1), got {self.warmup_ratio}")
        for name in ("lr", "text_lr"):
            value = getattr(self, name)
            if value is not None and not float(value) > 0:
                raise ValueError(f"TrainConfig.{name} must be positive, got {value}")
        if not 0.0 <= float(self.keyword_sampling) <= 1.0:
            raise ValueError(
                f"TrainConfig.keyword_sampling must be in [0, 1], got {self.keyword_sampling}")
        if self.keyword_sampling and self.data.captions != "keywords":
            raise ValueError(
                "TrainConfig.keyword_sampling needs keyword captions (data.captions: keywords); "
                f"these captions are {self.data.captions!r}")
        if not float(self.distill_weight) > 0:
            raise ValueError(
                f"TrainConfig.distill_weight must be positive, got {self.distill_weight}"
            )

    # ------------------------------------------------------------------ derived values
    @property
    def learning_rate(self) -> float:
        """The peak learning rate (``lr``, or the official default of the stage)."""
        return float(self.lr) if self.lr is not None else DEFAULT_LR[self.stage]

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (``data`` as a nested dict)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["data"] = _jsonable(dataclasses.asdict(self.data))
        return _jsonable(out)

    def save(self, path: str | Path) -> Path:
        """Write the config as JSON to ``path``."""
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build a config from a (nested) dict; unknown keys raise a ``ValueError`` naming them."""
        if not isinstance(data, dict):
            raise ValueError(f"a training config must be a mapping, got {type(data).__name__}")
        return _build(cls, data, "TrainConfig")

    @classmethod
    def from_file(cls, path: str | Path) -> TrainConfig:
        """Read a ``.yaml``/``.yml`` or ``.json`` file.

        Raises
        ------
        FileNotFoundError
            If the file does not exist.
        ValueError
            If it cannot be parsed or holds unknown or invalid settings (the message names the
            file).
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"training config {path} not found")
        text = path.read_text()
        try:
            if path.suffix.lower() in (".yaml", ".yml"):
                import yaml

                data = yaml.safe_load(text)
            else:
                data = json.loads(text)
        except Exception as exc:  # yaml.YAMLError / json.JSONDecodeError
            raise ValueError(f"cannot parse training config {path}: {exc}") from exc
        try:
            config = cls.from_dict(data or {})
        except (TypeError, ValueError) as exc:
            raise ValueError(f"invalid training config {path}: {exc}") from exc
        ids_file = config.data.ids_file
        if ids_file is not None and not Path(ids_file).expanduser().is_absolute():
            config.data.ids_file = str(path.parent / ids_file)  # relative to the config file
        distill = config.distill_features
        if distill is not None and not Path(distill).expanduser().is_absolute():
            config.distill_features = str(path.parent / distill)
        return config


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown {where} keys {unknown}; known keys are {sorted(names)}")
    values = dict(data)
    if "fractions" in values and isinstance(values["fractions"], list):
        values["fractions"] = tuple(values["fractions"])
    return cls(**values)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value
