"""Type and range checks of :class:`~matminer_clasp.config.ClaspConfig` fields.

A ``config.json`` is read from disk and therefore not trusted: every field is checked for its
type (``"embedding_dim": "768"``, ``"max_num_nbr": 12.5``, ``"normalize_eps": null``) and its range
before any model is built, and *all* bad fields are reported in one
:class:`~matminer_clasp.errors.ConfigError` (one ``ClaspConfig.<field> ...`` message a field), so
a user fixes the file in one go instead of meeting the problems one by one inside torch.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from matminer_clasp.errors import ConfigError

#: Integer fields and their smallest allowed value.
_INT_MIN = {
    "orig_atom_fea_len": 1, "atom_fea_len": 1, "n_conv": 0, "nbr_fea_len": 1,
    "crystal_head_layers": 1, "crystal_hidden_dim": 1, "composition_hidden_dim": 1,
    "max_num_nbr": 1, "max_sites": 1, "max_length": 1, "text_head_layers": 1,
    "text_hidden_dim": 1, "embedding_dim": 1,
}

#: Float fields and their allowed open/closed interval ``(low, low_inclusive, high)``.
_FLOAT_RANGE = {
    "radius": (0.0, False, math.inf),
    "gaussian_step": (0.0, False, math.inf),
    "min_distance": (0.0, True, math.inf),
    "normalize_eps": (0.0, False, 1.0),
    "graph_dropout": (0.0, True, 1.0),
}

_STR_FIELDS = ("crystal_encoder", "cell", "text_model", "text_weights", "text_pooling")
_BOOL_FIELDS = ("use_spacegroup", "freeze_text")
_OPTIONAL = ("crystal_hidden_dim", "text_config", "members", "logit_scale", "logit_bias")


def _describe(value: Any) -> str:
    text = repr(value)
    return f"{text[:40]}... ({type(value).__name__})" if len(text) > 40 else (
        f"{text} ({type(value).__name__})"
    )


def _type_problem(name: str, value: Any) -> str | None:
    """Why ``value`` has the wrong type for field ``name`` (``None``: it is fine)."""
    if value is None:
        return None if name in _OPTIONAL else f"ClaspConfig.{name} must not be null"
    if name in _INT_MIN:
        if isinstance(value, bool) or not isinstance(value, int):
            return f"ClaspConfig.{name} must be an integer, got {_describe(value)}"
    elif name in _FLOAT_RANGE or name in ("logit_scale", "logit_bias"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"ClaspConfig.{name} must be a number, got {_describe(value)}"
        if name in _FLOAT_RANGE and not math.isfinite(value):  # logits: _check_logits
            return f"ClaspConfig.{name} must be finite, got {value}"
    elif name in _STR_FIELDS:
        if not isinstance(value, str):
            return f"ClaspConfig.{name} must be a string, got {_describe(value)}"
    elif name in _BOOL_FIELDS:
        if not isinstance(value, bool):
            return f"ClaspConfig.{name} must be true or false, got {_describe(value)}"
    elif name in ("text_config", "extra"):
        if not isinstance(value, dict):
            return f"ClaspConfig.{name} must be a JSON object, got {_describe(value)}"
    elif name == "members":
        if not isinstance(value, list) or not all(isinstance(m, dict) for m in value):
            return f"ClaspConfig.members must be a list of JSON objects, got {_describe(value)}"
    return None


def _range_problem(name: str, value: Any) -> str | None:
    """Why ``value`` is out of range for field ``name`` (``None``: it is fine)."""
    if value is None:
        return None
    if name in _INT_MIN and value < _INT_MIN[name]:
        word = "non-negative" if _INT_MIN[name] == 0 else "positive"
        return f"ClaspConfig.{name} must be {word}, got {value}"
    if name in _FLOAT_RANGE:
        low, inclusive, high = _FLOAT_RANGE[name]
        if not ((value >= low if inclusive else value > low) and value < high):
            interval = f"{'[' if inclusive else '('}{low:g}, {high:g})"
            return f"ClaspConfig.{name} must be in {interval}, got {value}"
    return None


def check_fields(config: Any, choices: dict[str, tuple[str, ...]]) -> None:
    """Check every field of ``config`` (a ``ClaspConfig``); raise all problems at once.

    Parameters
    ----------
    config
        The config to check; float fields given as integers are converted to ``float``.
    choices
        Allowed values of the string fields that take one of a few values.

    Raises
    ------
    ConfigError
        With one ``ClaspConfig.<field> ...`` message per bad field (joined by ``"; "``) and the
        field -> message mapping in ``problems``.
    """
    problems: dict[str, str] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        message = _type_problem(f.name, value)
        if message is None:
            message = _range_problem(f.name, value)
        if message is None and f.name in choices and value not in choices[f.name]:
            message = (f"ClaspConfig.{f.name}={value!r}; expected one of "
                       f"{choices[f.name]}")
        if message is not None:
            problems[f.name] = message
        elif f.name in _FLOAT_RANGE and isinstance(value, int):
            setattr(config, f.name, float(value))
    if problems:
        raise ConfigError(problems)


__all__ = ["check_fields"]
