"""Keyword concepts of the zero-shot task and the rule that finds them in titles.

A concept (``"pyroxene"``) has variations (``"pyroxene"``, ``"clinopyroxene"``, ...); a title is
a positive for the concept when it matches one of them under :func:`keyword_pattern` (the
official ``eval_scripts/eval_zero_shot_roc.py`` rule: case-insensitive substring match, plus
hyphen, spacing and plural tolerance). The named keyword sets of the bundled model's report
and of the paper are defined here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

__all__ = [
    "DEFAULT_KEYWORDS",
    "AMCSD_KEYWORDS",
    "AMCSD_EXTENDED_KEYWORDS",
    "STRUCTURE_FAMILIES",
    "KEYWORD_PRESETS",
    "PAPER_CONCEPTS",
    "normalize_text",
    "keyword_pattern",
    "as_keywords",
    "keyword_labels",
    "keyword_counts",
]

#: The paper's six concepts and their variations (official eval script, fact sheet 7.1).
PAPER_CONCEPTS: dict[str, tuple[str, ...]] = {
    "ferromagnetic": ("ferromagnetic", "ferromagnetism"),
    "ferroelectric": ("ferroelectric", "ferroelectricity"),
    "semiconductor": ("semiconductor", "semiconductive", "semiconductivity"),
    "electroluminescence": ("electroluminescence", "electroluminescent"),
    "thermoelectric": ("thermoelectric", "thermoelectricity"),
    "superconductor": ("superconductor", "superconductive", "superconductivity"),
}

#: Paper concepts plus mineral and chemistry keywords for mineral corpora such as AMCSD. The
#: final list (concepts with >= 50 positive titles) is chosen with :func:`keyword_counts`.
DEFAULT_KEYWORDS: dict[str, tuple[str, ...]] = {
    **PAPER_CONCEPTS,
    "magnetic": ("magnetic", "magnetism"),
    "superconduct": ("superconduct",),
    "high pressure": ("high pressure",),
    "high temperature": ("high temperature",),
    "spinel": ("spinel",),
    "perovskite": ("perovskite",),
    "garnet": ("garnet",),
    "olivine": ("olivine",),
    "pyroxene": ("pyroxene", "clinopyroxene", "orthopyroxene"),
    "amphibole": ("amphibole",),
    "feldspar": ("feldspar",),
    "zeolite": ("zeolite",),
    "mica": ("mica",),
    "silicate": ("silicate",),
    "sulfide": ("sulfide", "sulphide"),
    "carbonate": ("carbonate",),
    "phosphate": ("phosphate",),
    "sulfate": ("sulfate", "sulphate"),
    "borate": ("borate",),
    "arsenate": ("arsenate",),
    "hydroxide": ("hydroxide",),
    "oxide": ("oxide",),
    "hydrous": ("hydrous", "hydrated"),
    "new mineral": ("new mineral",),
    "phase transition": ("phase transition",),
}

#: The keyword set of the bundled model's report and targets: ten mineral-family, chemistry and
#: property words with at least 50 positive structures among the usable AMCSD pairs. Five are
#: structure-defined families (:data:`STRUCTURE_FAMILIES`); the other five are chemistry or
#: topic words. See docs/model-report.md for their counts.
AMCSD_KEYWORDS: dict[str, tuple[str, ...]] = {
    k: DEFAULT_KEYWORDS[k]
    for k in ("spinel", "perovskite", "garnet", "olivine", "pyroxene", "silicate", "sulfide",
              "carbonate", "superconduct", "magnetic")
}

#: Families defined by a crystal structure rather than by a chemistry.
STRUCTURE_FAMILIES: tuple[str, ...] = ("garnet", "pyroxene", "perovskite", "spinel", "olivine")

#: :data:`AMCSD_KEYWORDS` plus every other concept with at least 50 positive AMCSD structures,
#: including process and topic words that a structure can hardly show ("high pressure",
#: "new mineral"; "mica" and "hydrous" left out: as substrings they match "chemical" and
#: "anhydrous").
AMCSD_EXTENDED_KEYWORDS: dict[str, tuple[str, ...]] = {
    **AMCSD_KEYWORDS,
    **{k: DEFAULT_KEYWORDS[k]
       for k in ("phosphate", "oxide", "high pressure", "high temperature", "phase transition",
                 "new mineral")},
}

#: Named keyword sets for ``matminer-clasp evaluate --keywords NAME``.
KEYWORD_PRESETS: dict[str, dict[str, tuple[str, ...]]] = {
    "amcsd": AMCSD_KEYWORDS,
    "amcsd-extended": AMCSD_EXTENDED_KEYWORDS,
    "paper": PAPER_CONCEPTS,
    "all": DEFAULT_KEYWORDS,
}

#: Word boundaries of ``whole_word`` matching: no (Unicode) letter just before / after.
_NO_LETTER_BEFORE, _NO_LETTER_AFTER = r"(?<![^\W\d_])", r"(?![^\W\d_])"

_DASHES = str.maketrans({c: "-" for c in "\u2010\u2011\u2012\u2013\u2014\u2212"})


def normalize_text(text: str, hyphen_as_space: bool = False) -> str:
    """Lower-case, map Unicode dashes to ``-``, then delete hyphens and collapse whitespace.

    With ``hyphen_as_space`` (the whole-word rule) a hyphen becomes a space instead, so that
    *garnet-type* contains the word *garnet*.
    """
    text = str(text).translate(_DASHES).lower().replace("-", " " if hyphen_as_space else "")
    return re.sub(r"\s+", " ", text).strip()


def keyword_pattern(keyword: str, whole_word: bool = False) -> re.Pattern[str]:
    """Compile the matching rule of one keyword (applied to :func:`normalize_text` output).

    Rules: case-insensitive substring match (as in the official script, so ``"magnetic"`` is
    found in ``"ferromagnetic"`` and ``"spinel"`` in ``"spinels"``); a space or hyphen in the
    keyword matches a space, a hyphen or nothing (``"high pressure"`` finds ``"high-pressure"``
    and ``"highpressure"``); hyphens inside title words are ignored (``"thermo-electric"``
    contains ``"thermoelectric"``); a plural keyword also finds its singular (``"spinels"``,
    ``"batteries"`` find ``"spinel"``, ``"battery"``) and a keyword ending in ``y`` finds the
    ``-ies`` plural.

    With ``whole_word=True`` (the rule of the ``auto`` keyword set, :mod:`.auto_keywords`) the
    match must start and end at a word boundary (no letter before or after it), a plural ``s``
    or ``es`` excepted: ``"mica"`` then finds ``"micas"`` but not ``"chemical"``;
    :func:`keyword_labels` then reads hyphens as spaces (``"garnet"`` finds ``"garnet-type"``).
    """
    words = [w for w in re.split(r"[\s\-]+", keyword.translate(_DASHES).lower()) if w]
    if not words:
        raise ValueError(f"empty keyword {keyword!r}")
    last = words[-1]
    if last.endswith("ies") and len(last) > 4:
        tail = re.escape(last[:-3]) + "(?:y|ies)"
    elif last.endswith("y") and len(last) > 2:
        tail = re.escape(last[:-1]) + "(?:y|ies)"
    elif last.endswith("s") and not last.endswith("ss") and len(last) > 3:
        tail = re.escape(last[:-1])
    else:
        tail = re.escape(last)
    body = " ?".join([*map(re.escape, words[:-1]), tail])
    if whole_word:
        body = rf"{_NO_LETTER_BEFORE}{body}(?:e?s)?{_NO_LETTER_AFTER}"
    return re.compile(body)


def as_keywords(
    keywords: Mapping[str, Sequence[str]] | Sequence[str] | None,
) -> dict[str, tuple[str, ...]]:
    """Normalise a keyword argument to ``{concept: variations}``.

    ``None`` is :data:`DEFAULT_KEYWORDS`; a mapping keeps its concepts (a single string
    variation becomes a one-tuple); a list of names makes every name its own only variation.
    """
    if keywords is None:
        return dict(DEFAULT_KEYWORDS)
    if isinstance(keywords, Mapping):
        return {str(k): (v,) if isinstance(v, str) else tuple(v) for k, v in keywords.items()}
    return {str(k): (str(k),) for k in keywords}


def keyword_labels(
    texts: Sequence[str],
    keywords: Mapping[str, Sequence[str]] | Sequence[str] | None = None,
    whole_word: bool = False,
) -> dict[str, np.ndarray]:
    """Boolean positives per concept: the text matches any of the concept's variations.

    ``whole_word`` selects the whole-word rule of :func:`keyword_pattern`, applied to the text
    with hyphens read as spaces (``normalize_text(t, hyphen_as_space=True)``).
    """
    normalized = [normalize_text(t, hyphen_as_space=whole_word) for t in texts]
    out = {}
    for concept, variations in as_keywords(keywords).items():
        patterns = [keyword_pattern(v, whole_word) for v in variations]
        out[concept] = np.array([any(p.search(t) for p in patterns) for t in normalized], bool)
    return out


def keyword_counts(
    titles: Sequence[str],
    keywords: Mapping[str, Sequence[str]] | Sequence[str] | None = None,
    whole_word: bool = False,
) -> pd.Series:
    """Number of titles matching each concept, largest first (to pick concepts with >= 50)."""
    labels = keyword_labels(titles, keywords, whole_word)
    return pd.Series({k: int(v.sum()) for k, v in labels.items()}).sort_values(ascending=False)
