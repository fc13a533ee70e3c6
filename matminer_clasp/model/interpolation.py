"""Weight interpolation between a model and its fine-tuned version: :func:`interpolate_models`.

Fine-tuning a CLaSP model on new captions (keywords instead of titles, or a user's own corpus)
moves it towards the new task and away from what it did before. Averaging the weights of the
model before and after fine-tuning, ``(1 - alpha) * start + alpha * end``, often keeps most of
the gain and much of the old behaviour at once, at no cost: the result is an ordinary model of
the same size and speed (WiSE-FT; Wortsman et al., *Robust fine-tuning of zero-shot models*,
CVPR 2022). It only makes sense when ``end`` was fine-tuned *from* ``start``; two models trained
from different initialisations average into nonsense, which no check here can detect.

Ensembles interpolate member by member, as long as both sides have the same members.
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from matminer_clasp.model.clasp import ClaspModel

#: Config fields that may differ between the two ends (they are interpolated or recorded).
FREE_FIELDS = ("logit_scale", "logit_bias", "library_version", "extra")


def interpolate_models(start: ClaspModel, end: ClaspModel, alpha: float = 0.5) -> ClaspModel:
    """The model with weights ``(1 - alpha) * start + alpha * end``.

    Parameters
    ----------
    start
        The model before fine-tuning (for example the title-trained stage 1).
    end
        The same model after fine-tuning from ``start`` (for example the keyword stage 2).
    alpha
        Weight of ``end``, between 0 (``start``) and 1 (``end``).

    Returns
    -------
    ClaspModel
        A new model (neither input is changed) in eval mode on ``end``'s device, with ``end``'s
        config; ``logit_scale`` and ``logit_bias`` are interpolated too when both sides have
        them. Tensors equal on both sides (a frozen text encoder) are copied bit for bit, so
        interpolated members still merge into one ensemble.

    Raises
    ------
    ValueError
        When ``alpha`` is outside ``[0, 1]``, or the two models differ in architecture (a config
        field other than :data:`FREE_FIELDS`, a weight's name, shape or dtype).

    Examples
    --------
    >>> stage1 = ClaspModel.from_pretrained("runs/titles/best")            # doctest: +SKIP
    >>> stage2 = ClaspModel.from_pretrained("runs/keywords/best")          # doctest: +SKIP
    >>> interpolate_models(stage1, stage2, 0.5).save_pretrained("wise05")  # doctest: +SKIP
    """
    alpha = float(alpha)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1] (the weight of the fine-tuned model), got "
                         f"{alpha}")
    start_cfg, end_cfg = start.config.to_dict(), end.config.to_dict()
    for name in sorted(set(start_cfg) | set(end_cfg)):
        if name not in FREE_FIELDS and start_cfg.get(name) != end_cfg.get(name):
            raise ValueError(
                f"the models differ in {name} ({start_cfg.get(name)!r} vs "
                f"{end_cfg.get(name)!r}); interpolation needs one architecture, fine-tuned "
                "from the first model"
            )
    start_state, end_state = start.state_dict(), end.state_dict()
    if start_state.keys() != end_state.keys():
        missing = sorted(set(start_state) ^ set(end_state))
        raise ValueError(f"the models have different weights (first: {missing[0]})")
    mixed: dict[str, torch.Tensor] = {}
    for name, b in end_state.items():
        a = start_state[name].to(b.device)
        if a.shape != b.shape or a.dtype != b.dtype:
            raise ValueError(
                f"weight {name} is {tuple(a.shape)} {a.dtype} in the first model and "
                f"{tuple(b.shape)} {b.dtype} in the second"
            )
        if not b.is_floating_point() or torch.equal(a, b):
            mixed[name] = b.clone()  # counters (BatchNorm) and shared frozen weights
        else:
            mixed[name] = torch.lerp(a, b, alpha)
    out = copy.deepcopy(end)
    out.load_state_dict(mixed)
    scales = (start.config.logit_scale, end.config.logit_scale)
    if None not in scales:  # a positive multiplier, learned as its log: interpolate the log
        out.config.logit_scale = math.exp(
            (1 - alpha) * math.log(scales[0]) + alpha * math.log(scales[1]))
    biases = (start.config.logit_bias, end.config.logit_bias)
    if None not in biases:
        out.config.logit_bias = (1 - alpha) * biases[0] + alpha * biases[1]
    return out.eval()
