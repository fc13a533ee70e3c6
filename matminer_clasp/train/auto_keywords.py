"""The ``auto`` keyword set: every title word of the evaluated split with enough positive papers.

The ``amcsd`` keyword set was chosen by people who also chose the model. The ``auto`` set is
drawn mechanically instead, so that nobody can pick the concepts a model is good at:

1. **Candidates**: every word of the evaluated titles (after :func:`~.keywords.normalize_text`:
   lower case, hyphens inside words deleted), made of letters only and at least
   :data:`AUTO_MIN_LENGTH` letters long, that is not in :data:`AUTO_STOP_WORDS` (function words
   of English, German and French, the three languages of AMCSD titles, and words that say how a
   structure was studied rather than what it is: *structure*, *refinement*, *diffraction* ...).
2. **Matching**: a title is a positive for a word when it contains the word as a whole word,
   a plural ``s`` / ``es`` tolerated (``whole_word=True`` in :func:`~.keywords.keyword_pattern`);
   candidates with the same matching rule (``garnet``, ``garnets``) are one concept, named by
   its most frequent form (ties: the shorter, then the alphabetically first).
3. **Selection**: the concepts with at least ``min_papers`` positive distinct titles
   (default :data:`AUTO_MIN_PAPERS` = 20, fixed before any model was evaluated on the set) in
   the evaluated split. The text query of a concept is the word itself.

Everything is a function of the split's titles, so two models evaluated on the same split get the
same concepts, and the set of the validation split differs from that of the test split.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

from matminer_clasp.train.keywords import keyword_labels, keyword_pattern, normalize_text

__all__ = [
    "AUTO_MIN_PAPERS",
    "AUTO_MIN_LENGTH",
    "AUTO_STOP_WORDS",
    "AUTO_RULE",
    "parse_auto_spec",
    "title_words",
    "auto_keywords",
]

#: Fewest positive distinct titles (papers) for a concept of the ``auto`` set; fixed in advance.
AUTO_MIN_PAPERS: int = 20

#: Shortest candidate word (letters).
AUTO_MIN_LENGTH: int = 4

_FUNCTION_WORDS = """
about above after again against along also among and another around because been before being
below between both but can could does doing down during each either even ever every from further
have having here however into itself just least less many more most much must near neither nor
not now off once only onto other others otherwise ought ours over own per rather same several
should since some such than that the their them then there these they this those though through
thus till too toward towards under unless unlike until upon very via was were what when where
whether which while who whom whose why will with within without would yet your
aber alle allen aller als auch auf aus bei beim beiden bis das dem den der des die dies diese
dieser dieses durch ein eine einem einen einer eines fuer für gegen ihre ihrer mit nach neben
oder ohne sich sind sowie über uber und unter vom von vor wie zum zur zwischen
aux avec ces cette dans des deux entre est les leur leurs par pour sans selon ses sont sous sur
une unes uns
"""

_STUDY_WORDS = """
analyses analysis applied approach based behavior behaviour case characterization
characterisation comment comments compound compounds crystal crystallographic
crystallography crystals data description determination determined diffraction discussion
effect effects evidence example examination first form forms further group highresolution
identification investigation investigations kristall kristallstruktur kristallstrukturen
cristalline cristallographique etude étude affinement model modeling modelling
neutron note notes observation observations part powder present properties property
redetermination refined refinement reinvestigation relation relations relationship
relationships reply report results revised revisited rietveld role second single situ
spectroscopy struktur strukturen structural structure structures studies study system
systems third type types using verfeinerung xray
"""

#: Words never made concepts: function words (EN / DE / FR) and words of method and report.
AUTO_STOP_WORDS: frozenset[str] = frozenset((_FUNCTION_WORDS + _STUDY_WORDS).split())

#: One-line statement of the rule, recorded in every report that uses the ``auto`` set.
AUTO_RULE = (
    "every title word of the evaluated split (letters only, >= {length} letters, not a stop "
    "word) with >= {n} positive distinct titles; whole-word match, plural s/es tolerated; "
    "query = the word"
)

_TOKEN = re.compile(r"[^\W_]+")  # runs of letters and digits; kept if letters only


def parse_auto_spec(spec: str) -> int | None:
    """Return ``N`` for ``"auto"`` (:data:`AUTO_MIN_PAPERS`) or ``"auto:N"``; ``None`` otherwise.

    Raises
    ------
    ValueError
        For ``"auto:..."`` whose ``N`` is not a positive integer.
    """
    if spec == "auto":
        return AUTO_MIN_PAPERS
    if not spec.startswith("auto:"):
        return None
    value = spec.split(":", 1)[1]
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"keyword set {spec!r}: expected auto or auto:N with N a positive "
                         "integer (the fewest positive papers of a concept)")
    return int(value)


def title_words(title: str, min_length: int = AUTO_MIN_LENGTH) -> set[str]:
    """Candidate words of one title: letter-only tokens of ``min_length`` or more, no stop word.

    A token with a digit (``MgSiO3``) is no word.
    """
    return {w for w in _TOKEN.findall(normalize_text(title))
            if w.isalpha() and len(w) >= min_length and w not in AUTO_STOP_WORDS}


def _canonical(forms: Iterable[tuple[str, int]]) -> str:
    """The most frequent form; ties: the shorter, then the alphabetically first."""
    return min(forms, key=lambda item: (-item[1], len(item[0]), item[0]))[0]


def auto_keywords(
    titles: Sequence[str], min_papers: int = AUTO_MIN_PAPERS, min_length: int = AUTO_MIN_LENGTH
) -> dict[str, tuple[str]]:
    """The ``auto`` keyword set of a split: ``{word: (word,)}``, most positive papers first.

    Parameters
    ----------
    titles
        Titles of the evaluated structures (duplicates are counted once: counts are papers).
    min_papers
        Fewest positive distinct titles of a concept.
    min_length
        Shortest candidate word.

    Returns
    -------
    dict
        Concepts ordered by positive papers (descending), then alphabetically. Match them with
        ``keyword_labels(..., whole_word=True)``.
    """
    distinct = list(dict.fromkeys(str(t) for t in titles))
    form_counts: Counter[str] = Counter()
    for title in distinct:
        form_counts.update(title_words(title, min_length))
    # a concept's papers include those of its other forms, so a form below min_papers may
    # still belong to a concept above it; forms sharing a matching rule are merged first
    by_rule: dict[str, list[tuple[str, int]]] = {}
    for form, count in form_counts.items():
        by_rule.setdefault(keyword_pattern(form, whole_word=True).pattern, []).append(
            (form, count))
    candidates = {}
    for forms in by_rule.values():
        if sum(c for _, c in forms) >= min_papers:  # cheap upper bound on the papers
            candidates[_canonical(forms)] = None
    labels = keyword_labels(distinct, list(candidates), whole_word=True)
    counts = {k: int(v.sum()) for k, v in labels.items()}
    kept = sorted((k for k, n in counts.items() if n >= min_papers),
                  key=lambda k: (-counts[k], k))
    return {k: (k,) for k in kept}
