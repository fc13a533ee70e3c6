"""Featurization throughput and peak RSS: CLaSP against SiteStatsFingerprint and CHGNet.

Run ``python benchmarks/bench_featurize.py [--n 1000] [--n-baseline 200] [--out FILE]``.

Every method runs in its own fresh (``spawn``) child process with one torch / BLAS thread: the
child loads the inputs from a pickle, builds the featurizer (not timed), warms up on 8
structures, then featurizes its inputs ``--repeats`` times (median reported). Its ``ru_maxrss``
is the method's peak RSS (imports + model + inputs + featurization), untouched by other methods;
for CLaSP the peak is read right after the ``featurize_many`` runs (``peak_rss_featurize``),
before the separate build/encode timing, which holds every graph at once.

CLaSP runs twice: on one core (``MATMINER_CLASP_GRAPH_WORKERS=0``: graphs built in the same
process, one torch thread; the ``_1core`` rows) and as shipped (the default: on this machine's
CPUs minus one, graph-building worker processes run ahead of the model, which keeps one torch
thread). The baselines run on one core, and again on all cores (SiteStatsFingerprint with
matminer's ``n_jobs``, CHGNet with that many torch threads; the ``_ncore`` rows), so each ratio
compares like with like: ``*_1core`` with one core each, default CLaSP with the ``_ncore``
baselines. Peak RSS of the default CLaSP is the main process's plus the workers' (``VmHWM``).

Inputs: the first ``--n`` AMCSD structures in load order. CHGNet cannot take disordered
structures, so the slow baselines use the first ``--n-baseline`` *ordered* structures among
them, and CLaSP is measured on exactly that subset too: the ratios compare the same inputs.
"""

from __future__ import annotations

import argparse
import os
import pickle
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    GIB,
    RESULTS,
    fmt_bytes,
    load_amcsd_structures,
    machine_info,
    median_time,
    median_wall_and_cpu,
    own_peak_rss,
    peak_rss_in_child,
    print_load,
    random_model,
    single_thread,
    write_json,
)

WARMUP = 8


def _load_inputs(path: str, which: str) -> list[Any]:
    with open(path, "rb") as fh:
        data = pickle.load(fh)
    return data[which]


# ---------------------------------------------------------------------- methods (run in children)
def _clasp_featurizer(model: Any) -> Any:
    """ClaspFeaturizer when it exists, else the model's own batched encode (same code path)."""
    try:
        from matminer_clasp.featurizers import ClaspFeaturizer
    except ImportError:
        return None
    for kwargs in ({"model": model}, {}):
        try:
            return ClaspFeaturizer(**kwargs)
        except TypeError:
            continue
    return None


