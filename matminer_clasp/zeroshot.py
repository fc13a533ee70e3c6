"""Zero-shot classification of crystals by text labels: :class:`ZeroShotClassifier`.

Follow a prediction: each label is written into several prompt templates -> ``encode_texts`` ->
the unit vectors are averaged and renormalised (prompt ensembling, as in CLIP / open_clip) ->
cosine against the structure embeddings -> ``argmax`` (``predict``) or softmax of
``cosine / temperature`` (``predict_proba``; by default ``temperature = 1 / logit_scale``, the
scale the model's training loss used, when its ``config.json`` stores one). The official CLaSP
zero-shot evaluation
(``eval_scripts/eval_zero_shot_roc.py``) scores bare keywords by cosine; the bare ``"{}"`` template
is therefore one of the defaults.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from matminer_clasp.inputs import check_embeddings, split_inputs
from matminer_clasp.model.registry import get_model, get_text_model

#: Prompt templates averaged into one class embedding (``{}`` is replaced by the label).
DEFAULT_TEMPLATES: tuple[str, ...] = (
    "{}",
    "a {} material",
    "a {} compound",
    "crystal structure of a {} compound",
    "{} crystal",
)

#: Templates of the negative class in binary mode ("X" vs "not X").
DEFAULT_NEGATIVE_TEMPLATES: tuple[str, ...] = (
    "a material that is not {}",
    "a compound that is not {}",
    "crystal structure of a compound that is not {}",
    "not {}",
)


def check_templates(templates: Sequence[str]) -> list[str]:
    """The prompt templates as a list, each checked for its ``{}`` placeholder.

    Raises
    ------
    ValueError
        When ``templates`` is empty or a template has no ``{}``.
    """
    templates = [templates] if isinstance(templates, str) else list(templates)
    if not templates:
        raise ValueError("templates is empty: give at least one, e.g. '{}'")
    for t in templates:
        if not isinstance(t, str) or "{}" not in t:
            raise ValueError(f"template {t!r} has no '{{}}' placeholder for the label")
    return templates


def prompt_centroids(
    model: Any, groups: Sequence[Sequence[str]], batch_size: int = 64, device: str | None = None
) -> np.ndarray:
    """One unit vector per group of prompts: the renormalised mean of their embeddings.

    Parameters
    ----------
    model
        A loaded model with ``encode_texts`` (unit-norm rows).
    groups
        Prompt groups, e.g. one label written into every template; all are embedded in one
        ``encode_texts`` call.
    batch_size, device
        Passed to ``encode_texts``.

    Returns
    -------
    numpy.ndarray
        ``(len(groups), embedding_dim)`` float32, unit-norm rows.
    """
    if any(not group for group in groups):
        raise ValueError("every prompt group needs at least one prompt")
    texts = [t for group in groups for t in group]
    emb = np.asarray(model.encode_texts(texts, batch_size=batch_size, device=device))
    centroids, start = [], 0
    for group in groups:
        mean = emb[start : start + len(group)].mean(axis=0)
        centroids.append(mean / np.linalg.norm(mean))
        start += len(group)
    return np.stack(centroids).astype(np.float32)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class ZeroShotClassifier(ClassifierMixin, BaseEstimator):
    """Classify crystals by cosine similarity to text labels, with no training.

    Parameters
    ----------
    labels
        Class names, e.g. ``["ferroelectric", "ferromagnetic", "superconductor"]``; ``classes_`` is
        this list in order. In binary mode: one label (a string or a one-element list).
    templates
        Prompt templates with a ``{}`` placeholder; default :data:`DEFAULT_TEMPLATES`. The class
        embedding is the renormalised mean of the unit-norm template embeddings.
    negative_templates
        Binary mode only: prompts of the "not X" class (``{}`` optional, so a literal such as
        ``"a paraelectric material"`` works); default :data:`DEFAULT_NEGATIVE_TEMPLATES`.
    model
        ``None`` (bundled default), a model folder / Hub id, or a :class:`ClaspModel`. Loaded on
        first use and never pickled when given by name.
    binary
        "X vs not X": ``classes_ = [False, True]``, ``decision_function`` is
        ``cos(X) - cos(not X) - threshold_`` and ``predict_proba`` its logistic.
    temperature
        Softmax temperature on cosines (``0.1`` = logit scale 10). ``None`` (default): ``1 /
        model.config.logit_scale``, the scale the model's training loss applied to cosines
        (stored by the trainer), or ``0.1`` for a model that stores none. A given value always
        wins. Only ``predict_proba`` depends on it; ``fit(X, y)`` with ``calibrate=True``
        replaces it by the value that minimises the log-loss on ``(X, y)`` (stored as
        ``temperature_``). A SigLIP model's ``logit_bias`` is not used: both modes compare
        classes by a softmax, in which a bias common to all classes cancels.
    calibrate
        When ``fit`` receives ``y``: fit ``temperature_`` (grid search on the log-loss) and, in
        binary mode, ``threshold_`` (maximising balanced accuracy). ``predict`` in multi-class
        mode never changes (argmax of cosines).
    batch_size
        Structures / texts per forward pass.
    device
        Torch device for embedding (default: where the model is).

    Attributes
    ----------
    classes_ : numpy.ndarray
        ``labels`` (multi-class) or ``[False, True]`` (binary).
    class_embeddings_ : numpy.ndarray
        ``(n_classes, dim)`` unit-norm prompt-ensemble embeddings (binary: ``[not X, X]``).
    temperature_, threshold_ : float
        Temperature and binary decision threshold in use (``temperature_`` comes from
        ``temperature``, else the model's stored scale, else 0.1, unless calibrated).
    n_features_in_ : int
        The model's embedding size (the width of precomputed-embedding input).

    Examples
    --------
    >>> clf = ZeroShotClassifier(["ferroelectric", "ferromagnetic"]).fit()  # doctest: +SKIP
    >>> clf.predict(structures)                                             # doctest: +SKIP
    """

    def __init__(
        self,
        labels: Sequence[str] | str = ("ferroelectric", "ferromagnetic", "superconductor"),
        templates: Sequence[str] | None = None,
        negative_templates: Sequence[str] | None = None,
        model: Any = None,
        binary: bool = False,
        temperature: float | None = None,
        calibrate: bool = True,
        batch_size: int = 64,
        device: Any = None,
    ) -> None:
        self.labels = labels
        self.templates = templates
        self.negative_templates = negative_templates
        self.model = model
        self.binary = binary
        self.temperature = temperature
        self.calibrate = calibrate
        self.batch_size = batch_size
        self.device = device

    # -------------------------------------------------------------- model & inputs
    def _get_model(self) -> Any:
        """The model: the instance given, or the process's shared copy of the one named."""
        return get_model(self.model)

    def _embed(self, X: Any) -> np.ndarray:
        """Structures or embeddings -> unit-norm ``(n, dim)`` float32."""
        emb, structures = split_inputs(X)
        if structures is not None:
            return self._get_model().encode_structures(
                structures, batch_size=self.batch_size, device=self.device
            )
        if emb.shape[0] == 0:
            raise ValueError(f"Found array with 0 sample(s) (shape={emb.shape})")
        emb = check_embeddings(emb, None)
        dim = getattr(self, "n_features_in_", None)
        if dim is not None and emb.shape[1] != dim:
            raise ValueError(
                f"X has {emb.shape[1]} features, but ZeroShotClassifier is expecting {dim} "
                "features as input (the model's embedding size)"
            )
        return emb

    def _prompts(self) -> tuple[list[str], list[list[str]]]:
        labels = [self.labels] if isinstance(self.labels, str) else list(self.labels)
        if not labels:
            raise ValueError("labels is empty: give at least one class name")
        if self.binary and len(labels) != 1:
            raise ValueError(f"binary=True needs exactly one label, got {len(labels)}: {labels}")
        if not self.binary and len(labels) < 2:
            raise ValueError("a zero-shot classifier needs at least two labels (or binary=True)")
        if len(set(map(str, labels))) != len(labels):
            raise ValueError(f"labels must be unique, got {labels}")
        templates = check_templates(self.templates or DEFAULT_TEMPLATES)
        groups = [[t.format(lab) for t in templates] for lab in labels]
        if self.binary:
            negs = list(self.negative_templates or DEFAULT_NEGATIVE_TEMPLATES)
            groups = [[t.format(labels[0]) if "{}" in t else t for t in negs], groups[0]]
        return labels, groups

    # -------------------------------------------------------------- fitting
    def fit(self, X: Any = None, y: Any = None) -> ZeroShotClassifier:
        """Embed the prompts; optionally calibrate on labelled data.

        Parameters
        ----------
        X
            ``None``, or structures / embeddings (needed only together with ``y``).
        y
            Optional labels of ``X`` (multi-class: values of ``labels``; binary: booleans,
            0/1, or the label string for positives) used by ``calibrate``.

        Returns
        -------
        ZeroShotClassifier
            ``self``.
        """
        if self.temperature is not None and not self.temperature > 0:
            raise ValueError(f"temperature must be positive or None, got {self.temperature!r}")
        labels, groups = self._prompts()
        if y is not None:
            _check_target(y, self.binary)
        model = get_text_model(self.model)  # the text half is enough for the prompts
        self.class_embeddings_ = prompt_centroids(model, groups, self.batch_size, self.device)
        self.classes_ = np.array([False, True]) if self.binary else np.asarray(labels)
        self.n_features_in_ = int(model.config.embedding_dim)
        self.temperature_ = _default_temperature(self.temperature, model)
        self.threshold_ = 0.0
        if X is not None:
            emb_x = self._embed(X)
            if y is not None and self.calibrate:
                self._calibrate(emb_x, self._encode_y(y, len(emb_x)))
        return self

    def _encode_y(self, y: Any, n: int) -> np.ndarray:
        y = np.asarray(y)
        if y.ndim != 1 or len(y) != n:
            raise ValueError(
                f"y must be 1-D with one label per row of X ({n}), got shape {y.shape}"
            )
        if self.binary:
            label = self.labels if isinstance(self.labels, str) else self.labels[0]
            if y.dtype.kind in "biu" and set(np.unique(y)) <= {0, 1}:
                return y.astype(int)
            if y.dtype.kind in "UO":
                return (y == label).astype(int)
            raise ValueError(f"binary y must be booleans, 0/1 or label strings, got {y.dtype}")
        lookup = {str(c): i for i, c in enumerate(self.classes_)}
        unknown = sorted({str(v) for v in y} - set(lookup))
        if unknown:
            raise ValueError(
                f"y has labels that are not in labels={list(self.classes_)}: {unknown}"
            )
        return np.array([lookup[str(v)] for v in y])

    def _calibrate(self, emb: np.ndarray, yi: np.ndarray) -> None:
        cos = emb @ self.class_embeddings_.T
        if self.binary:
            margin = cos[:, 1] - cos[:, 0]
            if 0 < yi.sum() < len(yi):
                self.threshold_ = _best_threshold(margin, yi)
            logits = np.stack([np.zeros_like(margin), margin - self.threshold_], axis=1)
        else:
            logits = cos
        grid = np.geomspace(1e-3, 10.0, 121)
        losses = [
            -np.log(np.clip(_softmax(logits / t)[np.arange(len(yi)), yi], 1e-12, None)).mean()
            for t in grid
        ]
        self.temperature_ = float(grid[int(np.argmin(losses))])

    # -------------------------------------------------------------- prediction
    def similarity(self, X: Any) -> np.ndarray:
        """Cosines ``(n, n_classes)`` between ``X`` and the class embeddings."""
        check_is_fitted(self, "class_embeddings_")
        return self._embed(X) @ self.class_embeddings_.T

    def decision_function(self, X: Any) -> np.ndarray:
        """Cosines ``(n, n_classes)``; binary: ``cos(X) - cos(not X) - threshold_``, ``(n,)``."""
        cos = self.similarity(X)
        return cos[:, 1] - cos[:, 0] - self.threshold_ if self.binary else cos

    def predict_proba(self, X: Any) -> np.ndarray:
        """Softmax of ``decision / temperature_``; columns follow ``classes_``."""
        d = self.decision_function(X).astype(np.float64)
        if self.binary:
            d = np.stack([np.zeros_like(d), d], axis=1)
        return _softmax(d / self.temperature_)

    def predict(self, X: Any) -> np.ndarray:
        """Most similar class per row (binary: ``decision_function > 0``)."""
        d = self.decision_function(X)
        if self.binary:
            return d > 0
        return self.classes_[np.argmax(d, axis=1)]

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.requires_fit = True
        tags.target_tags.required = False
        tags.input_tags.allow_nan = False
        tags.non_deterministic = False
        return tags


#: Temperature of models that store no logit scale (trained before it was stored, converted).
FALLBACK_TEMPERATURE = 0.1


def _default_temperature(temperature: float | None, model: Any) -> float:
    """The given ``temperature``, else ``1 / model.config.logit_scale``, else the fallback."""
    if temperature is not None:
        return float(temperature)
    scale = getattr(model.config, "logit_scale", None)
    return 1.0 / float(scale) if scale else FALLBACK_TEMPERATURE


def _check_target(y: Any, binary: bool) -> None:
    from sklearn.utils.multiclass import type_of_target

    kind = type_of_target(y, input_name="y")
    allowed = {"binary"} if binary else {"binary", "multiclass"}
    if kind not in allowed:
        raise ValueError(
            f"Unknown label type: {kind}. ZeroShotClassifier calibrates on class labels "
            f"({' or '.join(sorted(allowed))} targets)"
        )


def _best_threshold(margin: np.ndarray, yi: np.ndarray) -> float:
    """Threshold on ``margin`` that maximises balanced accuracy (ties: closest to 0)."""
    s = np.sort(np.unique(margin))
    cands = np.concatenate([[s[0] - 1e-6], (s[1:] + s[:-1]) / 2, [s[-1] + 1e-6]])
    pos, neg = yi == 1, yi == 0
    pred = margin[None, :] > cands[:, None]
    bacc = (pred[:, pos].mean(axis=1) + (~pred[:, neg]).mean(axis=1)) / 2
    best = np.flatnonzero(bacc == bacc.max())
    return float(cands[best[np.argmin(np.abs(cands[best]))]])
