"""Embed many structures in parallel with Dask: one model per worker process, no weights shipped.

What it shows
-------------
1. A ``dask.dataframe`` with a column of pymatgen structures (created with
   ``dataframe.convert-string`` off, so the structures stay Python objects).
2. ``embed_dask_dataframe(ddf, "structure", ClaspFeaturizer(model))``: each partition is
   featurized on a worker; the featurizer travels as a few hundred bytes (settings and the model's
   name) and each worker process loads the weights once.
3. The result equals the single-process ``featurize_dataframe`` and is written to parquet.

On a cluster, replace ``LocalCluster`` by your scheduler's address (``Client("tcp://...")``) or a
``dask_jobqueue`` cluster; see ``docs/scaling.md``.

Run it::

    python examples/05_dask_embedding.py                     # 2,000 structures, bundled model
    python examples/05_dask_embedding.py --fast --model DIR  # 40 structures
"""

from __future__ import annotations

import argparse
import os
import pickle
import tempfile
import time
from pathlib import Path

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
from distributed import Client, LocalCluster
from pymatgen.core import Lattice, Structure

from matminer_clasp import ClaspFeaturizer
from matminer_clasp.dask import embed_dask_dataframe


def fast_mode(flag: bool) -> bool:
    """``--fast`` or the environment variable ``MATMINER_CLASP_EXAMPLE_FAST=1``."""
    return flag or os.environ.get("MATMINER_CLASP_EXAMPLE_FAST", "") not in ("", "0")


def make_structures(n: int) -> pd.DataFrame:
    """``n`` rock-salt, perovskite and diamond cells at random strains (a stand-in corpus)."""
    rng = np.random.default_rng(0)
    protos = [
        ("Fm-3m", 5.64, ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]),
        ("Pm-3m", 3.905, ["Sr", "Ti", "O"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]]),
        ("Fd-3m", 5.431, ["Si"], [[0, 0, 0]]),
    ]
    rows = []
    for i in range(n):
        group, a, species, coords = protos[i % len(protos)]
        s = Structure.from_spacegroup(group, Lattice.cubic(a * rng.uniform(0.95, 1.05)),
                                      species, coords)
        rows.append({"id": f"s-{i}", "structure": s})
    return pd.DataFrame(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder or Hub id (default: bundled)")
    parser.add_argument("--n", type=int, default=2000, help="number of structures")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--out", default=None, help="parquet folder (default: temporary)")
    parser.add_argument("--fast", action="store_true", help="40 structures")
    args = parser.parse_args(argv)
    n = 40 if fast_mode(args.fast) else args.n

    frame = make_structures(n)
    # Dask turns object columns into strings by default; structures must stay objects
    with dask.config.set({"dataframe.convert-string": False}):
        ddf = dd.from_pandas(frame, npartitions=args.partitions)

    # give the model by NAME (folder or Hub id): featurizers never pickle weights
    featurizer = ClaspFeaturizer(args.model, device="cpu", batch_size=64)
    print(f"pickled featurizer: {len(pickle.dumps(featurizer))} bytes")

    # 2 worker processes, 1 thread each (torch uses its own threads inside a task)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        print(f"cluster: {len(client.scheduler_info()['workers'])} workers")
        lazy = embed_dask_dataframe(ddf, "structure", featurizer, ignore_errors=True)
        t0 = time.perf_counter()
        result = lazy.compute()
        seconds = time.perf_counter() - t0
    labels = featurizer.feature_labels()
    print(f"embedded {len(result)} structures in {args.partitions} partitions: {seconds:.1f} s "
          f"({len(result) / seconds:.0f} structures/s)")

    # the same numbers as one process would give (checked on the first rows)
    check = featurizer.featurize_dataframe(frame.head(10), "structure", pbar=False)
    diff = np.abs(result[labels].head(10).to_numpy() - check[labels].to_numpy()).max()
    print(f"max |dask - single process| on 10 rows: {diff:.1e}")

    # keep ids and embeddings (not the Structure objects) on disk
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out) if args.out else Path(tmp) / "embeddings.parquet"
        result.drop(columns="structure").to_parquet(out)
        print(f"wrote {out} ({out.stat().st_size / 1e6:.2f} MB)")
    return 0 if diff <= 1e-5 else 1


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    raise SystemExit(main())
