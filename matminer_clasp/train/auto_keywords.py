"""The ``auto`` keyword set: every title word of the evaluated split with enough positive papers.

The ``amcsd`` keyword set was chosen by people who also chose the model. The ``auto`` set is
drawn mechanically instead, so that nobody can pick the concepts a model is good at:

1. **Candidates**: every word of the evaluated titles (lower case; a hyphenated word such as
   *high-pressure* is one word), made of letters only and, without its hyphens, at least
   :data:`AUTO_MIN_LENGTH` letters long, that is not in :data:`AUTO_STOP_WORDS` (function words
   of English, German and French, the three languages of AMCSD titles, and words that say how a
   structure was studied rather than what it is: *structure*, *refinement*, *diffraction* ...).
2. **Matching**: a title is a positive for a word when it contains the word as a whole word,
   a plural ``s`` / ``es`` tolerated (``whole_word=True`` in :func:`~.keywords.keyword_pattern`);
   candidates with the same matching rule (``garnet``, ``garnets``; ``high-pressure``,
   ``highpressure``) are one concept, named by its most frequent written form (ties: the
   shorter, then the alphabetically first). A hyphenated form also finds the words apart
   (``high-pressure`` finds *high pressure*), as every keyword does.
3. **Selection**: the concepts with at least ``min_papers`` positive distinct titles in the
   evaluated split. ``auto`` sets ``min_papers`` to 2 % of the split's distinct titles, at least
   5 (:func:`auto_min_papers`: 8 on the 393 validation titles of the seed-2026 split, 20 on
   ~1,000 test titles); ``auto:N`` sets it to ``N``. The text query of a concept is the word.

The rule (stop words, 2 %, floor 5, hyphens) was fixed after listing the words of the seed-2026
training and validation titles (to drop method words such as *single-crystal*); the hyphen
handling was corrected once after a first evaluation (docs/model-report.md says how). It is not
to be tuned on model results.

Everything is a function of the split's titles, so two models evaluated on the same split get the
same concepts, and the set of the validation split differs from that of the test split.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence

from matminer_clasp.train.keywords import _DASHES, keyword_labels, keyword_pattern

__all__ = [
    "AUTO_MIN_FRACTION",
    "AUTO_MIN_PAPERS_FLOOR",
    "AUTO_MIN_LENGTH",
    "AUTO_STOP_WORDS",
    "AUTO_RULE",
    "parse_auto_spec",
    "auto_min_papers",
    "title_forms",
    "title_words",
    "auto_keywords",
]

#: ``auto``: a concept needs positives in this share of the split's distinct titles ...
AUTO_MIN_FRACTION: float = 0.02

#: ... and at least this many positive distinct titles (papers).
AUTO_MIN_PAPERS_FLOOR: int = 5

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
affinement analyses analysis applied approach based behavior behaviour case characterisation
characterization chemistry comment comments compose composes compound compounds cristalline
cristallographique crystal crystallographic crystallography crystals data description determination
determined diffraction discussion effect effects etude evidence examination example first form
forms function functions further group highresolution identification insitu investigation
investigations kristall kristallstruktur kristallstrukturen method methods model modeling modelling
modification modifications mossbauer neue neuen neuer neues neutron neutrondiffraction note notes
nouveau nouveaux nouvelle nouvelles observation observations parameter parameters part powder
powderdiffraction present properties property redetermination refined refinement reinvestigation
related relation relations relationship relationships reply report results revised revisited
rietveld role second series single singlecrystal situ species spectroscopy structural structurale
structurales structure structures struktur strukturen studies study synchrotron system systems
third type types ueber using variation variations verfeinerung xray xraydiffraction étude
"""

#: Words never made concepts: function words (EN / DE / FR) and words of method and report.
AUTO_STOP_WORDS: frozenset[str] = frozenset((_FUNCTION_WORDS + _STUDY_WORDS).split())

#: One-line statement of the rule, recorded in every report that uses the ``auto`` set.
AUTO_RULE = (
    "every title word of the evaluated split (letters only, >= {length} letters, not a stop "
    "word) with >= {n} positive distinct titles ({how}); whole-word match, plural s/es "
    "tolerated; query = the word"
)

#: Runs of letters and digits, hyphens inside allowed; a token is kept if it has letters only.
_TOKEN = re.compile(r"[^\W_]+(?:-[^\W_]+)*")


