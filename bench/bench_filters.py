"""Benchmark of the folder filter (imgsearchd.search.scoped): exact vs over-fetch, by folder size.

A real SQLite catalogue holds ``--library`` synthetic 512-d vectors (``photo_like``), the
files spread at random over folders of the ``--folders`` sizes (the rest in one more
folder); a real ``ExtractorIndex`` serves them from an Annoy snapshot. For each folder size
it times, over held-out queries, the two ways ``search_folder`` can answer:

- **exact**: read the folder's vectors from the catalogue and rank them with numpy;
- **over-fetch**: ask the index for more results and keep those in the folder;

and, for comparison, the naive way (ask the index for ``limit`` results and keep those in
the folder), with the recall@10 of each against brute force over the folder. The exact
search's cost per file against the over-fetch's per candidate sets ``EXACT_COST``; the
**auto** column is what ``search_folder`` picks with it.

    .venv/bin/python bench/bench_filters.py                  # 100k library, about 2 minutes
    .venv/bin/python bench/bench_filters.py --library 3000 --folders 100 1000 --queries 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from imgsearchd.paths import is_under  # noqa: E402
from imgsearchd.search.index import ExtractorIndex  # noqa: E402
from imgsearchd.search.scoped import EXACT_COST, Method, search_folder  # noqa: E402
from imgsearchd.store.catalog import Catalog  # noqa: E402
from imgsearchd.store.rows import FileResult  # noqa: E402

from index_helpers import EXTRACTOR, MODEL, photo_like  # noqa: E402

DIM = 512
LIMIT = 10


def say(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def fill(catalog: Catalog, vectors: np.ndarray, folders: list[int], seed: int) -> dict[str, np.ndarray]:
    """Record the vectors as files spread at random over the folders; folder -> row numbers."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(vectors))
    members: dict[str, np.ndarray] = {}
    start = 0
    for size in folders:
        members[f"/lib/f{size}"] = order[start : start + size]
        start += size
    members["/lib/rest"] = order[start:]
    folder_of = np.empty(len(vectors), dtype=object)
    for folder, rows in members.items():
        folder_of[rows] = folder
    for lo in range(0, len(vectors), 5000):
        catalog.record_batch(
            FileResult(f"{folder_of[k]}/img{k:08d}.jpg", 1000, k, f"h{k}", vectors={EXTRACTOR: (MODEL, vectors[k])})
            for k in range(lo, min(lo + 5000, len(vectors)))
        )
    return members


def median_ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--library", type=int, default=100_000, help="vectors in the library")
    parser.add_argument("--folders", type=int, nargs="+", default=[500, 1000, 2000, 5000, 10000, 20000])
    parser.add_argument("--queries", type=int, default=30, help="held-out queries per folder")
    parser.add_argument("--repeats", type=int, default=3, help="timing rounds (median of all)")
    parser.add_argument("--kind", choices=["annoy", "hnsw"], default="annoy", help="index kind (BENCHMARKS.md: annoy)")
    args = parser.parse_args()
    if sum(args.folders) >= args.library:
        parser.error("the folders must hold fewer files than --library")
    data = photo_like(args.library + args.queries, DIM, seed=3)
    vectors, queries = data[: args.library], data[args.library :]
    with tempfile.TemporaryDirectory() as tmp:
        catalog = Catalog(Path(tmp) / "catalog.sqlite3")
        t0 = time.monotonic()
        members = fill(catalog, vectors, args.folders, seed=4)
        say(f"catalogue: {args.library} files in {time.monotonic() - t0:.1f} s")
        index = ExtractorIndex(
            catalog,
            Path(tmp) / "idx",
            EXTRACTOR,
            MODEL,
            DIM,
            kind=args.kind,
            exact_below=1,
            rebuild_after_changes=10**9,
        )
        index.open()
        try:
            index.wait_idle()
            assert index.stats()["mode"] == args.kind, index.stats()
            say(f"index: {index.stats()['indexed']} vectors, {args.kind}, built")
            path_row = {p: int(p.rsplit("img", 1)[1][:8]) for p in catalog.files_under("/lib")}
            rows = []
            for size in args.folders:
                folder = f"/lib/f{size}"
                inside = members[folder]
                truth = [set(inside[np.argsort(-(vectors[inside] @ q))[:LIMIT]].tolist()) for q in queries]
                times: dict[str, list[float]] = {"exact": [], "overfetch": [], "naive": [], "auto": []}
                found: dict[str, list[set[int]]] = {"exact": [], "overfetch": [], "naive": [], "auto": []}
                asked = []
                picked: list[str] = []
                for r in range(args.repeats):
                    for q in queries:
                        for kind, cost in (("exact", 0.0), ("overfetch", float("inf")), ("auto", EXACT_COST)):
                            t = time.perf_counter()
                            answer = search_folder(index, q, folder, LIMIT, exact_cost=cost)
                            times[kind].append(time.perf_counter() - t)
                            if r == 0:
                                found[kind].append({path_row[p] for _, p in answer.hits})
                                if kind == "overfetch":
                                    asked.append(answer.asked if answer.method == Method.OVERFETCH else -1)
                                if kind == "auto":
                                    picked.append(answer.method)
                        t = time.perf_counter()
                        naive = [h["image"] for h in index.search(q, LIMIT) if is_under(h["image"], folder)]
                        times["naive"].append(time.perf_counter() - t)
                        if r == 0:
                            found["naive"].append({path_row[p] for p in naive})

                def recall(kind: str, found: dict[str, list[set[int]]] = found, truth: list[set[int]] = truth) -> float:
                    got = found[kind]
                    return round(sum(len(g & t) for g, t in zip(got, truth)) / (LIMIT * len(truth)), 3)

                fell_back = sum(1 for a in asked if a < 0)
                rows.append(
                    (
                        size,
                        median_ms(times["exact"]),
                        recall("exact"),
                        median_ms(times["overfetch"]),
                        recall("overfetch"),
                        int(statistics.median([a for a in asked if a >= 0] or [0])),
                        fell_back,
                        median_ms(times["naive"]),
                        recall("naive"),
                        statistics.mode(picked),
                        median_ms(times["auto"]),
                        recall("auto"),
                    )
                )
                say(f"folder {size}: {rows[-1]}")
        finally:
            index.close()
            catalog.close()
    print(f"\nFolder filter, library of {args.library:,} vectors (512-d, Annoy), limit {LIMIT}, median ms\n")
    print(
        "| folder files | exact ms | exact recall | over-fetch ms | over-fetch recall | asked (median) "
        "| fell back to exact | naive post-filter ms | naive recall | auto picks | auto ms | auto recall |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row[0]:,} | " + " | ".join(str(x) for x in row[1:]) + " |")
    print(
        f"\nEXACT_COST is {EXACT_COST:g}: searches pick exact when files x EXACT_COST <= the candidates an over-fetch inspects."
    )


if __name__ == "__main__":
    main()
