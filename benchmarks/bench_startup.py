"""Start-up: how long a one-off CLI query takes, against ``python -c "import torch, transformers"``.

Run ``python benchmarks/bench_startup.py [--repeats 5] [--out FILE]``.

Every command runs as a fresh process (``subprocess``), ``--repeats`` times, interleaved with the
baseline so that a change in machine load hits both; medians are reported, with the ratio to the
baseline's median. Measured:

``baseline``         ``python -c "import torch, transformers"`` (the floor of any torch +
                     transformers tool; transformers imports lazily, so no model code).
``readme_first``     the README's main job, ``matminer-clasp screen "garnet" --amcsd --top-k 10``,
                     with an empty ``$MATMINER_CLASP_CACHE`` (a fresh install): answered from the
                     AMCSD index shipped with the bundled model, no CIF parsed.
``warm_amcsd``       the same command again (files in the OS cache).
``warm_index``       ``screen "garnet" --index DIR`` on a user-built index (here: a copy of the
                     shipped one), the path of any index made by ``matminer-clasp index``.
``full_model``       for reference, the old query path: ``ClaspModel.from_pretrained()`` (both
                     towers, torch_geometric, transformers' BERT) + ``encode_texts("garnet")``.

It also prints the ten slowest imports of the warm query (``python -X importtime``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, machine_info, print_load, write_json  # noqa: E402

CLI = [sys.executable, "-m", "matminer_clasp.cli"]
QUERY = ["screen", "garnet", "--top-k", "10"]


def _time(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return elapsed


def _slowest_imports(cmd: list[str], env: dict[str, str], n: int = 10) -> list[tuple[str, float]]:
    proc = subprocess.run([sys.executable, "-X", "importtime", *cmd[1:]], env=env,
                          capture_output=True, text=True)
    rows = []
    for line in proc.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line:
            continue
        parts = line.split("|")
        try:
            cumulative = int(parts[1]) / 1e6
        except ValueError:
            continue
        name = parts[2].strip()
        if "." not in name:  # top-level packages only: their cumulative time is what they cost
            rows.append((name, cumulative))
    return sorted(rows, key=lambda r: -r[1])[:n]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(RESULTS / "startup.json"))
    args = ap.parse_args(argv)

    from matminer_clasp.cli.corpus import BUNDLED_AMCSD_INDEX

    load_before = print_load()
    tmp = Path(tempfile.mkdtemp(prefix="bench-startup-"))
    try:
        index_copy = tmp / "index"
        shutil.copytree(BUNDLED_AMCSD_INDEX, index_copy)
        base_env = {**os.environ, "HF_HUB_OFFLINE": "1"}
        warm_env = {**base_env, "MATMINER_CLASP_CACHE": str(tmp / "warm-cache")}
        commands: dict[str, tuple[list[str], Any]] = {
            "baseline": ([sys.executable, "-c", "import torch, transformers"], lambda: base_env),
            "readme_first": ([*CLI, *QUERY, "--amcsd"], None),  # env made fresh per run below
            "warm_amcsd": ([*CLI, *QUERY, "--amcsd"], lambda: warm_env),
            "warm_index": ([*CLI, *QUERY, "--index", str(index_copy)], lambda: warm_env),
            "full_model": ([sys.executable, "-c",
                            "from matminer_clasp import ClaspModel; "
                            "ClaspModel.from_pretrained().encode_texts('garnet')"],
                           lambda: base_env),
        }
        _time(commands["warm_amcsd"][0], warm_env)  # fill the OS file cache once
        times: dict[str, list[float]] = {name: [] for name in commands}
        for r in range(args.repeats):
            for name, (cmd, env) in commands.items():
                if env is None:  # an empty cache folder, as on a fresh install
                    fresh = tmp / f"fresh-cache-{r}"
                    run_env = {**base_env, "MATMINER_CLASP_CACHE": str(fresh)}
                else:
                    run_env = env()
                times[name].append(_time(cmd, run_env))
        imports = _slowest_imports(commands["warm_amcsd"][0], warm_env)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load_after = print_load()

    base = statistics.median(times["baseline"])
    results = {}
    print(f"\n{'command':<14} {'median s':>9} {'min s':>7} {'x baseline':>11}")
    for name, values in times.items():
        med = statistics.median(values)
        results[name] = {"median_s": med, "min_s": min(values), "runs_s": values,
                         "ratio_to_baseline": med / base}
        print(f"{name:<14} {med:9.2f} {min(values):7.2f} {med / base:11.2f}")
    print("\nslowest top-level imports of the warm query (cumulative s):")
    for name, sec in imports:
        print(f"  {name:<24} {sec:6.2f}")
    targets = {"warm_amcsd <= 1.5x": results["warm_amcsd"]["ratio_to_baseline"] <= 1.5,
               "warm_index <= 1.5x": results["warm_index"]["ratio_to_baseline"] <= 1.5,
               "readme_first <= 3x": results["readme_first"]["ratio_to_baseline"] <= 3.0}
    for target, ok in targets.items():
        print(f"target {target}: {'met' if ok else 'MISSED'}")
    write_json(args.out, {"machine": machine_info(), "load_before": load_before,
                          "load_after": load_after, "repeats": args.repeats,
                          "results": results, "slowest_imports": imports, "targets": targets})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
