"""Top-10 query latency over a large embedding corpus: numpy brute force vs EmbeddingIndex / faiss.

Run ``python benchmarks/bench_screen.py [--corpus real|synthetic] [--n 1000000] [--out FILE]``
(``--n 100000`` for a quick run).

Real corpus (``--corpus real``, the default): the 9,274 AMCSD embeddings of the bundled model
(the index shipped with the package), grown to ``--n`` rows by augmentation on the real
manifold: each new row starts at a real row, moves a random fraction in [0, 0.5] of the way to
one of its 10 nearest real neighbours, and gets isotropic noise sized so that its cosine to the
start is the real rows' median nearest-neighbour cosine; then it is renormalised. Queries are of
two real kinds, reported separately: *text* queries (the model's own text embeddings of AMCSD
titles, mineral names and zero-shot concepts, which sit across the modality gap from every
structure) and *structure* queries (real rows with fresh noise of the same size, not corpus
members).

Synthetic corpus (``--corpus synthetic``): ``--n`` unit vectors of dimension 768 drawn around
``--clusters`` centres (default 2,000). The centres are anisotropic (a 64-d low-rank part plus a
weaker isotropic part, like learned embeddings that occupy a subspace), cluster sizes are
log-normal (a few large families, many small ones), and each point is ``centre + noise``
renormalised so that its cosine to its centre is about 0.8. Queries are fresh draws from the same
distribution (not corpus members).

Every query is timed on its own (batch of one, one BLAS / faiss thread), after 3 warm-up
queries; p50 and p99 are over those per-query times. The exact methods take turns query by
query (interleaved), so load drifting on the shared machine hits them equally. Recall@10 of an
approximate index is the mean overlap of its top 10 with the exact top 10 (computed by one
batched matrix product).

Memory: the fp32 corpus (3 GB at 1M x 768) is the one long-lived copy; the fp16 copy (1.5 GB)
lives during the exact timings only, and each faiss index is built, timed and freed before the
next (at most two full copies at once).
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import RESULTS, current_rss, fmt_bytes, machine_info, print_load, write_json  # noqa: E402

DIM = 768
TOP_K = 10


# ---------------------------------------------------------------------- data
def make_centres(n_clusters: int, rng: np.random.Generator, rank: int = 64) -> np.ndarray:
    """Unit-norm, anisotropic cluster centres: low-rank part + weaker isotropic part."""
    basis = rng.standard_normal((rank, DIM)).astype(np.float32)
    scales = (1.0 / np.sqrt(np.arange(1, rank + 1))).astype(np.float32)  # decaying spectrum
    low = (rng.standard_normal((n_clusters, rank)).astype(np.float32) * scales) @ basis
    low /= np.linalg.norm(low, axis=1, keepdims=True)
    iso = rng.standard_normal((n_clusters, DIM)).astype(np.float32)
    iso /= np.linalg.norm(iso, axis=1, keepdims=True)
    centres = low + 0.5 * iso
    return centres / np.linalg.norm(centres, axis=1, keepdims=True)


def draw(centres: np.ndarray, weights: np.ndarray, n: int, rng: np.random.Generator,
         out: np.ndarray | None = None, noise: float = 0.75, chunk: int = 65536) -> np.ndarray:
    """``n`` points ``normalize(centre + noise * g)``, g Gaussian of norm ~1: cos to centre ~0.8."""
    out = np.empty((n, DIM), dtype=np.float32) if out is None else out
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        labels = rng.choice(len(centres), size=m, p=weights)
        block = rng.standard_normal((m, DIM), dtype=np.float32)
        block *= noise / np.sqrt(DIM)
        block += centres[labels]
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + m] = block
    return out


# ---------------------------------------------------------------------- real embeddings
def amcsd_embeddings() -> tuple[np.ndarray, Any]:
    """The bundled model's AMCSD index shipped with the package: (float32 rows, metadata)."""
    from matminer_clasp.cli.corpus import BUNDLED_AMCSD_INDEX
    from matminer_clasp.index import EmbeddingIndex

    index = EmbeddingIndex.load(BUNDLED_AMCSD_INDEX)
    return np.asarray(index.embeddings, dtype=np.float32), index.metadata


