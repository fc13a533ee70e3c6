"""How much of a real database embeds: every AMCSD entry through the one path.

Reads all AMCSD entries (larixite), parses each CIF with ``matminer_clasp.structures.parse_cif``
(recorded tolerance retries, composition repair) and embeds every parsed structure with
``ClaspModel.encode_structures(errors="nan", return_report=True)`` (split-site merge, symmetry
ladder, the inference site bound). Prints the embed rate over all entries and over the parseable
ones (goal: >= 99.9 %, none failing for symmetry), the notes by kind, and every failure.

With ``--compare-with DIR`` (a checkout of an earlier revision, e.g. made with
``git worktree add /tmp/old d51e4ff``, the last revision before the structures package) the same
entries are also embedded by that revision in a child process, and the largest change of an
embedding is printed separately for entries that needed no repair (must be float noise) and for
the repaired ones.

Usage::

    python benchmarks/bench_real_data.py [--limit N] [--cli] [--compare-with DIR] [--model M]

``--cli`` also writes every entry's CIF to a folder and runs ``matminer-clasp index`` on it
(the user's road: files on disk, the composition check from each CIF's own formula).
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import RESULTS, machine_info, print_load


def _kind(note: str) -> str:
    for word, kind in (("merged", "split sites merged"), ("space group", "symmetry ladder"),
                       ("P1", "symmetry: P1 fallback"), ("CIF's space group",
                                                          "symmetry: CIF space group"),
                       ("read with", "CIF read with wider tolerances"),
                       ("repaired", "element labels repaired"), ("missing", "H not located"),
                       ("trace elements", "trace elements kept"),
                       ("no conventional", "cell used as given")):
        if word in note:
            return kind
    return "other"


_OLD_CHILD = r"""
import json, sys, numpy as np
sys.path.insert(0, sys.argv[1])
from matminer_clasp.model.clasp import ClaspModel
from matminer_clasp.train.amcsd import read_amcsd_entries
from matminer_clasp.train.data import _to_structure
ids = set(json.load(open(sys.argv[2])))
model = ClaspModel.from_pretrained(None if sys.argv[4] == "default" else sys.argv[4])
got_ids, emb = [], []
for e in read_amcsd_entries():
    if e["id"] not in ids or not e.get("cif"):
        continue
    try:
        s, _ = _to_structure("cif", e["cif"], e.get("formula"))
        emb.append(model.encode_structures([s])[0]); got_ids.append(e["id"])
    except Exception:
        pass