def run_clasp(path: str, which: str, cell: str, repeats: int, batch_size: int,
              workers: int | None = None, split: bool = True) -> dict[str, Any]:
    """Time ClaspFeaturizer.featurize_many end to end, then build_graphs / encode_graphs apart.

    ``workers``: graph workers (``None``: the default); ``split``: also time the two halves.
    """
    import warnings

    warnings.filterwarnings("ignore")
    if workers is not None:
        os.environ["MATMINER_CLASP_GRAPH_WORKERS"] = str(workers)
    import numpy as np

    structures = _load_inputs(path, which)
    with single_thread():
        model = random_model(cell)
        featurizer = _clasp_featurizer(model)
        if featurizer is not None:
            if hasattr(featurizer, "batch_size"):
                featurizer.batch_size = batch_size

            def featurize(items: list[Any]) -> Any:
                return featurizer.featurize_many(items, ignore_errors=True, pbar=False)

            api = "ClaspFeaturizer.featurize_many"
        else:

            def featurize(items: list[Any]) -> Any:
                graphs = model.build_graphs(items, ignore_errors=True)
                good = [g for g in graphs if not isinstance(g, Exception)]
                return model.encode_graphs(good, batch_size)

            api = "ClaspModel.build_graphs + encode_graphs (featurizer not available)"
        featurize(structures[:WARMUP])
        timing = median_wall_and_cpu(lambda: featurize(structures), repeats, _worker_pids)
        total = timing["seconds"]
        out = np.asarray(featurize(structures[:WARMUP]), dtype=float)
        # the featurizer's own peak, before the build/encode split below holds all graphs at once
        rss_featurize = own_peak_rss()
        rss_workers = _worker_peak_rss()
        n_workers = len(rss_workers)
        if not split:
            n = len(structures)
            return {"api": api, "cell": cell, "n": n, "graph_workers": n_workers,
                    "cores_used": 1 + n_workers, "n_failed": int(np.isnan(out).all(axis=1).sum()),
                    "feature_width": int(out.shape[1]), **timing, "per_s": n / total,
                    "per_cpu_s": n / timing["cpu_seconds"],
                    "peak_rss_featurize_bytes": rss_featurize,
                    "peak_rss_workers_bytes": rss_workers,
                    "peak_rss_total_bytes": rss_featurize + sum(rss_workers)}

        graphs_holder: dict[str, Any] = {}

        def build() -> None:
            graphs_holder["g"] = model.build_graphs(structures, ignore_errors=True)

        build_t, build_runs = median_time(build, repeats)
        graphs = [g for g in graphs_holder["g"] if not isinstance(g, Exception)]
        encode_t, encode_runs = median_time(
            lambda: model.encode_graphs(graphs, batch_size), repeats
        )
    n = len(structures)
    return {
        "api": api,
        "cell": cell,
        "n": n,
        "graph_workers": n_workers,
        "cores_used": 1 + n_workers,
        "n_failed": n - len(graphs),
        "feature_width": int(out.shape[1]) if out.ndim == 2 else None,
        **timing,
        "per_s": n / total,
        "per_cpu_s": n / timing["cpu_seconds"],
        "build_graphs_s": build_t,
        "encode_graphs_s": encode_t,
        "build_graphs_runs": build_runs,
        "encode_graphs_runs": encode_runs,
        "graph_share": build_t / (build_t + encode_t),
        "peak_rss_featurize_bytes": rss_featurize,
        "peak_rss_workers_bytes": rss_workers,
        "peak_rss_total_bytes": rss_featurize + sum(rss_workers),
    }


def _worker_pids() -> list[int]:
    """Process ids of this process's graph workers, if any."""
    try:
        from matminer_clasp import graph_pool
    except ImportError:
        return []
    return [w.process.pid for w in graph_pool._WORKERS]


def _worker_peak_rss() -> list[int]:
    """Peak RSS (``VmHWM``) of this process's graph workers, if any."""
    try:
        from matminer_clasp import graph_pool
    except ImportError:
        return []
    peaks = []
    for worker in graph_pool._WORKERS:
        try:
            status = Path(f"/proc/{worker.process.pid}/status").read_text()
        except OSError:
            continue
        line = next(x for x in status.splitlines() if x.startswith("VmHWM:"))
        peaks.append(int(line.split()[1]) * 1024)
    return peaks


def run_ssf(path: str, which: str, repeats: int, cores: int = 1) -> dict[str, Any]:
    """matminer SiteStatsFingerprint (CrystalNNFingerprint_ops preset), ``n_jobs=cores``."""
    import warnings

    warnings.filterwarnings("ignore")
    import numpy as np
    from matminer.featurizers.structure import SiteStatsFingerprint

    structures = _load_inputs(path, which)
    with single_thread():
        ssf = SiteStatsFingerprint.from_preset("CrystalNNFingerprint_ops")
        ssf.set_n_jobs(cores)
        ssf.featurize_many(structures[:2], ignore_errors=True, pbar=False)
        rows: list[Any] = []

        def featurize() -> None:
            rows[:] = ssf.featurize_many(structures, ignore_errors=True, pbar=False)

        timing = median_wall_and_cpu(featurize, repeats)
    arr = np.asarray(rows, dtype=float)
    failed = int(np.isnan(arr).all(axis=1).sum())
    n = len(structures)
    return {"n": n, "n_failed": failed, "feature_width": int(arr.shape[1]), **timing,
            "per_s": n / timing["seconds"], "per_cpu_s": n / timing["cpu_seconds"],
            "cores_used": cores}


