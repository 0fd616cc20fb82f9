"""Benchmark of measured recall (issue 12): what the builder measures and chooses, checked from outside.

Through the real path with the default settings (``trees`` and ``search_k`` "auto",
``target_recall`` 0.95, ``search_budget_ms`` 10): vectors recorded in a SQLite catalogue,
the snapshot built by ``ExtractorIndex`` (the builder process measures recall@10 on a
sample of stored vectors and picks ``search_k``), then held-out queries drawn like the
indexed ones go through ``ExtractorIndex.query`` and are scored against numpy's exact top
10. The naive way side by side: the old fixed ``search_k`` 5000 on the same snapshot.
With ``--rebuilds N`` the index is rebuilt N more times, so a miss shows the trees it raises.

    .venv/bin/python bench/bench_recall.py --sizes 100000 --datasets photo broad
    .venv/bin/python bench/bench_recall.py --sizes 1000000 --datasets broad --rebuilds 0

At 1M: about 8 GB of memory, 12-15 minutes per data set on 2 cores. Prints a markdown
table; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from bench_index import DIM, OtherLoad, fill_catalog, ground_truth, make_data, pct, recall, run_queries, say  # noqa: E402
from imgsearchd.catalog import Catalog  # noqa: E402
from imgsearchd.index import ExtractorIndex  # noqa: E402
from imgsearchd.index_parts import UNMEASURED_SEARCH_K  # noqa: E402

from index_helpers import EXTRACTOR, MODEL  # noqa: E402

QUIET = dict(rebuild_after_changes=10**9, rebuild_after_seconds=10**6)  # the bench starts rebuilds itself


def served(index: ExtractorIndex, queries, truth) -> tuple[float, float, float]:
    """(recall@10, p50 ms, p95 ms) of held-out queries through ``ExtractorIndex.query``."""
    run_queries(index, queries[:30])  # warm-up
    lat, found = run_queries(index, queries)
    return recall(found, truth), pct(lat, 50), pct(lat, 95)


def one(kind: str, n: int, args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    say(f"== {n} vectors ({kind})")
    load = OtherLoad()
    data = make_data(kind, n + args.queries, seed=n)
    vectors, queries = data[:n], data[n:].copy()
    catalog = Catalog(work / f"catalog-{kind}-{n}.db")
    ids = fill_catalog(catalog, vectors)
    truth = ground_truth(vectors, ids, queries)
    del vectors, data
    gc.collect()
    directory = work / f"index-{kind}-{n}" / EXTRACTOR
    rows = []
    index = ExtractorIndex(catalog, directory, EXTRACTOR, MODEL, DIM, exact_below=0, recall_sample=args.sample, **QUIET)
    index.open()
    try:
        for build in range(args.rebuilds + 1):
            t = time.monotonic()
            if build:
                index.rebuild()
            index.wait_idle()
            wall = time.monotonic() - t
            stats = index.stats()
            measured = index._state.base.meta["recall"]
            rec, p50, p95 = served(index, queries, truth)
            rows.append(dict(kind=kind, n=n, build=build, stats=stats, m=measured, rec=rec, p50=p50, p95=p95,
                             build_s=stats["last_build_seconds"], wall=wall))  # fmt: skip
            say(f"build {build}: {stats['trees']} trees, search_k {stats['search_k']} measured {stats['recall_at_10']}"
                f" p50 {stats['p50_ms']} ms; held-out {rec:.3f} p50 {p50:.2f} ms; note {stats['recall_note']}")  # fmt: skip
    finally:
        index.close()
    fixed = ExtractorIndex(catalog, directory, EXTRACTOR, MODEL, DIM, search_k=UNMEASURED_SEARCH_K, **QUIET)
    fixed.open()
    try:
        rows[-1]["fixed"] = served(fixed, queries, truth)
    finally:
        fixed.close()
    rows[-1]["other"] = load.cores()
    catalog.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--datasets", nargs="+", choices=["photo", "broad"], default=["photo", "broad"])
    parser.add_argument("--queries", type=int, default=500, help="held-out queries")
    parser.add_argument("--sample", type=int, default=300, help="the builder's recall sample (index.recall_sample)")
    parser.add_argument("--rebuilds", type=int, default=1)
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder, removed after")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-recall-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        rows = [r for kind in args.datasets for n in args.sizes for r in one(kind, n, args, work)]
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)
    print(
        f"\n{DIM}-d, defaults (target 0.95, budget 10 ms p50), builder sample {args.sample} stored vectors; "
        f"held-out: {args.queries} queries through ExtractorIndex.query.\n"
    )
    print(
        "| data | vectors | build | trees | search_k chosen | builder: recall@10, p50 / p95 ms | target met "
        "| held-out: recall@10, p50 / p95 ms | fixed search_k 5000: recall@10, p50 / p95 ms | build (s), of it measuring |"
    )
    print("|---|---:|---:|---:|---:|---|---|---|---|---:|")
    for r in rows:
        s, m = r["stats"], r["m"]
        fixed = r.get("fixed")
        fixed_cell = f"{fixed[0]:.3f}, {fixed[1]:.2f} / {fixed[2]:.2f}" if fixed else ""
        print(
            f"| {r['kind']} | {r['n']:,} | {r['build'] + 1} | {s['trees']} | {s['search_k']} "
            f"| {m['recall_at_10']:.3f}, {m['p50_ms']:.2f} / {m['p95_ms']:.2f} "
            f"| {'yes' if m['target_met'] else 'no: ' + str(s['recall_note'])} "
            f"| {r['rec']:.3f}, {r['p50']:.2f} / {r['p95']:.2f} | {fixed_cell} | {r['build_s']:.0f}, {m['seconds']:.0f} |"
        )
    print("\nsweeps (search_k, p50 ms, recall@10):\n")
    for r in rows:
        print(f"- {r['kind']} {r['n']:,} build {r['build'] + 1}: {r['m']['sweep']}")
    for r in rows:
        if "other" in r:
            print(f"- {r['kind']} {r['n']:,}: other processes used {r['other']:.2f} cores on average")


if __name__ == "__main__":
    main()
