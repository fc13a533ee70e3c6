"""Peak RSS of featurizing a corpus streamed from disk: 2,000 vs 20,000 structures.

Run ``python benchmarks/bench_memory.py [--n 20000] [--n-small 2000] [--out FILE]``.

Corpus: the AMCSD structures (about 9k readable ones), replicated in load order until ``--n``
lines, written once as JSON lines (``{"id": ..., "structure": Structure.as_dict()}``) to
``--data-dir`` (default ``~/.cache/matminer_clasp/bench``; reused by later runs).

Methods, each at ``--n-small`` and at ``--n`` structures, each in a fresh ``spawn`` child whose
``ru_maxrss`` is reported:

* ``streamed``: a generator reads one line at a time; chunks of ``--chunk`` structures go to
  ``ClaspFeaturizer.featurize_many`` (bad structures become NaN rows); each chunk's embeddings
  are appended to a raw float32 file.
  Nothing grows with the corpus, so the peak RSS should be the same at both sizes.
* ``in_memory`` (the baseline, what a notebook usually does): read every structure into a list,
  then one ``featurize_many`` call returning all ``n`` rows (as ``featurize_dataframe`` does).

One torch / BLAS thread. The model is randomly initialised with the bundled model's
architecture (``cell="as_is"``) until the bundled weights exist; RSS does not depend on weights.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from itertools import islice
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    GIB,
    RESULTS,
    fmt_bytes,
    load_amcsd_structures,
    machine_info,
    peak_rss_in_child,
    print_load,
    random_model,
    single_thread,
    write_json,
)


# ---------------------------------------------------------------------- corpus on disk
def write_corpus(path: Path, n: int) -> Path:
    """Write ``n`` JSON lines (AMCSD structures, replicated in order) unless already there."""
    if path.is_file():
        with path.open() as fh:
            if sum(1 for _ in fh) >= n:
                return path
    path.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    ids, structures = load_amcsd_structures(None if n > 5000 else n)
    lines = [json.dumps({"id": str(i), "structure": s.as_dict()}) for i, s in zip(ids, structures)]
    del structures
    tmp = path.with_suffix(".tmp")
    with tmp.open("w") as fh:
        for k in range(n):
            line = lines[k % len(lines)]
            if k >= len(lines):  # replicas get their own id
                rec = json.loads(line)
                rec["id"] = f"{rec['id']}#r{k // len(lines)}"
                line = json.dumps(rec)
            fh.write(line + "\n")
    os.replace(tmp, path)
    print(f"wrote {n} structures ({len(lines)} distinct) to {path} "
          f"({path.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t0:.0f} s", flush=True)
    return path


def stream_structures(path: str, n: int) -> Iterator[Any]:
    """Yield the first ``n`` structures of a JSON-lines corpus, one line at a time."""
    from pymatgen.core import Structure

    with open(path) as fh:
        for line in islice(fh, n):
            yield Structure.from_dict(json.loads(line)["structure"])


def _chunks(items: Iterator[Any], size: int) -> Iterator[list[Any]]:
    while True:
        chunk = list(islice(items, size))
        if not chunk:
            return
        yield chunk


# ---------------------------------------------------------------------- methods (children)
def run_streamed(path: str, n: int, chunk: int, batch_size: int, out_file: str) -> dict[str, Any]:
    """Stream ``n`` structures in chunks into encode_structures; append embeddings to a file."""
    import warnings

    warnings.filterwarnings("ignore")
    import numpy as np
    from _common import current_rss

    from matminer_clasp.featurizers import ClaspFeaturizer

    with single_thread():
        featurizer = ClaspFeaturizer(model=random_model("as_is"), batch_size=batch_size)
        rss_after_model = current_rss()
        t0 = time.perf_counter()
        count, failed, samples = 0, 0, []
        with open(out_file, "wb") as fh:
            for part in _chunks(stream_structures(path, n), chunk):
                rows = featurizer.featurize_many(part, ignore_errors=True, pbar=False)
                emb = np.asarray(rows, dtype=np.float32)
                failed += int(np.isnan(emb).all(axis=1).sum())
                fh.write(np.ascontiguousarray(emb, dtype=np.float32).tobytes())
                count += len(part)
                samples.append((count, current_rss()))
        seconds = time.perf_counter() - t0
    return {"n": count, "n_failed": failed, "seconds": seconds, "per_s": count / seconds,
            "rss_after_model": rss_after_model,
            "rss_samples": samples[:: max(1, len(samples) // 20)],
            "output_bytes": os.path.getsize(out_file)}


def run_in_memory(path: str, n: int, batch_size: int) -> dict[str, Any]:
    """Read all ``n`` structures into a list, then one encode_structures call."""
    import warnings

    warnings.filterwarnings("ignore")
    from _common import current_rss

    from matminer_clasp.featurizers import ClaspFeaturizer

    with single_thread():
        featurizer = ClaspFeaturizer(model=random_model("as_is"), batch_size=batch_size)
        rss_after_model = current_rss()
        t0 = time.perf_counter()
        structures = list(stream_structures(path, n))
        rows = featurizer.featurize_many(structures, ignore_errors=True, pbar=False)
        seconds = time.perf_counter() - t0
    failed = sum(1 for r in rows if r[0] != r[0])  # NaN rows
    return {"n": len(rows), "n_failed": failed, "seconds": seconds, "per_s": len(rows) / seconds,
            "rss_after_model": rss_after_model}


# ---------------------------------------------------------------------- driver
def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=20_000, help="large corpus size")
    parser.add_argument("--n-small", type=int, default=2_000, help="small corpus size")
    parser.add_argument("--chunk", type=int, default=256, help="structures per streamed chunk")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--no-baseline", action="store_true", help="skip the in-memory baseline")
    parser.add_argument("--baseline-max", type=int, default=None,
                        help="run the in-memory baseline only at sizes up to this (saves time)")
    parser.add_argument("--data-dir", default=str(Path.home() / ".cache/matminer_clasp/bench"))
    parser.add_argument("--out", default=str(RESULTS / "memory.json"))
    args = parser.parse_args(argv)

    info = machine_info()
    load_before = print_load("load average before")
    corpus = write_corpus(Path(args.data_dir) / f"amcsd_{args.n}.jsonl", args.n)
    results: dict[str, Any] = {}
    sizes = sorted({args.n_small, args.n})
    with tempfile.TemporaryDirectory() as tmp:
        jobs: list[tuple[str, Any, tuple]] = []
        for size in sizes:
            jobs.append((f"streamed@{size}", run_streamed,
                         (str(corpus), size, args.chunk, args.batch_size,
                          os.path.join(tmp, f"emb_{size}.f32"))))
        if not args.no_baseline:
            for size in sizes:
                if args.baseline_max is not None and size > args.baseline_max:
                    continue
                jobs.append((f"in_memory@{size}", run_in_memory,
                             (str(corpus), size, args.batch_size)))
        for name, fn, fn_args in jobs:
            res, rss = peak_rss_in_child(fn, *fn_args)
            res["peak_rss_bytes"] = rss
            res["peak_rss_gib"] = rss / GIB
            results[name] = res
            print(f"{name:20s} n={res['n']:6d}  {res['per_s']:7.1f} structures/s  "
                  f"failed={res['n_failed']}  peak RSS {fmt_bytes(rss)}  "
                  f"(after model load {fmt_bytes(res['rss_after_model'])})", flush=True)
    small, large = sizes[0], sizes[-1]
    ratios = {
        f"streamed peak RSS {large} / {small}":
            results[f"streamed@{large}"]["peak_rss_bytes"]
            / results[f"streamed@{small}"]["peak_rss_bytes"],
    }
    if f"in_memory@{large}" in results:
        ratios[f"in_memory peak RSS {large} / {small}"] = (
            results[f"in_memory@{large}"]["peak_rss_bytes"]
            / results[f"in_memory@{small}"]["peak_rss_bytes"])
    for size in sizes:
        if f"in_memory@{size}" in results:
            ratios[f"in_memory / streamed peak RSS at {size}"] = (
                results[f"in_memory@{size}"]["peak_rss_bytes"]
                / results[f"streamed@{size}"]["peak_rss_bytes"])
    for key, value in ratios.items():
        print(f"  {key:45s} {value:6.2f}x")
    growth = (results[f"streamed@{large}"]["peak_rss_bytes"]
              - results[f"streamed@{small}"]["peak_rss_bytes"])
    targets = {
        "streamed peak RSS < 1 GiB": results[f"streamed@{large}"]["peak_rss_bytes"] < GIB,
        "streamed peak RSS independent of corpus size (growth < 10%)":
            growth < 0.10 * results[f"streamed@{small}"]["peak_rss_bytes"],
    }
    print("targets:", targets)
    load_after = print_load("load average after")
    payload = {"machine": info, "load_avg_before": load_before, "load_avg_after": load_after,
               "sizes": sizes, "chunk": args.chunk, "batch_size": args.batch_size,
               "results": results, "ratios": ratios, "targets": targets,
               "streamed_rss_growth_bytes": growth}
    write_json(args.out, payload)
    return payload


if __name__ == "__main__":
    main()