def parse_auto_spec(spec: str) -> int | None:
    """Return ``N`` for ``"auto:N"``, ``0`` for ``"auto"``, ``None`` for any other name.

    ``0`` leaves the threshold to :func:`auto_min_papers`.

    Raises
    ------
    ValueError
        For ``"auto:..."`` whose ``N`` is not a positive integer.
    """
    if spec == "auto":
        return 0
    if not spec.startswith("auto:"):
        return None
    value = spec.split(":", 1)[1]
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"keyword set {spec!r}: expected auto or auto:N with N a positive "
                         "integer (the fewest positive papers of a concept)")
    return int(value)


def auto_min_papers(n_titles: int, n: int = 0) -> int:
    """Fewest positive papers of an ``auto`` concept.

    ``n`` if given (> 0), else 2 % of the split's ``n_titles`` distinct titles, rounded up, and
    at least 5.
    """
    if n > 0:
        return int(n)
    return max(AUTO_MIN_PAPERS_FLOOR, math.ceil(AUTO_MIN_FRACTION * n_titles - 1e-9))


def _is_stop_word(word: str) -> bool:
    """A stop word, or the plural (``-s`` / ``-es``) of one."""
    return (word in AUTO_STOP_WORDS or (word.endswith("s") and word[:-1] in AUTO_STOP_WORDS)
            or (word.endswith("es") and word[:-2] in AUTO_STOP_WORDS))


def title_forms(title: str, min_length: int = AUTO_MIN_LENGTH) -> set[str]:
    """Candidate words of one title as written, lower case: ``high-pressure`` and its parts.

    Letter-only tokens (``MgSiO3`` is none) of ``min_length`` or more letters (without hyphens)
    that are no stop word; a hyphenated token gives itself and each of its parts.
    """
    text = str(title).translate(_DASHES).lower()
    out = set()
    for token in _TOKEN.findall(text):
        parts = token.split("-")
        for form in ([token] if len(parts) == 1 else [token, *parts]):
            key = form.replace("-", "")
            if key.isalpha() and len(key) >= min_length and not _is_stop_word(key):
                out.add(form)
    return out


def title_words(title: str, min_length: int = AUTO_MIN_LENGTH) -> set[str]:
    """:func:`title_forms` without hyphens, as :func:`~.keywords.normalize_text` writes them."""
    return {form.replace("-", "") for form in title_forms(title, min_length)}


def _canonical(forms: Iterable[tuple[str, int]]) -> str:
    """The form that names (and queries) a concept.

    A hyphenated form when the concept has one: its rule matches every spelling of the group
    (``high-pressure`` finds *high pressure* and *highpressure*; ``highpressure`` would find
    only itself). Then the most frequent form; ties: the shorter, then the alphabetically first.
    """
    return min(forms, key=lambda item: ("-" not in item[0], -item[1], len(item[0]),
                                        item[0]))[0]


def auto_keywords(
    titles: Sequence[str], min_papers: int | None = None, min_length: int = AUTO_MIN_LENGTH
) -> dict[str, tuple[str]]:
    """The ``auto`` keyword set of a split: ``{word: (word,)}``, most positive papers first.

    Parameters
    ----------
    titles
        Titles of the evaluated structures (duplicates are counted once: counts are papers).
    min_papers
        Fewest positive distinct titles of a concept (``None``: :func:`auto_min_papers`).
    min_length
        Shortest candidate word.

    Returns
    -------
    dict
        Concepts ordered by positive papers (descending), then alphabetically; a concept is
        named by, and queried with, its most frequent written form (``high-pressure``, which
        also finds *high pressure* and *highpressure*). Match them with
        ``keyword_labels(..., whole_word=True)``.
    """
    distinct = list(dict.fromkeys(str(t) for t in titles))
    min_papers = auto_min_papers(len(distinct), min_papers or 0)
    form_counts: Counter[str] = Counter()
    for title in distinct:
        form_counts.update(title_forms(title, min_length))
    # forms with one matching rule (garnet, garnets; high-pressure, highpressure) are one
    # concept, and a concept's papers are those of all its forms, so a form below min_papers
    # may still belong to a concept above it
    by_rule: dict[str, list[tuple[str, int]]] = {}
    for form, count in form_counts.items():
        rule = keyword_pattern(form.replace("-", ""), whole_word=True).pattern
        by_rule.setdefault(rule, []).append((form, count))
    candidates = {}
    for forms in by_rule.values():
        if sum(c for _, c in forms) >= min_papers:  # cheap upper bound on the papers
            candidates[_canonical(forms)] = None
    labels = keyword_labels(distinct, list(candidates), whole_word=True)
    counts = {k: int(v.sum()) for k, v in labels.items()}
    kept = sorted((k for k, n in counts.items() if n >= min_papers),
                  key=lambda k: (-counts[k], k))
    return {k: (k,) for k in kept}
