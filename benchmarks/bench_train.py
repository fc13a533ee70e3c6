"""Training step time and the data-loading share, with and without the graph cache.

Run ``python benchmarks/bench_train.py [--n 300] [--steps 24] [--out FILE]``.

The loop is the trainer's own: a ``matminer_clasp.train.trainer._Run`` is set up exactly as
``fit`` would (AdamW, CosFace loss, cached frozen-text features, its DataLoader with
``collate_pairs``), and each optimizer step is timed in two parts, ``wait`` (``next(loader)``:
fetching and collating the batch) and ``compute`` (``_train_step``: forward, loss, backward,
optimizer). Data share = wait / (wait + compute), median over steps after warm-up.

Variants, all on the same AMCSD pairs (the first ``--n`` of the source, placeholder titles
dropped) and the same model:

* ``cache``: graphs from ``load_pairs`` (built once, stored in the on-disk graph cache);
* ``on_the_fly``: the dataset builds each graph from its pymatgen structure at every step
  (same ``cell`` as the model, ``as_is`` by default);
* ``on_the_fly_conventional``: the same with the official conventional-cell preprocessing
  (spglib in the loop), for reference.

One torch thread, ``num_workers=0`` (the trainer's default) unless ``--num-workers`` is given.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    RESULTS,
    load_amcsd_structures,
    machine_info,
    print_load,
    random_model,
    single_thread,
    write_json,
)


class LazyGraphs:
    """A sequence that builds the crystal graph of item ``i`` from its structure on access."""

    def __init__(self, structures: list[Any], builder: Any) -> None:
        self.structures, self.builder = structures, builder

    def __len__(self) -> int:
        return len(self.structures)

    def __getitem__(self, i: int) -> Any:
        return self.builder(self.structures[i])


def time_steps(run: Any, steps: int, warmup: int) -> dict[str, Any]:
    """Run ``warmup + steps`` optimizer steps of ``run``; time the batch wait and the step."""
    waits, computes = [], []
    epoch = 0
    while len(waits) < warmup + steps:
        loader = iter(run._micro_batches(epoch, 0))
        for _ in range(run.steps_per_epoch):
            t0 = time.perf_counter()
            micro = [next(loader) for _ in range(run.cfg.grad_accum_steps)]
            t1 = time.perf_counter()
            run._train_step(micro)
            t2 = time.perf_counter()
            waits.append(t1 - t0)
            computes.append(t2 - t1)
            if len(waits) >= warmup + steps:
                break
        epoch += 1
    waits, computes = waits[warmup:], computes[warmup:]
    totals = [w + c for w, c in zip(waits, computes)]
    wait, total = statistics.median(waits), statistics.median(totals)
    return {
        "steps": len(totals),
        "step_ms": 1000 * total,
        "wait_ms": 1000 * wait,
        "compute_ms": 1000 * statistics.median(computes),
        "data_share": sum(waits) / sum(totals),
        "data_share_of_medians": wait / total,
        "samples_per_s": run.cfg.batch_size / total,
        "step_ms_runs": [1000 * t for t in totals],
        "wait_ms_runs": [1000 * w for w in waits],
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=300, help="AMCSD source entries to use")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=24, help="timed steps per variant")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps per variant")
    parser.add_argument("--num-workers", type=int, default=0)
    parser.add_argument("--cell", default="as_is", help="model cell (the on-the-fly builder's)")
    parser.add_argument("--skip-conventional", action="store_true")
    parser.add_argument("--out", default=str(RESULTS / "train.json"))
    args = parser.parse_args(argv)

    import warnings

    warnings.filterwarnings("ignore")
    import numpy as np

    from matminer_clasp.train.config import TrainConfig
    from matminer_clasp.train.data import DataConfig, load_pairs
    from matminer_clasp.train.trainer import _Run

    info = machine_info()
    load_before = print_load("load average before")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp, single_thread():
        model = random_model(args.cell)
        data_cfg = DataConfig(source="amcsd", max_items=args.n, n_jobs=1,
                              cache_dir=str(Path(tmp) / "cache"))
        t0 = time.perf_counter()
        pairs = load_pairs(data_cfg, model.config, show_progress_bar=False)
        build_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        pairs = load_pairs(data_cfg, model.config, show_progress_bar=False)
        cached_load_s = time.perf_counter() - t0
        print(f"{len(pairs)} pairs; graphs built and cached in {build_s:.1f} s, cache read back "
              f"in {cached_load_s:.2f} s", flush=True)
        ids, structures = load_amcsd_structures(None if args.n is None else args.n)
        by_id = {str(i): s for i, s in zip(ids, structures)}
        missing = [i for i in pairs.ids if str(i) not in by_id]
        if missing:
            raise RuntimeError(f"structures for pair ids {missing[:5]} not found")
        aligned = [by_id[str(i)] for i in pairs.ids]
        splits = {"train": np.arange(len(pairs)), "val": np.array([], dtype=np.int64),
                  "test": np.array([], dtype=np.int64)}
        cfg = TrainConfig(data=data_cfg, batch_size=args.batch_size, epochs=1000,
                          max_steps=10_000, output_dir=str(Path(tmp) / "run"), device="cpu",
                          eval_every=0, num_workers=args.num_workers, precision="fp32",
                          log_every=10_000)
        run = _Run(cfg, pairs, splits, model, [])
        run.setup()
        variants = [("cache", pairs.graphs, None),
                    ("on_the_fly", LazyGraphs(aligned, model.graph_builder), None)]
        if not args.skip_conventional and args.cell != "conventional":
            from matminer_clasp.config import ClaspConfig
            from matminer_clasp.graph import CrystalGraphBuilder

            conv = ClaspConfig(**{**model.config.to_dict(), "cell": "conventional"})
            variants.append(("on_the_fly_conventional",
                             LazyGraphs(aligned, CrystalGraphBuilder(conv)), None))
        for name, graphs, _ in variants:
            run.pairs = dataclasses.replace(pairs, graphs=graphs)
            res = time_steps(run, args.steps, args.warmup)
            results[name] = res
            print(f"{name:26s} step {res['step_ms']:7.1f} ms  wait {res['wait_ms']:7.1f} ms  "
                  f"compute {res['compute_ms']:7.1f} ms  data share {res['data_share']:6.1%}  "
                  f"{res['samples_per_s']:6.1f} pairs/s", flush=True)
    base = results["cache"]["step_ms"]
    ratios = {f"{k} step / cache step": v["step_ms"] / base for k, v in results.items()
              if k != "cache"}
    for key, value in ratios.items():
        print(f"  {key:45s} {value:6.2f}x")
    share = results["cache"]["data_share"]
    targets = {"data loading <= 10% of a step with the cache": share <= 0.10}
    print("targets:", targets)
    load_after = print_load("load average after")
    payload = {"machine": info, "load_avg_before": load_before, "load_avg_after": load_after,
               "n_pairs": len(pairs), "batch_size": args.batch_size, "cell": args.cell,
               "graph_build_s": build_s, "graph_cache_load_s": cached_load_s,
               "results": results, "ratios": ratios, "targets": targets}
    write_json(args.out, payload)
    return payload


if __name__ == "__main__":
    main()