def real_neighbours(base: np.ndarray, k: int = 10) -> tuple[np.ndarray, float]:
    """Each real row's ``k`` nearest other rows, and the median nearest-neighbour cosine."""
    nbr = exact_topk_batched(base, base, k + 1)[:, 1:]
    cos1 = np.sum(base * base[nbr[:, 0]], axis=1)
    return nbr, float(np.median(cos1))


def noise_scale(cosine: float) -> float:
    """Norm of isotropic noise whose addition leaves a unit vector at ``cosine`` to itself."""
    return float(np.sqrt(1.0 / cosine**2 - 1.0))


def augment_real(base: np.ndarray, nbr: np.ndarray, eps: float, n: int, rng: np.random.Generator,
                 chunk: int = 65536) -> np.ndarray:
    """``n`` rows: the real rows first, then mixtures with real neighbours plus noise (see top)."""
    out = np.empty((n, DIM), dtype=np.float32)
    m0 = min(n, len(base))
    out[:m0] = base[:m0]
    for start in range(m0, n, chunk):
        m = min(chunk, n - start)
        src = rng.integers(len(base), size=m)
        dst = nbr[src, rng.integers(nbr.shape[1], size=m)]
        t = rng.uniform(0.0, 0.5, size=(m, 1)).astype(np.float32)
        block = (1 - t) * base[src] + t * base[dst]
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        block += rng.standard_normal((m, DIM), dtype=np.float32) * (eps / np.sqrt(DIM))
        block /= np.linalg.norm(block, axis=1, keepdims=True)
        out[start : start + m] = block
    return out