def run_chgnet(path: str, which: str, repeats: int, batch_size: int,
               cores: int = 1) -> dict[str, Any]:
    """CHGNet.load() then predict_structure(..., return_crystal_feas=True), ``cores`` threads."""
    import warnings

    warnings.filterwarnings("ignore")
    from chgnet.model import CHGNet

    structures = _load_inputs(path, which)
    with single_thread(cores):
        model = CHGNet.load(verbose=False) if _accepts_verbose(CHGNet.load) else CHGNet.load()
        failed: list[int] = []

        def predict(items: list[Any]) -> None:
            failed.clear()
            for start in range(0, len(items), batch_size):
                chunk = items[start : start + batch_size]
                try:
                    model.predict_structure(
                        chunk, task="e", return_crystal_feas=True, batch_size=batch_size
                    )
                except Exception:  # noqa: BLE001 - retry one by one to find the bad one
                    for j, s in enumerate(chunk):
                        try:
                            model.predict_structure(s, task="e", return_crystal_feas=True)
                        except Exception:  # noqa: BLE001
                            failed.append(start + j)

        predict(structures[:WARMUP])
        timing = median_wall_and_cpu(lambda: predict(structures), repeats)
        width = int(
            model.predict_structure(structures[0], task="e", return_crystal_feas=True)[
                "crystal_fea"
            ].shape[-1]
        )
    n = len(structures)
    return {"n": n, "n_failed": len(failed), "feature_width": width, **timing,
            "per_s": n / timing["seconds"], "per_cpu_s": n / timing["cpu_seconds"],
            "cores_used": cores}


def _accepts_verbose(fn: Any) -> bool:
    import inspect

    try:
        return "verbose" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


