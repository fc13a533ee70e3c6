"""The search service under load, against the CLI's one-off query, in the same run.

Run ``python benchmarks/bench_serve.py [--clients 64] [--requests 8] [--cli-repeats 3]``.

Measured, on this machine, with the bundled model and its shipped AMCSD index:

``cli``          ``matminer-clasp screen "garnet" --amcsd --top-k 10`` as a fresh process (warm
                 OS cache), ``--cli-repeats`` times; median. This is what every question costs
                 without the service.
``startup``      ``matminer-clasp serve --amcsd --threads 1`` until ``/api/health`` answers.
``sequential``   one client, one ``GET /api/search?q=...&k=10`` at a time (distinct queries).
``concurrent``   ``--clients`` threads sharing one keep-alive ``httpx`` pool, ``--requests``
                 queries each, all released together; latency per request and throughput.
``unbatched``    the same load against ``serve --max-batch 1`` (queries embedded one by one
                 under the lock), to show what micro-batching buys.

Clients run in this process on the same cores as the server, so the latencies include their
cost. Every service figure is printed with the ratio of the CLI's median to it.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, machine_info, print_load, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "matminer_clasp.cli"]
QUERIES = [
    "garnet", "spinel", "olivine", "perovskite", "layered silicate", "zeolite", "feldspar",
    "high-pressure phase", "sulfide mineral", "carbonate", "pyroxene", "amphibole", "mica",
    "clay mineral", "iron oxide", "superconductor", "ferroelectric", "hydrous magnesium silicate",
    "copper sulfate", "rare earth phosphate", "uranium mineral", "borate", "arsenate", "halide",
]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _percentiles(lat: list[float]) -> dict[str, float]:
    ms = sorted(x * 1000 for x in lat)

    def pct(p: float) -> float:
        return ms[min(len(ms) - 1, int(round(p / 100 * (len(ms) - 1))))]

    return {"n": len(ms), "p50_ms": round(pct(50), 2), "p90_ms": round(pct(90), 2),
            "p99_ms": round(pct(99), 2), "max_ms": round(ms[-1], 2),
            "mean_ms": round(statistics.fmean(ms), 2)}


def time_cli(repeats: int) -> list[float]:
    """Wall seconds of the README's one-off query as a fresh process."""
    times = []
    cmd = [*CLI, "screen", "garnet", "--amcsd", "--top-k", "10"]
    for _ in range(repeats):
        start = time.perf_counter()
        proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return times


class Service:
    """``matminer-clasp serve --amcsd`` in a child process."""

    def __init__(self, max_batch: int) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        cmd = [*CLI, "serve", "--amcsd", "--port", str(self.port), "--threads", "1",
               "--max-batch", str(max_batch), "--log-level", "warning"]
        start = time.perf_counter()
        self.proc = subprocess.Popen(cmd, env=_env(), stderr=subprocess.PIPE, text=True)
        import httpx

        while True:
            if self.proc.poll() is not None:
                raise SystemExit(f"serve failed:\n{self.proc.stderr.read()[-2000:]}")
            try:
                httpx.get(self.url + "/api/health", timeout=1).raise_for_status()
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        self.startup_s = time.perf_counter() - start

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def sequential(url: str, n: int) -> list[float]:
    import httpx

    lat = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for i in range(n):
            start = time.perf_counter()
            resp = client.get("/api/search", params={"q": QUERIES[i % len(QUERIES)], "k": 10})
            lat.append(time.perf_counter() - start)
            resp.raise_for_status()
    return lat


