"""Benchmark of measured recall (issue 12): Annoy and HNSW side by side through the daemon's path.

For each data set and size, vectors are recorded in a SQLite catalogue once; then, per
index kind (``--kinds annoy hnsw``), with the default settings (``search_k``/``ef``
"auto", ``target_recall`` 0.95, ``search_budget_ms`` 10): the first snapshot is built by
``ExtractorIndex`` (the builder process measures recall@10 on a sample of stored vectors
and picks the search effort), held-out queries drawn like the indexed ones go through
``ExtractorIndex.query`` and are scored against numpy's exact top 10. Then ``--changes``
new vectors are added and a tenth as many removed (one ``rebuild_after_changes`` worth),
and the index is rebuilt: Annoy builds from scratch, HNSW grows its graph. The naive way
side by side: Annoy's old fixed ``search_k`` 5000 on the last Annoy snapshot.

    .venv/bin/python bench/bench_recall.py --sizes 100000 --datasets photo broad
    .venv/bin/python bench/bench_recall.py --sizes 1000000 --datasets broad

At 1M: about 8 GB of memory; Annoy about 15 minutes per data set on 2 cores, HNSW's first
build 35-60 minutes. Prints a markdown table; progress goes to stderr.
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

import numpy as np  # noqa: E402

from bench_index import DIM, OtherLoad, fill_catalog, ground_truth, make_data, pct, recall, run_queries, say  # noqa: E402
from imgsearchd.search.index import ExtractorIndex  # noqa: E402
from imgsearchd.search.parts import UNMEASURED_SEARCH_K  # noqa: E402
from imgsearchd.store.catalog import Catalog  # noqa: E402
from imgsearchd.store.rows import FileResult  # noqa: E402

from index_helpers import EXTRACTOR, MODEL, path_of  # noqa: E402

QUIET = dict(rebuild_after_changes=10**9, rebuild_after_seconds=10**6)  # the bench starts rebuilds itself


def served(index: ExtractorIndex, queries, truth) -> tuple[float, float, float]:
    """(recall@10, p50 ms, p95 ms) of held-out queries through ``ExtractorIndex.query``."""
    run_queries(index, queries[:30])  # warm-up
    lat, found = run_queries(index, queries)
    return recall(found, truth), pct(lat, 50), pct(lat, 95)


def one(data_kind: str, n: int, args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    say(f"== {n} vectors ({data_kind})")
    data = make_data(data_kind, n + args.queries + args.changes, seed=n)
    vectors, queries, extra = data[:n], data[n : n + args.queries].copy(), data[n + args.queries :].copy()
    # the changes: ``extra`` added, a tenth as many of the first files removed
    removed = max(1, args.changes // 10)
    grown_vectors = np.concatenate([vectors[removed:], extra])
    del data
    rows = []
    for kind in args.kinds:  # a catalogue each, so that each kind's second build sees the changes
        catalog = Catalog(work / f"catalog-{data_kind}-{n}-{kind}.db")
        ids = fill_catalog(catalog, vectors)
        truth = ground_truth(vectors, ids, queries)
        load = OtherLoad()
        directory = work / f"index-{data_kind}-{n}-{kind}" / EXTRACTOR
        index = ExtractorIndex(catalog, directory, EXTRACTOR, MODEL, DIM, kind=kind, exact_below=0,
                               recall_sample=args.sample, **QUIET)  # fmt: skip
        index.open()
        try:
            for build in range(2):
                t = time.monotonic()
                if build:
                    add_vectors(catalog, extra, start=n + args.queries)
                    catalog.remove_paths([path_of(k) for k in range(removed)])
                    grown_ids = np.concatenate([ids[removed:], catalog_ids(catalog, len(extra))])
                    truth = ground_truth(grown_vectors, grown_ids, queries)
                    index.rebuild()
                index.wait_idle()
                wall = time.monotonic() - t
                stats = index.stats()
                measured = index._state.base.meta["recall"]
                rec, p50, p95 = served(index, queries, truth)
                meta = index._state.base.meta
                how = ", grown" if kind == "hnsw" and not meta["full_build"] else ", from scratch" if build else ""
                rows.append(dict(data=data_kind, kind=kind, n=n, build=build, how=how, stats=stats, m=measured, rec=rec,
                                 p50=p50, p95=p95, build_s=stats["last_build_seconds"], wall=wall))  # fmt: skip
                effort = stats["search_k"] if kind == "annoy" else stats["ef"]
                say(f"{kind} build {build + 1}: effort {effort} measured {stats['recall_at_10']} p50 {stats['p50_ms']}"
                    f" ms; held-out {rec:.3f} p50 {p50:.2f} ms; {wall:.0f} s; note {stats['recall_note']}")  # fmt: skip
        finally:
            index.close()
        if kind == "annoy":
            fixed = ExtractorIndex(catalog, directory, EXTRACTOR, MODEL, DIM, kind="annoy",
                                   search_k=UNMEASURED_SEARCH_K, **QUIET)  # fmt: skip
            fixed.open()
            try:
                rows[-1]["fixed"] = served(fixed, queries, truth)
            finally:
                fixed.close()
        rows[-1]["other"] = load.cores()
        catalog.close()
        gc.collect()
    return rows


def add_vectors(catalog: Catalog, vectors: np.ndarray, start: int) -> None:
    """Record ``vectors`` as new files numbered from ``start`` (paths no indexed file has)."""
    catalog.record_batch(
        FileResult(path=path_of(start + k), size=1000 + k, mtime_ns=k, content_hash=f"hash-new-{k}",
                   vectors={EXTRACTOR: (MODEL, vectors[k])})
        for k in range(len(vectors))
    )  # fmt: skip


def catalog_ids(catalog: Catalog, last: int) -> np.ndarray:
    """The ids of the ``last`` files recorded (a fresh catalogue numbers files in order)."""
    _, ids, _ = catalog.all_vectors(EXTRACTOR, MODEL, DIM)
    return ids[-last:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--datasets", nargs="+", choices=["photo", "broad"], default=["photo", "broad"])
    parser.add_argument("--queries", type=int, default=500, help="held-out queries")
    parser.add_argument("--sample", type=int, default=300, help="the builder's recall sample (index.recall_sample)")
    parser.add_argument("--kinds", nargs="+", choices=["annoy", "hnsw"], default=["annoy", "hnsw"])
    parser.add_argument("--changes", type=int, default=1000, help="vectors added before the second build")
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
        f"held-out: {args.queries} queries through ExtractorIndex.query; build 2 after {args.changes} added and "
        f"{max(1, args.changes // 10)} removed.\n"
    )
    print(
        "| data | vectors | kind | build | effort chosen | builder: recall@10, p50 / p95 ms | target met "
        "| held-out: recall@10, p50 / p95 ms | fixed search_k 5000: recall@10, p50 / p95 ms | build (s), of it measuring |"
    )
    print("|---|---:|---|---:|---|---|---|---|---|---:|")
    for r in rows:
        s, m = r["stats"], r["m"]
        fixed = r.get("fixed")
        fixed_cell = f"{fixed[0]:.3f}, {fixed[1]:.2f} / {fixed[2]:.2f}" if fixed else ""
        effort = f"search_k {s['search_k']} ({s['trees']} trees)" if r["kind"] == "annoy" else f"ef {s['ef']}"
        print(
            f"| {r['data']} | {r['stats']['indexed']:,} | {r['kind']} | {r['build'] + 1}{r['how']} | {effort} "
            f"| {m['recall_at_10']:.3f}, {m['p50_ms']:.2f} / {m['p95_ms']:.2f} "
            f"| {'yes' if m['target_met'] else 'no: ' + str(s['recall_note'])} "
            f"| {r['rec']:.3f}, {r['p50']:.2f} / {r['p95']:.2f} | {fixed_cell} | {r['build_s']:.0f}, {m['seconds']:.0f} |"
        )
    print("\nsweeps (effort, p50 ms, recall@10):\n")
    for r in rows:
        print(f"- {r['data']} {r['n']:,} {r['kind']} build {r['build'] + 1}: {r['m']['sweep']}")
    for r in rows:
        if "other" in r:
            print(f"- {r['data']} {r['n']:,} {r['kind']}: other processes used {r['other']:.2f} cores on average")


if __name__ == "__main__":
    main()
