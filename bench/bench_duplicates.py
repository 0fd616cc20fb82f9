"""Duplicates (issue 12): the k-NN self-join at scale, and the default threshold on real pictures.

**Scale.** ``--vectors`` photo-like synthetic vectors (tests/index_helpers.py) plus
``--planted`` near copies (cosine about 0.97) and ``--identical`` byte-identical files (same
content hash) go through a real SQLite catalogue and a real ``ExtractorIndex`` (Annoy
snapshot); ``DuplicateFinder`` then joins them as the daemon does (``self_join.query_many`` at
``JOIN_SEARCH_K``). Side by side: the same join at the index's own ``search_k`` (what
``index.query`` costs), timed on a sample and scaled up; and plain union-find's largest group
against the largest star. Reported: time, and precision/recall of the planted pairs.

**Threshold.** EfficientNet-Lite0 with its real weights embeds non-overlapping tiles of
scikit-image photos (distinct originals), transformed copies of two thirds of them (JPEG
q50-90, resize 50-80%, crop 5-10%, brightness/contrast, rotation up to 4 degrees) and the
rest as distinct pictures; pair precision/recall of the star groups per threshold.

Run: ``.venv/bin/python bench/bench_duplicates.py`` (100k vectors: a few minutes).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from imgsearchd.config import DUPLICATE_THRESHOLDS  # noqa: E402
from imgsearchd.search import duplicates  # noqa: E402
from imgsearchd.search.index import ExtractorIndex  # noqa: E402
from imgsearchd.search.self_join import query_many  # noqa: E402
from imgsearchd.store.catalog import Catalog  # noqa: E402
from imgsearchd.store.rows import FileResult  # noqa: E402

from duplicate_set import copy_set, found_pairs, planted, precision_recall, tiles, true_pairs  # noqa: E402
from index_helpers import EXTRACTOR, MODEL, add_files, photo_like  # noqa: E402

# Photos with distinct content in every tile (texture-like samples, such as the Hubble field,
# grass or text, and the stereo motorcycle's workshop, give tiles that look alike).
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "camera", "clock")


def cpu_line() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def scale(n: int, planted_pairs: int, identical: int, threshold: float, sample: int, kind: str) -> None:
    background = photo_like(n, 512)
    vectors, pairs = planted(background, planted_pairs)
    with tempfile.TemporaryDirectory() as tmp:
        catalog = Catalog(f"{tmp}/catalog.sqlite3")
        ids = add_files(catalog, vectors)
        # byte-identical copies of the first files: same content hash, so the same vector
        catalog.record_batch(
            FileResult(
                path=f"/copies/{k}.jpg",
                size=1000 + k,
                mtime_ns=k,
                content_hash=f"hash-{k}",
                vectors={EXTRACTOR: (MODEL, vectors[k])},
            )
            for k in range(identical)
        )
        index = ExtractorIndex(catalog, f"{tmp}/index", EXTRACTOR, MODEL, 512, kind=kind, exact_below=min(1000, n))
        index.open()
        index.wait_idle(1200)
        mode = str(index.stats()["mode"])
        stats = index.stats()
        effort = f"ef {stats['ef']}" if mode == "hnsw" else f"search_k {stats['search_k']}"
        join_effort = effort if mode == "hnsw" else f"search_k {duplicates.JOIN_SEARCH_K}"  # HNSW: the index's ef
        finder = duplicates.DuplicateFinder(catalog, exact_below=min(duplicates.EXACT_JOIN_BELOW, n // 2))
        source = duplicates.Source(
            catalog,
            MODEL,
            512,
            mode=lambda: mode,
            query=lambda rows, k: query_many(index, rows, k, duplicates.JOIN_SEARCH_K),
        )
        t0 = time.monotonic()
        while True:
            join, fresh, _ = finder.lookup(EXTRACTOR, source)
            if fresh and join is not None:
                break
            time.sleep(0.2)
        joined = time.monotonic() - t0
        t1 = time.monotonic()
        grouping = finder.grouping(join, threshold)
        grouped = time.monotonic() - t1
        # the same join through index.query (the index's own search_k), on a sample
        rows = vectors[:sample]
        t2 = time.monotonic()
        for v in rows:
            index.query(v, 2 * duplicates.NEIGHBOURS + 1)
        per_row_naive = (time.monotonic() - t2) / len(rows)
        t3 = time.monotonic()
        query_many(index, rows, 2 * duplicates.NEIGHBOURS + 1, duplicates.JOIN_SEARCH_K)
        per_row_ours = (time.monotonic() - t3) / len(rows)
        finder.close()
        index.close()
        catalog.close()
    id_at = {int(i): k for k, i in enumerate(ids)}
    near = [[id_at[m] for m in g.members if m in id_at] for g in grouping.groups if g.kind == "near"]
    p, r = precision_recall(found_pairs(near), {tuple(sorted(pair)) for pair in pairs})  # type: ignore[misc]
    exact = [g for g in grouping.groups if g.kind == "exact"]
    exact_ok = len(exact) == identical and all(len(g.members) == 2 for g in exact)
    largest_star = max((len(g.members) for g in grouping.groups if g.kind == "near"), default=0)
    total = n + planted_pairs + identical
    print(f"\n## Scale: {total:,} files ({n:,} photo-like + {planted_pairs} planted + {identical} identical)\n")
    print("| what | value |")
    print("|---|---|")
    print(f"| index | {mode}, {effort} for queries |")
    print(f"| join ({join.method}, {join_effort}) | {joined:.1f} s |")
    print(f"| grouping at {threshold} | {grouped:.2f} s |")
    print(f"| per row: index.query ({effort}) | {per_row_naive * 1000:.2f} ms |")
    print(f"| per row: query_many ({join_effort}) | {per_row_ours * 1000:.2f} ms |")
    print(f"| join through index.query, scaled from {len(rows)} rows | {per_row_naive * join.contents:.0f} s |")
    print(f"| ratio | {per_row_naive / per_row_ours:.1f}x |")
    print(f"| planted pairs precision / recall | {p:.3f} / {r:.3f} |")
    print(f"| byte-identical groups exact | {exact_ok} ({len(exact)} groups) |")
    print(
        f"| largest near group: union-find (contents) / star (files) | {grouping.largest_component} / {largest_star} |"
    )


def calibrate(grid: int, thresholds: list[float], batch_size: int, photo_count: int) -> None:
    from skimage import data

    from imgsearchd.extractors import create

    photos = [Image.fromarray(getattr(data, name)()) for name in PHOTOS[:photo_count]]
    originals = tiles(photos, grid)
    pictures, family, _made = copy_set(originals, with_copies=len(originals) * 2 // 3)
    extractor = create("efficientnet", {"device": "cpu", "batch_size": batch_size})
    t0 = time.monotonic()
    vectors = extractor.embed_images(pictures)
    seconds = time.monotonic() - t0
    pairs = duplicates.exact_join(np.arange(len(pictures)), vectors, duplicates.NEIGHBOURS)
    truth = true_pairs(family)
    print(
        f"\n## Threshold: EfficientNet-Lite0 (real weights), {len(originals)} originals, "
        f"{len(pictures) - len(originals)} copies, {len(truth)} true pairs (embedded in {seconds:.0f} s)\n"
    )
    print("| threshold | precision | recall | largest union-find group | largest star |")
    print("|---|---|---|---|---|")
    for threshold in thresholds:
        stars, largest = duplicates.star_groups(pairs, threshold)
        p, r = precision_recall(found_pairs(g for g, _ in stars), truth)
        mark = " (default)" if threshold == DUPLICATE_THRESHOLDS["efficientnet"] else ""
        biggest = max((len(g) for g, _ in stars), default=0)
        print(f"| {threshold}{mark} | {p:.3f} | {r:.3f} | {largest} | {biggest} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vectors", type=int, default=100_000)
    parser.add_argument("--planted", type=int, default=500)
    parser.add_argument("--identical", type=int, default=100)
    parser.add_argument("--sample", type=int, default=1000, help="rows timed through index.query")
    parser.add_argument("--grid", type=int, default=3, help="tiles per side of each photo (0: no calibration)")
    parser.add_argument("--thresholds", default="0.8,0.82,0.84,0.86,0.88,0.9,0.92")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--kind", choices=["annoy", "hnsw"], default="hnsw", help="index kind of the join")
    parser.add_argument("--photos", type=int, default=len(PHOTOS), help="how many of the photos to tile")
    args = parser.parse_args()
    print(f"# bench_duplicates on {cpu_line()}")
    threshold = DUPLICATE_THRESHOLDS["efficientnet"]
    scale(args.vectors, args.planted, args.identical, threshold, min(args.sample, args.vectors), args.kind)
    if args.grid:
        calibrate(args.grid, [float(t) for t in args.thresholds.split(",")], args.batch_size, args.photos)


if __name__ == "__main__":
    main()