def concurrent(url: str, clients: int, requests: int) -> dict[str, Any]:
    import httpx

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    with httpx.Client(base_url=url, timeout=120, limits=limits) as client:
        for q in QUERIES[:4]:  # open a few connections, warm the path
            client.get("/api/search", params={"q": q, "k": 10}).raise_for_status()
        barrier = threading.Barrier(clients)

        def worker(c: int) -> list[float]:
            barrier.wait()
            lat = []
            for r in range(requests):
                q = QUERIES[(c * requests + r) % len(QUERIES)] + ("" if r % 2 else " mineral")
                start = time.perf_counter()
                resp = client.get("/api/search", params={"q": q, "k": 10})
                lat.append(time.perf_counter() - start)
                if resp.status_code != 200 or len(resp.json()["results"]) != 10:
                    raise RuntimeError(f"bad answer: {resp.status_code} {resp.text[:200]}")
            return lat

        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            lat = [x for part in pool.map(worker, range(clients)) for x in part]
        wall = time.perf_counter() - start
    out = _percentiles(lat)
    out.update(clients=clients, requests_per_client=requests, wall_s=round(wall, 2),
               throughput_rps=round(len(lat) / wall, 1))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--requests", type=int, default=8, help="requests per client")
    ap.add_argument("--sequential", type=int, default=48, help="single-client requests")
    ap.add_argument("--cli-repeats", type=int, default=3)
    ap.add_argument("--out", default=str(RESULTS / "serve.json"))
    args = ap.parse_args()
    load_before = print_load("load before")
    results: dict[str, Any] = {}
    for name, max_batch in (("batched", 64), ("unbatched", 1)):
        service = Service(max_batch)
        try:
            seq = _percentiles(sequential(service.url, args.sequential))
            conc = concurrent(service.url, args.clients, args.requests)
        finally:
            service.close()
        results[name] = {"max_batch": max_batch, "startup_s": round(service.startup_s, 2),
                         "sequential": seq, "concurrent": conc}
        print(f"serve --max-batch {max_batch}: start-up {service.startup_s:.2f} s; sequential "
              f"p50 {seq['p50_ms']:.1f} ms p99 {seq['p99_ms']:.1f} ms; {args.clients} clients "
              f"p50 {conc['p50_ms']:.1f} ms p99 {conc['p99_ms']:.1f} ms, "
              f"{conc['throughput_rps']:.0f} req/s", flush=True)
    cli = time_cli(args.cli_repeats)
    cli_median = statistics.median(cli)
    print(f"CLI one-off query (screen garnet --amcsd): median {cli_median:.2f} s "
          f"over {len(cli)} runs", flush=True)
    batched = results["batched"]
    ratios = {
        "cli_over_sequential_p50": round(cli_median * 1000 / batched["sequential"]["p50_ms"], 1),
        "cli_over_concurrent_p50": round(cli_median * 1000 / batched["concurrent"]["p50_ms"], 1),
        "cli_over_concurrent_p99": round(cli_median * 1000 / batched["concurrent"]["p99_ms"], 1),
        "unbatched_over_batched_concurrent_p99": round(
            results["unbatched"]["concurrent"]["p99_ms"] / batched["concurrent"]["p99_ms"], 2),
        "batched_over_unbatched_throughput": round(
            batched["concurrent"]["throughput_rps"]
            / results["unbatched"]["concurrent"]["throughput_rps"], 2),
    }
    print("\n| measure | value | CLI median / value |\n| --- | --- | --- |")
    print(f"| CLI one-off query | {cli_median * 1000:.0f} ms | 1.0 |")
    for label, stats in (("one client", batched["sequential"]),
                         (f"{args.clients} clients", batched["concurrent"])):
        for p in ("p50", "p99"):
            v = stats[f"{p}_ms"]
            print(f"| service, {label}, {p} | {v:.1f} ms | {cli_median * 1000 / v:.0f}x |")
    for key, value in ratios.items():
        print(f"{key}: {value}")
    load_after = print_load("load after")
    write_json(args.out, {
        "machine": machine_info(), "load_before": load_before, "load_after": load_after,
        "cli_s": [round(x, 3) for x in cli], "cli_median_s": round(cli_median, 3),
        "service": results, "ratios": ratios,
    })


if __name__ == "__main__":
    main()
