"""Annoy tuned vs HNSW (hnswlib, usearch) on the synthetic sets: can anything reach recall@10 0.95 in 10 ms?

Plain libraries from numpy (not the daemon's path): the question is which index kind can
reach ``index.target_recall`` within ``index.search_budget_ms`` at all, and what its build
costs on this machine, before one is wired into the daemon. For each engine: build time
(``--threads`` build threads), then a sweep of its search effort (Annoy ``search_k``,
HNSW ``ef``) doubling until recall@10 reaches ``--stop-recall`` or p50 passes
``--stop-ms``; queries one at a time from one thread, held-out vectors drawn like the
indexed ones, ground truth with numpy.

    .venv/bin/python bench/bench_ann.py --sizes 100000 --dataset broad
    .venv/bin/python bench/bench_ann.py --sizes 1000000 --dataset broad --annoy-trees 10 50

At 1M: about 6 GB of memory and 3 GB of temporary disk, 20-40 minutes on 2 cores.
Prints markdown tables; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from bench_index import OtherLoad, ground_truth, make_data, say  # noqa: E402

DIM = 512
Search = Callable[[np.ndarray], Any]


def sweep(
    name: str, search_for: Callable[[int], Search], efforts: list[int], queries: np.ndarray, truth: np.ndarray, args
) -> list[tuple[int, float, float, float]]:
    """(effort, p50 ms, p95 ms, recall@10) per effort, stopping at the recall or latency bound."""
    rows = []
    for effort in efforts:
        search = search_for(effort)
        for q in queries[:20]:  # warm-up
            search(q)
        lat, hits = [], 0
        for q, t in zip(queries, truth):
            t0 = time.perf_counter()
            found = search(q)
            lat.append(time.perf_counter() - t0)
            hits += len(set(np.asarray(found).tolist()) & set(t.tolist()))
        p50, p95 = float(np.percentile(lat, 50)) * 1e3, float(np.percentile(lat, 95)) * 1e3
        rec = hits / (10 * len(queries))
        rows.append((effort, p50, p95, rec))
        say(f"  {name} effort {effort}: p50 {p50:.2f} ms p95 {p95:.2f} ms recall@10 {rec:.3f}")
        if rec >= args.stop_recall or p50 >= args.stop_ms:
            break
    return rows


def run_annoy(trees: int, vectors: np.ndarray, queries, truth, args, work: Path) -> dict:
    from annoy import AnnoyIndex

    t0 = time.monotonic()
    index = AnnoyIndex(DIM, "angular")
    path = work / f"annoy-{trees}.ann"
    index.on_disk_build(str(path))
    for i, row in enumerate(vectors):
        index.add_item(i, row.tolist())
    add_s = time.monotonic() - t0
    index.build(trees, n_jobs=args.threads)
    build_s = time.monotonic() - t0
    size_mb = path.stat().st_size / 2**20
    say(f"annoy {trees} trees: built in {build_s:.0f} s (add {add_s:.0f} s), {size_mb:.0f} MiB")
    efforts = [1000 * 2**i for i in range(12)]
    rows = sweep(
        f"annoy-{trees}",
        lambda sk: lambda q: index.get_nns_by_vector(q.tolist(), 10, sk),
        efforts,
        queries,
        truth,
        args,
    )
    index.unload()
    path.unlink()
    return dict(engine=f"Annoy, {trees} trees", param="search_k", build_s=build_s, size_mb=size_mb, rows=rows)


def run_hnswlib(vectors: np.ndarray, queries, truth, args) -> dict:
    import hnswlib

    t0 = time.monotonic()
    index = hnswlib.Index(space="ip", dim=DIM)  # unit vectors: inner product = cosine
    index.init_index(max_elements=len(vectors), ef_construction=args.ef_construction, M=args.m)
    index.set_num_threads(args.threads)
    for lo in range(0, len(vectors), 50_000):
        index.add_items(vectors[lo : lo + 50_000], np.arange(lo, min(lo + 50_000, len(vectors))))
    build_s = time.monotonic() - t0
    index.set_num_threads(1)
    size_mb = index.index_file_size() / 2**20
    say(f"hnswlib M {args.m} ef_construction {args.ef_construction}: built in {build_s:.0f} s, {size_mb:.0f} MiB")

    def search_for(ef: int) -> Search:
        index.set_ef(max(ef, 10))
        return lambda q: index.knn_query(q, k=10)[0][0]

    rows = sweep("hnswlib", search_for, [16 * 2**i for i in range(9)], queries, truth, args)
    return dict(
        engine=f"hnswlib, M {args.m}, ef_construction {args.ef_construction}",
        param="ef",
        build_s=build_s,
        size_mb=size_mb,
        rows=rows,
    )


def run_usearch(vectors: np.ndarray, queries, truth, args, dtype: str) -> dict:
    from usearch.index import Index

    t0 = time.monotonic()
    index = Index(
        ndim=DIM, metric="ip", dtype=dtype, connectivity=args.m, expansion_add=args.ef_construction, multi=False
    )
    for lo in range(0, len(vectors), 50_000):
        keys = np.arange(lo, min(lo + 50_000, len(vectors)), dtype=np.uint64)
        index.add(keys, vectors[lo : lo + 50_000], threads=args.threads)
    build_s = time.monotonic() - t0
    size_mb = index.memory_usage / 2**20
    say(
        f"usearch {dtype} M {args.m} ef_construction {args.ef_construction}: built in {build_s:.0f} s, {size_mb:.0f} MiB"
    )

    def search_for(ef: int) -> Search:
        settable: Any = index  # expansion_search is settable (usearch 2.26), not in its stubs
        settable.expansion_search = ef
        return lambda q: index.search(q, 10, threads=1).keys

    rows = sweep(f"usearch-{dtype}", search_for, [16 * 2**i for i in range(9)], queries, truth, args)
    return dict(
        engine=f"usearch {dtype}, M {args.m}, ef_construction {args.ef_construction}",
        param="ef",
        build_s=build_s,
        size_mb=size_mb,
        rows=rows,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--dataset", choices=["photo", "broad"], default="broad")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--engines", nargs="+", default=["annoy", "hnswlib", "usearch-f16"])
    parser.add_argument("--annoy-trees", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--m", type=int, default=16, help="HNSW links per node")
    parser.add_argument("--ef-construction", type=int, default=100)
    parser.add_argument("--threads", type=int, default=2, help="build threads")
    parser.add_argument("--stop-recall", type=float, default=0.99)
    parser.add_argument("--stop-ms", type=float, default=15.0)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-ann-"))
    results = []
    try:
        for n in args.sizes:
            load = OtherLoad()
            say(f"== {n} vectors ({args.dataset})")
            data = make_data(args.dataset, n + args.queries, seed=n)
            vectors, queries = data[:n], data[n:].copy()
            truth = ground_truth(vectors, np.arange(n), queries)
            for engine in args.engines:
                if engine == "annoy":
                    for trees in args.annoy_trees:
                        results.append((n, run_annoy(trees, vectors, queries, truth, args, work)))
                elif engine == "hnswlib" and importlib.util.find_spec("hnswlib"):
                    results.append((n, run_hnswlib(vectors, queries, truth, args)))
                elif engine.startswith("usearch") and importlib.util.find_spec("usearch"):
                    results.append((n, run_usearch(vectors, queries, truth, args, engine.split("-")[1])))
                gc.collect()
            say(f"other processes used {load.cores():.2f} cores on average")
            del data, vectors
            gc.collect()
    finally:
        shutil.rmtree(work, ignore_errors=True)

    print(
        f"\nDataset `{args.dataset}`, {DIM}-d, {args.queries} held-out queries, limit 10, {args.threads} build threads.\n"
    )
    print("| vectors | engine | build (s) | size (MiB) | effort: p50 / p95 ms, recall@10 |")
    print("|---:|---|---:|---:|---|")
    for n, r in results:
        cells = "; ".join(f"{r['param']} {e}: {p50:.2f} / {p95:.2f}, {rc:.3f}" for e, p50, p95, rc in r["rows"])
        print(f"| {n:,} | {r['engine']} | {r['build_s']:.0f} | {r['size_mb']:.0f} | {cells} |")


if __name__ == "__main__":
    main()
