"""Benchmark of imgsearchd.search.index: Annoy snapshot vs exact numpy search, through the real path.

Every size goes through the real path: vectors are recorded in a SQLite catalogue with
``Catalog.record_batch``, the snapshot is built by ``ExtractorIndex`` (builder process
reading the catalogue), and queries go through ``ExtractorIndex.query``. Ground truth and
the brute-force baseline use the same vectors in numpy.

    .venv/bin/python bench/bench_index.py --sizes 100000 1000000
    .venv/bin/python bench/bench_index.py --sizes 100000 --dataset broad --no-threshold

Takes about 12 minutes for the first command on a 2-core VM (most of it at 1M: catalogue fill,
two builds, brute force); needs about 8 GB of memory and 6 GB of temporary disk at 1M.
Prints markdown tables (progress goes to stderr). Synthetic data: ``photo_like`` (topics ->
events -> photos) by default, ``broad`` for the hard case; queries are held-out vectors
drawn like the indexed ones.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from imgsearchd.search.index import DEFAULT_SEARCH_K, DEFAULT_TREES, EXACT_BELOW, ExtractorIndex  # noqa: E402
from imgsearchd.search.parts import exact_top  # noqa: E402
from imgsearchd.store.catalog import Catalog  # noqa: E402
from imgsearchd.store.rows import FileResult  # noqa: E402

from index_helpers import EXTRACTOR, MODEL, broad_clusters, path_of, photo_like  # noqa: E402

DIM = 512
QUIET = dict(rebuild_after_changes=10**9, rebuild_after_seconds=10**6)  # the bench starts rebuilds itself


def say(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def rss_mb() -> dict[str, float]:
    """VmRSS and its anonymous / file-backed parts, in MiB."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                out[key] = int(value.split()[0]) / 1024
    return out


class OtherLoad:
    """CPU used by other processes on this machine meanwhile, in cores (the VM is shared)."""

    def __init__(self) -> None:
        self.start = (self._busy(), self._ours(), time.monotonic())

    @staticmethod
    def _busy() -> float:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait

    @staticmethod
    def _ours() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def cores(self) -> float:
        busy, ours, wall = self._busy(), self._ours(), time.monotonic()
        return max(0.0, (busy - self.start[0]) - (ours - self.start[1])) / (wall - self.start[2])


def pct(values: list[float], p: float) -> float:
    return float(np.percentile(values, p)) * 1e3


def make_data(kind: str, n: int, seed: int) -> np.ndarray:
    return (photo_like if kind == "photo" else broad_clusters)(n, DIM, seed=seed)


def fill_catalog(catalog: Catalog, vectors: np.ndarray) -> np.ndarray:
    """Record one fake file per vector through the real write path; return the file ids in order."""
    for lo in range(0, len(vectors), 5000):
        catalog.record_batch(
            FileResult(
                path=path_of(k),
                size=1000 + k,
                mtime_ns=k,
                content_hash=f"hash-{k}",
                vectors={EXTRACTOR: (MODEL, vectors[k])},
            )
            for k in range(lo, min(lo + 5000, len(vectors)))
        )
    _, ids, _ = catalog.all_vectors(EXTRACTOR, MODEL, DIM)  # a fresh catalogue numbers files in order
    assert len(ids) == len(vectors)
    return ids


def ground_truth(vectors: np.ndarray, ids: np.ndarray, queries: np.ndarray, k: int = 10) -> np.ndarray:
    out = []
    for lo in range(0, len(queries), 100):
        scores = queries[lo : lo + 100] @ vectors.T
        part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        out.append(ids[part])
    return np.concatenate(out)


def brute_force(vectors: np.ndarray, queries: np.ndarray, rounds: int) -> dict[str, float]:
    """Latency of exact search over all vectors: einsum (what the index's exact mode does) and BLAS matmul."""
    res = {}
    ids = np.arange(len(vectors))
    for name, run in (
        ("einsum", lambda q: exact_top(vectors, ids, q, 10)),
        ("matmul", lambda q: np.argpartition(-(vectors @ q), 9)[:10]),
    ):
        lat = []
        for q in queries[:rounds]:
            t = time.perf_counter()
            run(q)
            lat.append(time.perf_counter() - t)
        res[name + "_p50"], res[name + "_p99"] = pct(lat, 50), pct(lat, 99)
    return res