np.save(sys.argv[3], np.asarray(emb, np.float32))
json.dump(got_ids, open(sys.argv[3] + ".ids.json", "w"))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=None, help="first N entries only")
    parser.add_argument("--model", default="default")
    parser.add_argument("--compare-with", metavar="DIR", default=None)
    parser.add_argument("--cli", action="store_true",
                        help="also write every CIF to a folder and run `matminer-clasp index`")
    parser.add_argument("--out", default=str(RESULTS / "real_data.json"))
    args = parser.parse_args()

    from matminer_clasp.model.clasp import ClaspModel
    from matminer_clasp.structures import parse_cif
    from matminer_clasp.train.amcsd import read_amcsd_entries

    print_load("before")
    t0 = time.perf_counter()
    entries = read_amcsd_entries(max_items=args.limit)
    structures, ids, notes, failures = [], [], {}, {}
    for e in entries:
        if not e.get("cif"):
            failures[e["id"]] = ("read", e.get("error", "no CIF"))
            continue
        try:
            s, parse_notes = parse_cif(e["cif"], e.get("formula"))
        except Exception as exc:  # noqa: BLE001 - counted and printed below
            failures[e["id"]] = ("parse", f"{type(exc).__name__}: {exc}"[:200])
            continue
        structures.append(s)
        ids.append(e["id"])
        if parse_notes:
            notes[e["id"]] = list(parse_notes)
    t_parse = time.perf_counter() - t0
    model = ClaspModel.from_pretrained(None if args.model == "default" else args.model)
    t1 = time.perf_counter()
    emb, report = model.encode_structures(structures, batch_size=64, show_progress_bar=False,
                                          errors="nan", ids=ids, return_report=True)
    t_embed = time.perf_counter() - t1
    for k, exc in report.errors.items():
        failures[ids[k]] = ("embed", str(exc)[:200])
    for k, extra in report.notes.items():
        notes.setdefault(ids[k], []).extend(extra)
    n_all, n_parsed = len(entries), len(structures)
    n_embedded = n_parsed - len(report.errors)
    kinds = collections.Counter(_kind(n) for ns in notes.values() for n in ns)
    symmetry_failures = sum("symmetry" in r.lower() or "spglib" in r.lower()
                            for _, r in failures.values())
    result = {
        "machine": machine_info(), "model": args.model, "entries": n_all, "parsed": n_parsed,
        "embedded": n_embedded, "embed_rate_all": n_embedded / n_all,
        "embed_rate_parsed": n_embedded / max(n_parsed, 1),
        "symmetry_failures": symmetry_failures, "repaired": len(notes),
        "notes_by_kind": dict(kinds), "failures": failures,
        "parse_s": round(t_parse, 1), "embed_s": round(t_embed, 1),
    }
    print(f"AMCSD entries {n_all}: parsed {n_parsed}, embedded {n_embedded} "
          f"({result['embed_rate_all']:.2%} of all, {result['embed_rate_parsed']:.2%} of the "
          f"parseable); failing for symmetry: {symmetry_failures}")
    print(f"repaired or with a fallback: {len(notes)} entries; notes by kind:")
    for kind, count in kinds.most_common():
        print(f"  {count:5d}  {kind}")
    for rid, (stage, reason) in sorted(failures.items()):
        print(f"  failed at {stage}: {rid}: {reason}")
    print(f"parse {t_parse:.0f} s, embed {t_embed:.0f} s ({n_parsed / t_embed:.0f} structures/s)")

    if args.cli:
        from matminer_clasp import cli
        from matminer_clasp.index import EmbeddingIndex

        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "cifs"
            folder.mkdir()
            for e in entries:
                if e.get("cif"):
                    (folder / f"{e['id']}.cif").write_text(e["cif"])
            t2 = time.perf_counter()
            model_args = [] if args.model == "default" else ["--model", args.model]
            code = cli.main(["index", str(folder), "--out", str(Path(tmp) / "ix"), *model_args])
            index = EmbeddingIndex.load(Path(tmp) / "ix")
            result["cli_index"] = {"exit": code, "files": n_all, "indexed": len(index),
                                   "skipped": len(index.skipped),
                                   "rate": len(index) / n_all,
                                   "seconds": round(time.perf_counter() - t2, 1)}
        print(f"matminer-clasp index over {n_all} CIF files: indexed {len(index)} "
              f"({len(index) / n_all:.2%}), skipped {len(index.skipped)}")

    if args.compare_with:
        ok = [i for i in range(n_parsed) if ids[i] not in failures]
        with tempfile.TemporaryDirectory() as tmp:
            id_file, out = Path(tmp) / "ids.json", str(Path(tmp) / "old.npy")
            id_file.write_text(json.dumps([ids[i] for i in ok]))
            subprocess.run([sys.executable, "-c", _OLD_CHILD, args.compare_with, str(id_file),
                            out, args.model], check=True, cwd=tmp)
            old = np.load(out)
            old_ids = json.loads(Path(out + ".ids.json").read_text())
        row = {rid: i for i, rid in enumerate(ids)}
        clean, fixed = [], []
        for j, rid in enumerate(old_ids):
            diff = float(np.abs(emb[row[rid]] - old[j]).max())
            (fixed if rid in notes else clean).append(diff)
        result["compare"] = {
            "revision_dir": args.compare_with, "embedded_by_old": len(old_ids),
            "max_abs_diff_unrepaired": max(clean, default=0.0),
            "n_unrepaired": len(clean), "n_repaired_in_both": len(fixed),
            "max_abs_diff_repaired": max(fixed, default=0.0),
        }
        print(f"earlier revision embedded {len(old_ids)} of these; largest change: "
              f"{result['compare']['max_abs_diff_unrepaired']:.2e} over {len(clean)} entries "
              f"without repairs, {result['compare']['max_abs_diff_repaired']:.2e} over "
              f"{len(fixed)} repaired ones")
    print_load("after")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