# ---------------------------------------------------------------------- driver
def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="AMCSD structures for CLaSP")
    parser.add_argument("--n-baseline", type=int, default=200,
                        help="ordered structures for the slow baselines (and CLaSP on the same)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats for CLaSP")
    parser.add_argument("--baseline-repeats", type=int, default=2,
                        help="timed repeats for SiteStatsFingerprint and CHGNet")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--skip", nargs="*", default=[],
                        choices=["ssf", "chgnet", "conventional", "ncore"],
                        help="methods to leave out (ncore: the all-core baseline runs)")
    parser.add_argument("--out", default=str(RESULTS / "featurize.json"))
    args = parser.parse_args(argv)

    info = machine_info()
    load_before = print_load("load average before")
    t0 = time.perf_counter()
    _, structures = load_amcsd_structures(args.n)
    ordered = [s for s in structures if s.is_ordered][: args.n_baseline]
    print(f"inputs: {len(structures)} AMCSD structures (load order), "
          f"{sum(not s.is_ordered for s in structures)} disordered; baseline subset: first "
          f"{len(ordered)} ordered ones; loaded in {time.perf_counter() - t0:.1f} s", flush=True)

    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "inputs.pkl")
        with open(path, "wb") as fh:
            pickle.dump({"all": structures, "baseline": ordered}, fh)
        cores = os.cpu_count() or 1
        common = (args.repeats, args.batch_size)
        jobs: list[tuple[str, Any, tuple]] = [
            ("clasp_as_is_1core", run_clasp, (path, "all", "as_is", *common, 0)),
            ("clasp_as_is_1core@baseline", run_clasp, (path, "baseline", "as_is", *common, 0)),
            ("clasp_as_is", run_clasp, (path, "all", "as_is", *common, None, False)),
            ("clasp_as_is@baseline", run_clasp,
             (path, "baseline", "as_is", *common, None, False)),
        ]
        if "conventional" not in args.skip:
            jobs.append(("clasp_conventional", run_clasp,
                         (path, "all", "conventional", *common, None, False)))
            jobs.append(("clasp_conventional@baseline", run_clasp,
                         (path, "baseline", "conventional", *common, None, False)))
        if "chgnet" not in args.skip:
            jobs.append(("chgnet_crystal_fea_1core@baseline", run_chgnet,
                         (path, "baseline", args.baseline_repeats, 16)))
            if cores > 1 and "ncore" not in args.skip:
                jobs.append(("chgnet_crystal_fea_ncore@baseline", run_chgnet,
                             (path, "baseline", args.baseline_repeats, 16, cores)))
        if "ssf" not in args.skip:
            jobs.append(("ssf_crystalnn_ops_1core@baseline", run_ssf,
                         (path, "baseline", args.baseline_repeats)))
            if cores > 1 and "ncore" not in args.skip:
                jobs.append(("ssf_crystalnn_ops_ncore@baseline", run_ssf,
                             (path, "baseline", args.baseline_repeats, cores)))
        for name, fn, fn_args in jobs:
            t1 = time.perf_counter()
            res, rss = peak_rss_in_child(fn, *fn_args)
            res["peak_rss_bytes"] = rss
            res["peak_rss_gib"] = rss / GIB
            results[name] = res
            extra = f"  [{res.get('cores_used', 1)} core(s)]"
            if "graph_share" in res:
                extra += (f"  build_graphs {res['build_graphs_s']:.2f} s, encode_graphs "
                         f"{res['encode_graphs_s']:.2f} s -> graph share {res['graph_share']:.0%}")
            shown = res.get("peak_rss_total_bytes", rss)
            print(f"{name:34s} n={res['n']:5d} failed={res['n_failed']:3d}  "
                  f"{res['per_s']:8.1f} structures/s ({res['per_cpu_s']:.1f}/CPU s)  "
                  f"peak RSS {fmt_bytes(shown)}{extra}  "
                  f"(child wall {time.perf_counter() - t1:.0f} s)", flush=True)

    ratios: dict[str, float] = {}
    cpu_ratios: dict[str, float] = {}
    pairs = [("clasp_as_is_1core@baseline", "_1core@baseline"),
             ("clasp_as_is@baseline", "_ncore@baseline")]
    if "clasp_conventional@baseline" in results:
        pairs.append(("clasp_conventional@baseline", "_ncore@baseline"))
    for clasp_key, suffix in pairs:
        for base in ("chgnet_crystal_fea", "ssf_crystalnn_ops"):
            key = base + suffix
            if key not in results and suffix == "_ncore@baseline":
                key = base + "_1core@baseline"  # one CPU: the baseline has no more cores
            if key in results:
                ratios[f"{clasp_key} / {key}"] = results[clasp_key]["per_s"] / results[key]["per_s"]
                if suffix == "_1core@baseline":  # one core each: CPU time is the load-proof cost
                    cpu_ratios[f"{clasp_key} / {key}"] = (
                        results[clasp_key]["per_cpu_s"] / results[key]["per_cpu_s"])
    print("\nratios on the same inputs (throughput; cores per method in the JSON's cores_used):")
    for key, value in ratios.items():
        print(f"  {key:75s} {value:6.1f}x")
    print("ratios of structures per CPU second (one core each; robust to other jobs' load):")
    for key, value in cpu_ratios.items():
        print(f"  {key:75s} {value:6.1f}x")

    def ratio(clasp_key: str, base: str) -> float:
        return max((v for k, v in ratios.items() if k.startswith(clasp_key + " / " + base)),
                   default=0.0)

    targets = {}
    for label, clasp_key in (("1 core each", "clasp_as_is_1core@baseline"),
                             ("all cores each", "clasp_as_is@baseline")):
        targets[f"clasp >= 25x chgnet ({label})"] = ratio(clasp_key, "chgnet") >= 25
        targets[f"clasp >= 140x ssf ({label})"] = ratio(clasp_key, "ssf") >= 140
    targets["clasp peak RSS < 1 GiB (1 core)"] = (
        results["clasp_as_is_1core"]["peak_rss_featurize_bytes"] < GIB)
    targets["clasp peak RSS < 1 GiB (default, main + workers)"] = (
        results["clasp_as_is"]["peak_rss_total_bytes"] < GIB)
    print("targets:", ", ".join(f"{k}: {'met' if v else 'MISSED'}" for k, v in targets.items()))
    load_after = print_load("load average after")
    payload = {"machine": info, "load_avg_before": load_before, "load_avg_after": load_after,
               "n": args.n, "n_baseline": len(ordered), "results": results, "ratios": ratios,
               "cpu_ratios": cpu_ratios,
               "targets": targets}
    write_json(args.out, payload)
    return payload


if __name__ == "__main__":
    main()