def run_queries(index: ExtractorIndex, queries: np.ndarray) -> tuple[list[float], list[list[int]]]:
    lat, found = [], []
    for q in queries:
        t = time.perf_counter()
        hits = index.query(q, 10)
        lat.append(time.perf_counter() - t)
        found.append([h.id for h in hits])
    return lat, found


def paced_queries(index: ExtractorIndex, queries: np.ndarray, rate: float, go_on, lat: list[float]) -> list[float]:
    """Query at ``rate`` per second while ``go_on()``; return the latencies."""
    period, next_at, i = 1.0 / rate, time.monotonic(), 0
    while go_on():
        q = queries[i % len(queries)]
        t = time.perf_counter()
        index.query(q, 10)
        lat.append(time.perf_counter() - t)
        i += 1
        next_at += period
        time.sleep(max(0.0, next_at - time.monotonic()))
    return lat


def recall(found: list[list[int]], truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t.tolist())) / 10 for f, t in zip(found, truth)]))


def bench_size(n: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    say(f"== {n} vectors ({args.dataset})")
    load = OtherLoad()
    data = make_data(args.dataset, n + args.queries, seed=n)
    vectors, queries = data[:n], data[n:].copy()  # a copy, so that del frees the vectors
    catalog = Catalog(work / f"catalog-{n}.db")
    t = time.monotonic()
    ids = fill_catalog(catalog, vectors)
    fill_s = time.monotonic() - t
    say(f"catalogue filled in {fill_s:.1f} s")
    truth = ground_truth(vectors, ids, queries)
    brute = brute_force(vectors, queries, args.brute_queries)
    say(f"brute force p50 einsum {brute['einsum_p50']:.1f} ms, matmul {brute['matmul_p50']:.1f} ms")
    del vectors, data
    gc.collect()

    directory = work / f"index-{n}" / EXTRACTOR
    settings = dict(kind="annoy", trees=args.trees, search_k=args.search_k, exact_below=0, **QUIET)  # issue 3: Annoy
    index = ExtractorIndex(catalog, directory, EXTRACTOR, MODEL, DIM, **settings)
    t = time.monotonic()
    index.open()
    index.wait_idle()
    first_build = time.monotonic() - t
    stats = index.stats()
    assert stats["mode"] == "annoy", stats
    meta = index._state.base.meta
    index.close()
    gc.collect()
    say(f"first build {first_build:.1f} s (snapshot build {stats['last_build_seconds']:.1f} s)")

    rss_before = rss_mb()
    index = ExtractorIndex(catalog, directory, EXTRACTOR, MODEL, DIM, **settings)
    t = time.monotonic()
    index.open()
    startup = time.monotonic() - t
    run_queries(index, queries[:50])  # warm-up
    lat, found = run_queries(index, queries)
    rss_after = rss_mb()
    idle_p50, idle_p99 = pct(lat, 50), pct(lat, 99)
    rec = recall(found, truth)
    say(f"restart {startup:.1f} s; query p50 {idle_p50:.2f} ms p99 {idle_p99:.2f} ms recall {rec:.3f}")

    # searches at a steady rate, first with nothing else going on, then while a rebuild runs
    paced_idle: list[float] = []
    paced_queries(index, queries, args.rate, lambda: len(paced_idle) < 1000, paced_idle)
    index.rebuild(wait=False)
    t = time.monotonic()
    during = paced_queries(index, queries, args.rate, lambda: not index.wait_idle(0), [])
    rebuild_s = time.monotonic() - t
    idle_rate_p99 = pct(paced_idle, 99)
    busy_p50, busy_p99 = pct(during, 50), pct(during, 99)
    say(
        f"rebuild under {args.rate} queries/s took {rebuild_s:.1f} s; p50 {busy_p50:.2f} ms p99 {busy_p99:.2f} ms "
        f"over {len(during)} queries (idle at that rate: p99 {idle_rate_p99:.2f} ms)"
    )
    index.close()

    sweep = []
    for sk in args.sweep:
        idx = ExtractorIndex(
            catalog, directory, EXTRACTOR, MODEL, DIM, kind="annoy", trees=args.trees, search_k=sk, **QUIET
        )
        idx.open()
        run_queries(idx, queries[:50])
        lat_s, found_s = run_queries(idx, queries)
        sweep.append((sk, pct(lat_s, 50), pct(lat_s, 99), recall(found_s, truth)))
        idx.close()
        say(f"search_k {sk}: p50 {sweep[-1][1]:.2f} ms recall {sweep[-1][3]:.3f}")
    catalog.close()
    other = load.cores()
    say(f"other processes used {other:.2f} cores on average")
    return dict(
        n=n,
        other=other,
        fill_s=fill_s,
        brute=brute,
        first_build=first_build,
        build_s=stats["last_build_seconds"],
        snapshot_build_s=meta["build_seconds"],
        file_mb=(meta["file_size"] + meta["ids_size"]) / 2**20,
        startup=startup,
        idle_p50=idle_p50,
        idle_p99=idle_p99,
        recall=rec,
        rss_before=rss_before,
        rss_after=rss_after,
        busy_p50=busy_p50,
        busy_p99=busy_p99,
        idle_rate_p99=idle_rate_p99,
        busy_n=len(during),
        rebuild_s=rebuild_s,
        sweep=sweep,
    )


def bench_threshold(sizes: list[int], args: argparse.Namespace, work: Path) -> list[tuple]:
    """Exact numpy vs Annoy at small sizes, both through ExtractorIndex.query."""
    rows = []
    for n in sizes:
        data = make_data(args.dataset, n + args.queries, seed=7 + n)
        vectors, queries = data[:n], data[n:]
        catalog = Catalog(work / f"threshold-{n}.db")
        ids = fill_catalog(catalog, vectors)
        truth = ground_truth(vectors, ids, queries)
        row: list[float] = [n]
        for exact_below in (n + 1, 0):
            index = ExtractorIndex(
                catalog,
                work / f"threshold-{n}-{exact_below}",
                EXTRACTOR,
                MODEL,
                DIM,
                kind="annoy",
                trees=args.trees,
                search_k=args.search_k,
                exact_below=exact_below,
                **QUIET,
            )
            t = time.monotonic()
            index.open()
            index.wait_idle()
            ready = time.monotonic() - t
            run_queries(index, queries[:50])
            lat, found = run_queries(index, queries)
            row += [pct(lat, 50), pct(lat, 99), recall(found, truth), ready]
            index.close()
        catalog.close()
        rows.append(tuple(row))
        say(f"threshold {n}: exact p50 {row[1]:.3f} ms, annoy p50 {row[5]:.3f} ms (recall {row[7]:.3f})")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--dataset", choices=["photo", "broad"], default="photo")
    parser.add_argument("--queries", type=int, default=1000, help="held-out queries per size")
    parser.add_argument("--brute-queries", type=int, default=30, help="queries timed for brute force")
    parser.add_argument("--trees", type=int, default=DEFAULT_TREES)
    parser.add_argument("--rate", type=float, default=100.0, help="queries per second during the rebuild test")
    parser.add_argument("--search-k", type=int, default=DEFAULT_SEARCH_K)
    parser.add_argument("--sweep", type=int, nargs="*", default=[1000, 2000, 5000, 10000, 20000])
    parser.add_argument("--threshold-sizes", type=int, nargs="*", default=[1000, 2000, 5000, 7500, 10000, 20000, 50000])
    parser.add_argument("--no-threshold", action="store_true")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder, removed after")
    args = parser.parse_args()

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-index-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        results = [bench_size(n, args, work) for n in args.sizes]
        threshold = [] if args.no_threshold else bench_threshold(args.threshold_sizes, args, work)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)

    print(
        f"\nDataset `{args.dataset}`, {DIM}-d, {args.queries} held-out queries, limit 10, "
        f"trees {args.trees}, search_k {args.search_k}, one query thread "
        f"(back to back, except during the rebuild test: {args.rate:.0f} queries/s).\n"
    )
    print(
        "| vectors | index p50 / p99 (ms) | recall@10 | brute force p50 / p99 (ms) | speed-up (p50) "
        "| build (s) | index files (MiB) | restart (s) | RSS serving (MiB) | p50 / p99 during rebuild (ms) "
        "| p99 during / idle at that rate |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        b, ra, rb = r["brute"], r["rss_after"], r["rss_before"]
        print(
            f"| {r['n']:,} | {r['idle_p50']:.2f} / {r['idle_p99']:.2f} | {r['recall']:.3f} "
            f"| {b['einsum_p50']:.1f} / {b['einsum_p99']:.1f} | {b['einsum_p50'] / r['idle_p50']:.0f}x "
            f"| {r['build_s']:.1f} | {r['file_mb']:.0f} | {r['startup']:.1f} "
            f"| {ra['VmRSS']:.0f} (anon {ra['RssAnon']:.0f}, file {ra['RssFile']:.0f}; before open {rb['VmRSS']:.0f}) "
            f"| {r['busy_p50']:.2f} / {r['busy_p99']:.2f} | {r['busy_p99']:.2f} / {r['idle_rate_p99']:.2f} = "
            f"{r['busy_p99'] / r['idle_rate_p99']:.1f}x |"
        )
    print("\nDetails:\n")
    for r in results:
        b = r["brute"]
        print(
            f"- {r['n']:,}: catalogue fill {r['fill_s']:.0f} s; first open to Annoy ready {r['first_build']:.0f} s; "
            f"builder process (catalogue read + add + build + fsync + CRC) {r['snapshot_build_s']:.0f} s; "
            f"rebuild under {args.rate:.0f} queries/s {r['rebuild_s']:.0f} s ({r['busy_n']} queries); "
            f"brute force with BLAS matmul p50 {b['matmul_p50']:.1f} / p99 {b['matmul_p99']:.1f} ms; "
            f"other processes on the VM used {r['other']:.2f} of {os.cpu_count()} cores on average"
        )
    print("\nsearch_k sweep (same snapshot; p50 / p99 ms, recall@10):\n")
    print("| vectors | " + " | ".join(f"search_k {sk}" for sk, *_ in results[0]["sweep"]) + " |")
    print("|---:|" + "---:|" * len(results[0]["sweep"]))
    for r in results:
        print(
            f"| {r['n']:,} | " + " | ".join(f"{p50:.2f} / {p99:.2f}, {rc:.3f}" for _, p50, p99, rc in r["sweep"]) + " |"
        )
    if threshold:
        print(
            "\nExact-search threshold (both through ExtractorIndex.query; p50 / p99 ms, recall@10, "
            "seconds from open to ready):\n"
        )
        print("| vectors | exact | annoy | annoy recall@10 | annoy ready (s) |")
        print("|---:|---:|---:|---:|---:|")
        for n, e50, e99, _, _, a50, a99, arec, aready in threshold:
            print(f"| {n:,} | {e50:.3f} / {e99:.3f} | {a50:.3f} / {a99:.3f} | {arec:.3f} | {aready:.1f} |")
        not_slower = [row[0] for row in threshold if row[1] <= row[5]]
        under_1ms = [row[0] for row in threshold if row[1] <= 1.0]
        print(
            f"\nLargest size where exact p50 <= Annoy p50: {max(not_slower, default='none')}; "
            f"where exact p50 <= 1 ms: {max(under_1ms, default='none')} (EXACT_BELOW is {EXACT_BELOW})."
        )


if __name__ == "__main__":
    main()