def real_queries(base: np.ndarray, metadata: Any, eps: float, n_text: int, n_struct: int,
                 rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Text and structure queries from real data; returns (queries, kind per query)."""
    from matminer_clasp.model.registry import get_text_model
    from matminer_clasp.train.keywords import DEFAULT_KEYWORDS

    concepts = list(DEFAULT_KEYWORDS)
    titles = metadata["title"].dropna().astype(str).unique().tolist()
    minerals = metadata["mineral"].dropna().astype(str).unique().tolist()
    pool = list(dict.fromkeys(concepts + rng.permutation(minerals).tolist()[: n_text // 3]
                              + rng.permutation(titles).tolist()))[:n_text]
    text = get_text_model().encode_texts(pool, batch_size=64).astype(np.float32)
    rows = base[rng.integers(len(base), size=n_struct)]
    rows = rows + rng.standard_normal(rows.shape, dtype=np.float32) * np.float32(eps / np.sqrt(DIM))
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    order = rng.permutation(len(text) + n_struct)
    queries = np.concatenate([text, rows])[order].astype(np.float32)
    kinds = np.array(["text"] * len(text) + ["structure"] * n_struct)[order]
    return np.ascontiguousarray(queries), kinds


def exact_topk_batched(corpus: np.ndarray, queries: np.ndarray, k: int,
                       chunk: int = 65536) -> np.ndarray:
    """Ground-truth top-k row ids for many queries at once (chunked matrix product)."""
    best_s = np.full((len(queries), 0), -np.inf, np.float32)
    best_p = np.empty((len(queries), 0), np.int64)
    for start in range(0, len(corpus), chunk):
        sims = queries @ corpus[start : start + chunk].T
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        best_s = np.concatenate([best_s, np.take_along_axis(sims, part, 1)], axis=1)
        best_p = np.concatenate([best_p, part + start], axis=1)
        order = np.argsort(-best_s, axis=1, kind="stable")[:, :k]
        best_s = np.take_along_axis(best_s, order, 1)
        best_p = np.take_along_axis(best_p, order, 1)
    return best_p


# ---------------------------------------------------------------------- timing
def latencies(search: Any, queries: np.ndarray, warmup: int = 3) -> tuple[dict[str, float], list]:
    """Time ``search(q)`` per query (shape (1, dim)); return p50/p99/mean in ms and the results."""
    for i in range(min(warmup, len(queries))):
        search(queries[i : i + 1])
    times, results = [], []
    for i in range(len(queries)):
        t0 = time.perf_counter()
        res = search(queries[i : i + 1])
        times.append((time.perf_counter() - t0) * 1000)
        results.append(res)
    times_sorted = sorted(times)
    p99 = times_sorted[min(len(times) - 1, int(np.ceil(0.99 * len(times))) - 1)]
    return {"p50_ms": statistics.median(times), "p99_ms": p99, "mean_ms": statistics.fmean(times),
            "n_queries": len(times)}, results


def latencies_interleaved(methods: dict[str, Any], queries: np.ndarray,
                          warmup: int = 3) -> dict[str, tuple[dict[str, float], list]]:
    """Like :func:`latencies` for several methods, taking turns query by query.

    On a shared machine the load drifts over a run; interleaving gives every method the same
    share of the quiet and the busy moments, so their ratios are fair.
    """
    for i in range(min(warmup, len(queries))):
        for fn in methods.values():
            fn(queries[i : i + 1])
    times: dict[str, list[float]] = {name: [] for name in methods}
    results: dict[str, list] = {name: [] for name in methods}
    for i in range(len(queries)):
        for name, fn in methods.items():
            t0 = time.perf_counter()
            res = fn(queries[i : i + 1])
            times[name].append((time.perf_counter() - t0) * 1000)
            results[name].append(res)
    out = {}
    for name in methods:
        ts = sorted(times[name])
        p99 = ts[min(len(ts) - 1, int(np.ceil(0.99 * len(ts))) - 1)]
        out[name] = ({"p50_ms": statistics.median(ts), "p99_ms": p99,
                      "mean_ms": statistics.fmean(ts), "n_queries": len(ts)}, results[name])
    return out


def recall_at_k(found: list[np.ndarray], truth: np.ndarray) -> float:
    """Mean |found_i ∩ truth_i| / k."""
    hits = [len(set(np.asarray(f).ravel().tolist()) & set(t.tolist()))
            for f, t in zip(found, truth)]
    return float(np.mean(hits) / truth.shape[1])


# ---------------------------------------------------------------------- driver
def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", choices=("real", "synthetic"), default="real",
                        help="real AMCSD embeddings grown by augmentation, or synthetic clusters")
    parser.add_argument("--n", type=int, default=1_000_000, help="corpus size")
    parser.add_argument("--clusters", type=int, default=2000, help="synthetic corpus only")
    parser.add_argument("--exact-queries", type=int, default=50,
                        help="queries timed for each exact method (each reads the whole corpus)")
    parser.add_argument("--approx-queries", type=int, default=500,
                        help="queries timed for the approximate faiss index (and for recall)")
    parser.add_argument("--nlist", type=int, nargs="*", default=[1024, 4096],
                        help="IVF list counts to build (4096 ~ the library's default at 1M)")
    parser.add_argument("--nprobe", type=int, nargs="*", default=[8, 16, 32, 64])
    parser.add_argument("--hnsw", action="store_true",
                        help="also build an HNSW index (slow to build at 1M on 2 cores)")
    parser.add_argument("--build-threads", type=int, default=2,
                        help="faiss threads while *building* indexes (queries use 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None,
                        help="default: results/screen.json (real) or screen_synthetic.json")
    args = parser.parse_args(argv)

    import faiss
    from threadpoolctl import threadpool_limits

    from matminer_clasp.index import EmbeddingIndex

    info = machine_info()
    load_before = print_load("load average before")
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    extra: dict[str, Any] = {}
    if args.corpus == "real":
        base, metadata = amcsd_embeddings()
        nbr, cos1 = real_neighbours(base)
        eps = noise_scale(cos1)
        corpus = augment_real(base, nbr, eps, args.n, rng)
        q_exact, _ = real_queries(base, metadata, eps, args.exact_queries // 2,
                                  args.exact_queries - args.exact_queries // 2, rng)
        q_approx, q_kinds = real_queries(base, metadata, eps, args.approx_queries // 2,
                                         args.approx_queries - args.approx_queries // 2, rng)
        extra = {"n_real": len(base), "median_real_nn_cosine": cos1, "noise_norm": eps}
        what = (f"{len(base):,} real AMCSD embeddings grown by augmentation "
                f"(median real nearest-neighbour cosine {cos1:.3f})")
    else:
        centres = make_centres(args.clusters, rng)
        weights = rng.lognormal(0.0, 1.0, size=args.clusters)
        weights /= weights.sum()
        corpus = draw(centres, weights, args.n, rng)
        q_exact = draw(centres, weights, args.exact_queries, rng)
        q_approx = draw(centres, weights, args.approx_queries, rng)
        q_kinds = np.array(["synthetic"] * len(q_approx))
        what = f"{args.clusters} synthetic clusters"
    print(f"corpus {args.n:,} x {DIM} fp32 ({corpus.nbytes / 1e9:.2f} GB), {what}, made in "
          f"{time.perf_counter() - t0:.1f} s; RSS {fmt_bytes(current_rss())}", flush=True)
    cos_nn = None
    results: dict[str, Any] = {}

    def report(name: str, stats: dict[str, float], **extra: Any) -> None:
        stats = {**stats, **extra, "rss_bytes": current_rss()}
        results[name] = stats
        more = "".join(f"  {k}={v:.3f}" if isinstance(v, float) else f"  {k}={v}"
                       for k, v in extra.items())
        print(f"{name:34s} p50 {stats['p50_ms']:8.2f} ms  p99 {stats['p99_ms']:8.2f} ms{more}",
              flush=True)

    with threadpool_limits(limits=1):
        faiss.omp_set_num_threads(1)

        # -- baselines: plain numpy on the fp32 array
        def gemv(q: np.ndarray) -> np.ndarray:
            return corpus @ q[0]

        def brute(q: np.ndarray) -> np.ndarray:
            s = corpus @ q[0]
            part = np.argpartition(-s, TOP_K - 1)[:TOP_K]
            return part[np.argsort(-s[part], kind="stable")]

        # -- exact methods, interleaved query by query: the numpy baselines, EmbeddingIndex
        # on the same fp32 array (no copy) and on an fp16 copy (1.5 GB, freed afterwards)
        index = EmbeddingIndex(corpus, dtype="float32", _normalized=True)
        index16 = EmbeddingIndex(corpus.astype(np.float16), dtype="float16", _normalized=True)
        exact = latencies_interleaved({
            "numpy_gemv_only_fp32": gemv,
            "numpy_bruteforce_fp32": brute,
            "EmbeddingIndex_exact_fp32.topk": lambda q: index.topk(q, TOP_K)[1][0],
            "EmbeddingIndex_exact_fp32.search":
                lambda q: index.search(q, TOP_K)["id"].to_numpy(),
            "EmbeddingIndex_exact_fp16.topk": lambda q, ix=index16: ix.topk(q, TOP_K)[1][0],
        }, q_exact)
        truth_exact = np.stack(exact["numpy_bruteforce_fp32"][1])
        for name, (stats, res) in exact.items():
            if name == "numpy_gemv_only_fp32":
                report(name, stats)
            else:
                report(name, stats, recall_at_10=recall_at_k(res, truth_exact))
        del index16, exact
        gc.collect()

        # -- ground truth for the approximate queries (one batched pass)
        t1 = time.perf_counter()
        with threadpool_limits(limits=args.build_threads):
            truth = exact_topk_batched(corpus, q_approx, TOP_K)
        nn_cos = np.sum(corpus[truth[:, 0]] * q_approx, axis=1)
        cos_nn = {str(kind): float(np.mean(nn_cos[q_kinds == kind]))
                  for kind in np.unique(q_kinds)}
        print(f"ground truth for {len(q_approx)} queries in {time.perf_counter() - t1:.1f} s "
              f"(mean cosine to the nearest neighbour, by query kind: {cos_nn})", flush=True)

        # -- faiss indexes through EmbeddingIndex, one at a time
        kinds: list[tuple[str, dict[str, Any], list[dict[str, Any]]]] = [
            ("flat", {}, [{}]),
            *[("ivf", {"nlist": nl}, [{"nprobe": p} for p in args.nprobe]) for nl in args.nlist],
        ]
        if args.hnsw:
            kinds.append(("hnsw", {"hnsw_m": 32, "ef_construction": 80},
                          [{"ef_search": e} for e in (32, 64, 128)]))
        for kind, build_opts, search_opts in kinds:
            t1 = time.perf_counter()
            faiss.omp_set_num_threads(args.build_threads)
            index.topk(q_approx[:1], TOP_K, backend="faiss", faiss_index=kind, **build_opts)
            faiss.omp_set_num_threads(1)
            build_s = time.perf_counter() - t1
            print(f"faiss {kind} built in {build_s:.1f} s with {args.build_threads} threads; "
                  f"RSS {fmt_bytes(current_rss())}", flush=True)
            queries = q_exact if kind == "flat" else q_approx
            gt = truth_exact if kind == "flat" else truth
            for opts in search_opts:
                def search(q: np.ndarray, opts: dict = opts, kind: str = kind,
                           build_opts: dict = build_opts) -> np.ndarray:
                    return index.topk(q, TOP_K, backend="faiss", faiss_index=kind,
                                      **build_opts, **opts)[1][0]

                stats, res = latencies(search, queries)
                label = f"faiss_{kind}" + "".join(
                    f"_{k}{v}" for k, v in {**build_opts, **opts}.items()
                    if k not in ("hnsw_m", "ef_construction"))
                by_kind = {} if kind == "flat" else {
                    f"recall_at_10_{qk}": recall_at_k([r for r, m in zip(res, q_kinds == qk) if m],
                                                      gt[q_kinds == qk])
                    for qk in np.unique(q_kinds) if len(np.unique(q_kinds)) > 1}
                report(label, stats, recall_at_10=recall_at_k(res, gt), **by_kind,
                       build_s=build_s)
            index._faiss_cache.clear()
            gc.collect()

    base = results["numpy_bruteforce_fp32"]["p50_ms"]
    ratios = {f"{name} / numpy_bruteforce_fp32 (p50)": r["p50_ms"] / base
              for name, r in results.items() if name != "numpy_bruteforce_fp32"}
    print("\nratios of p50 latency against numpy brute force (emb @ q + argpartition):")
    for key, value in ratios.items():
        print(f"  {key:70s} {value:7.3f}")
    approx = [(name, r) for name, r in results.items()
              if name.startswith(("faiss_ivf", "faiss_hnsw"))]
    good = [(name, r) for name, r in approx if r["p50_ms"] < 10 and min(
        v for key, v in r.items() if key.startswith("recall_at_10")) >= 0.95]
    best = min(good, key=lambda x: x[1]["p50_ms"]) if good else None
    targets = {
        "approximate index < 10 ms with recall@10 >= 0.95 (every query kind)": best is not None,
        "best approximate setting": best[0] if best else None,
        "EmbeddingIndex exact fp32 within 1.5x of numpy brute force":
            results["EmbeddingIndex_exact_fp32.topk"]["p50_ms"] <= 1.5 * base,
        "EmbeddingIndex exact fp16 within 1.5x of numpy brute force":
            results["EmbeddingIndex_exact_fp16.topk"]["p50_ms"] <= 1.5 * base,
    }
    print("targets:", targets)
    load_after = print_load("load average after")
    payload = {"machine": info, "load_avg_before": load_before, "load_avg_after": load_after,
               "corpus": args.corpus, "n": args.n, "dim": DIM, "top_k": TOP_K,
               **({"clusters": args.clusters} if args.corpus == "synthetic" else extra),
               "mean_cosine_query_to_nn": cos_nn, "results": results, "ratios": ratios,
               "targets": targets}
    out = args.out or RESULTS / ("screen.json" if args.corpus == "real" else
                                 "screen_synthetic.json")
    write_json(out, payload)
    return payload


if __name__ == "__main__":
    main()
