"""Retrieval by title language: how much do German and French titles lose? (issue 14).

The text encoder (MiniLM) is English-only, and about a fifth of AMCSD titles are German or
French. This reads the per-item ranks an evaluation wrote (``items.npz`` of ``matminer-clasp
evaluate --out``), labels every title English, German or French with a stop-word vote, and
prints recall@1/5/10 in both directions per language, with the number of items. A title counts as
German (French) when it holds more German (French) function words (or German word endings
such as *-ungen*) than English ones, and at least two unless it has no English one; everything
else is English.

Usage::

    python benchmarks/default_model/protocol/by_language.py \\
        runs/protocol/eval/default_recipe/amcsd \\
        [more eval folders] [--out FILE.json]
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from folder_audit import run_audit  # a sibling module: run this file as a script

STOP = {
    "en": {"the", "of", "and", "in", "on", "with", "from", "for", "by", "at", "its", "to", "an",
           "new", "structure", "crystal"},
    "de": {"der", "die", "das", "und", "von", "des", "den", "im", "mit", "zur", "zum", "über",
           "ueber", "ein", "eine", "einer", "eines", "kristallstruktur", "verfeinerung", "neue",
           "bei", "aus", "auf", "struktur", "für", "fuer", "zu", "am", "einige", "einiger", "dem",
           "kristallstrukturen", "kristallbau"},
    "fr": {"de", "la", "le", "les", "et", "du", "des", "sur", "une", "un", "dans", "par", "au",
           "aux", "cristalline", "étude", "etude", "affinement", "nouvelle",
           "nouveaux", "nouvelles", "propriétés", "proprietes", "structurale", "structurales",
           "cristallographique", "quelques"},
}


#: German word endings that English titles do not use (Untersuchung, Alkaliverbindungen, ...).
GERMAN_ENDINGS = ("ung", "ungen", "ische", "ischen", "isches", "ierten", "ierenden")


def language(title: str) -> str:
    """``"en"``, ``"de"`` or ``"fr"`` by a vote of function words (see the module docstring).

    Lines AMCSD appends to a title (``_cod_database_code ...``, ``Note: ...``) are left out.
    """
    lines = [ln for ln in title.splitlines()
             if not ln.strip().startswith(("_cod", "Note:", "Locality:"))]
    words = re.findall(r"[a-zà-ÿß]+", " ".join(lines).lower())
    counts = {lang: sum(w in stop for w in words) for lang, stop in STOP.items()}
    counts["de"] += sum(len(w) > 6 and w.endswith(GERMAN_ENDINGS) for w in words)
    best = max(("de", "fr"), key=lambda lang: counts[lang])
    if counts[best] > counts["en"] and (counts[best] >= 2 or counts["en"] == 0):
        return best
    return "en"


def titles_by_id() -> dict[str, str]:
    """AMCSD id (``amcsd-N``) -> title, from the installed database."""
    from matminer_clasp.train.amcsd import read_amcsd_entries

    return {e["id"]: (e.get("raw_title") or "").strip() for e in read_amcsd_entries()}


def recall_by_language(folder: Path, titles: dict[str, str]) -> dict[str, Any]:
    """Recall@k per title language for one evaluation folder (its ``items.npz``)."""
    items = np.load(folder / "items.npz", allow_pickle=False)
    ids = items["ids"]
    lang_of_item = np.array([language(titles.get(str(i), "")) for i in ids])
    # a text query is a title: its language is that of any of its structures
    caption_of = items["caption_of"]
    lang_of_query = {int(c): lang_of_item[k] for k, c in enumerate(caption_of)}
    queries = items["queries"]
    query_lang = np.array([lang_of_query.get(int(q), "en") for q in queries])
    out: dict[str, Any] = {}
    for lang in ("en", "de", "fr"):
        s2t = items["s2t_rank"][lang_of_item == lang]
        t2s = items["t2s_rank"][query_lang == lang]
        out[lang] = {
            "n_structures": int(s2t.size),
            "n_titles": int(t2s.size),
            **{f"structure_to_text_recall@{k}": float(np.mean(s2t < k)) if s2t.size else None
               for k in (1, 5, 10)},
            **{f"text_to_structure_recall@{k}": float(np.mean(t2s < k)) if t2s.size else None
               for k in (1, 5, 10)},
        }
    return out


def show(rows: dict[str, Any]) -> None:
    """Print one folder's recall per title language."""
    for lang, row in rows.items():
        r = [row[f"text_to_structure_recall@{k}"] for k in (1, 5, 10)]
        s = [row[f"structure_to_text_recall@{k}"] for k in (1, 5, 10)]
        fmt = lambda v: " ".join("  n/a" if x is None else f"{x:.3f}" for x in v)  # noqa: E731
        print(f"  {lang}: {row['n_titles']:4d} titles, {row['n_structures']:4d} structures | "
              f"text->structure R@1/5/10 {fmt(r)} | structure->text {fmt(s)}")


def main() -> None:
    titles = titles_by_id()
    run_audit(__doc__.split("\n")[0], lambda folder: recall_by_language(folder, titles), show)


if __name__ == "__main__":
    main()
