"""Thumbnails: what making them costs the indexer, and how fast /thumbnail answers.

1. Indexing throughput with and without thumbnails, side by side in one run: the real
   pipeline (``Pipeline.process`` into a fresh catalogue; efficientnet with its packaged
   weights, or ``--model clip`` with random weights; CPU) on the same JPEGs, without a store, with WebP thumbnails and with JPEG
   ones, the variants back to back in a rotating order; the cost is taken per repeat
   (issue 13: at most 5%). Wall-clock img/s and process CPU ms per image are both shown,
   and the thumbnail's own CPU time measured in the loader threads: the pipeline is
   CPU-bound (it keeps about 1.8 of 2 cores busy), so that time's share of an image's CPU
   is the throughput it takes, and on a shared machine it is far steadier than the
   difference of two whole runs.
2. The thumbnail route: a real ``imgsearchd serve`` process over a catalogue indexed
   without thumbnails (as an older daemon left it); N client threads on keep-alive
   connections ask for every file's thumbnail: cold (made on demand: read, one decode,
   encode, write), warm (read from the store) and revalidated (If-None-Match: 304).
3. The store's start: reading hashes, sizes and recency (not the pictures), per 10,000.

    .venv/bin/python bench/bench_thumbnails.py [--small 96] [--large 24] [--repeats 3]
        [--route-images 96] [--clients 4] [--scan 20000]

The pictures are made once under ``--data-dir`` (as bench_indexing.py makes them).
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import logging
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
import urllib.parse
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from PIL import Image  # noqa: E402

from bench_indexing import LARGE_SIZES, SMALL_SIZES, cpu_model, make_set, spread  # noqa: E402
from imgsearchd import extractors  # noqa: E402
from imgsearchd.ingest.pipeline import Pipeline  # noqa: E402
from imgsearchd.media.thumbnails import ThumbnailStore  # noqa: E402
from imgsearchd.store.catalog import Catalog  # noqa: E402

from helpers import free_port, server_config  # noqa: E402
from served import serve  # noqa: E402

VARIANTS = ("none", "webp", "jpeg")
TARGET_COST = 0.05


# -- 1. indexing with and without ------------------------------------------------------------


def timed(store: ThumbnailStore) -> list[float]:
    """Make ``store.add_picture`` add the CPU time of its thread to the list returned."""
    spent: list[float] = []
    add_picture = store.add_picture

    def measured(content_hash: str, picture: Image.Image) -> bool:
        started = time.thread_time()
        try:
            return add_picture(content_hash, picture)
        finally:
            spent.append(time.thread_time() - started)

    store.add_picture = measured  # type: ignore[method-assign]
    return spent


def index_once(extractor: Any, paths: list[str], variant: str, workdir: Path) -> tuple[float, float, float]:
    """(img/s, process CPU ms per image, thumbnail CPU ms per image) for one fresh-catalogue run.

    The thumbnail's own CPU time is measured in the loader threads around ``add_picture``
    (resize, encode, write): on a shared machine a steadier figure than the difference of
    two whole runs.
    """
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        store = None if variant == "none" else ThumbnailStore(Path(tmp) / "thumbnails", fmt=variant)
        spent = timed(store) if store is not None else []
        catalog = Catalog(Path(tmp) / "catalog.sqlite3")
        pipeline = Pipeline(catalog, {extractor.name: extractor}, thumbnails=store)
        try:
            wall, cpu = time.perf_counter(), time.process_time()
            summary = pipeline.process(paths)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        finally:
            pipeline.close()
            catalog.close()
            if store is not None:
                store.close()
    if summary["embedded"] != len(paths) or summary["failed"]:
        raise SystemExit(f"pipeline did not embed every image: {summary}")
    if store is not None and store.made != len(paths):
        raise SystemExit(f"{variant}: {store.made} thumbnails made for {len(paths)} images")
    return len(paths) / wall, cpu / len(paths) * 1e3, sum(spent) / len(paths) * 1e3


def bench_indexing(extractor: Any, sets: dict[str, list[str]], repeats: int, workdir: Path) -> list[dict[str, Any]]:
    rows = []
    index_once(extractor, sets["small"][:16], "webp", workdir)  # warm-up: kernels, allocator, encoders
    for set_name, paths in sets.items():
        if not paths:
            continue
        runs: dict[str, list[tuple[float, float, float]]] = {v: [] for v in VARIANTS}
        for rep in range(repeats):
            for variant in VARIANTS[rep % 3 :] + VARIANTS[: rep % 3]:
                runs[variant].append(index_once(extractor, paths, variant, workdir))
        row: dict[str, Any] = {"set": set_name, "images": len(paths)}
        for v in VARIANTS:
            row[f"{v}_img_s"] = [r for r, _, _ in runs[v]]
            row[f"{v}_cpu_ms"] = [c for _, c, _ in runs[v]]
        for v in VARIANTS[1:]:
            row[f"{v}_wall_cost"] = [1 - a[0] / b[0] for a, b in zip(runs[v], runs["none"])]
            row[f"{v}_cpu_cost"] = [a[1] / b[1] - 1 for a, b in zip(runs[v], runs["none"])]
            row[f"{v}_thumb_ms"] = [t for _, _, t in runs[v]]
            row[f"{v}_thumb_share"] = [a[2] / b[1] for a, b in zip(runs[v], runs["none"])]
        rows.append(row)
        print(f"{set_name}: " + ", ".join(f"{v} {spread(row[f'{v}_img_s'])} img/s" for v in VARIANTS), file=sys.stderr)
    return rows


# -- 2. the route ----------------------------------------------------------------------------


def hammer(port: int, paths: list[str], clients: int, headers: dict[str, str] | None = None) -> dict[str, Any]:
    """Every path once, split over ``clients`` threads with a keep-alive connection each."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()

    def client(share: list[str]) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        mine: list[float] = []
        seen: dict[int, int] = {}
        for path in share:
            started = time.perf_counter()
            conn.request("GET", "/thumbnail?" + urllib.parse.urlencode({"image": path}), headers=headers or {})
            response = conn.getresponse()
            response.read()
            mine.append(time.perf_counter() - started)
            seen[response.status] = seen.get(response.status, 0) + 1
        conn.close()
        with lock:
            latencies.extend(mine)
            for status, count in seen.items():
                statuses[status] = statuses.get(status, 0) + count

    threads = [threading.Thread(target=client, args=(paths[i::clients],)) for i in range(clients)]
    wall = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - wall
    latencies.sort()
    return {
        "requests_s": len(paths) / wall,
        "p50_ms": latencies[len(latencies) // 2] * 1e3,
        "p95_ms": latencies[int(len(latencies) * 0.95)] * 1e3,
        "statuses": statuses,
    }


def bench_route(
    extractor: Any, paths: list[str], clients: int, workdir: Path, rounds: int = 5
) -> list[tuple[str, dict[str, Any]]]:
    """Cold, warm and revalidated passes over ``paths`` against a served daemon."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        tmp_path = Path(tmp)
        folder = Path(paths[0]).parent
        config = server_config(tmp_path, server={"allowed_roots": [str(folder)]})
        catalog = Catalog(tmp_path / "data" / "catalog.sqlite3")
        with catalog, Pipeline(catalog, {"efficientnet": extractor}) as pipeline:  # no thumbnails: the old state
            pipeline.process(paths)
        port = free_port()
        rows = []
        with serve(config, port) as daemon:
            rows.append(("cold (made on demand)", hammer(port, paths, clients)))
            rows.append(("warm (from the store)", hammer(port, paths * rounds, clients)))
            _, stats = daemon.get("/stats")
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request("GET", "/thumbnail?" + urllib.parse.urlencode({"image": paths[0]}))
            etag = conn.getresponse().getheader("ETag") or ""
            conn.close()
            # one ETag for all: a 304 only for the first path, the rest 200; so ask for that one
            revalidate = [paths[0]] * len(paths) * rounds
            rows.append(("revalidated (304)", hammer(port, revalidate, clients, {"If-None-Match": etag})))
            thumbs = stats["thumbnails"]
            rows.append(("store", {"count": thumbs["count"], "bytes": thumbs["bytes"]}))
    return rows


# -- 3. the start scan ---------------------------------------------------------------------


def bench_scan(count: int, workdir: Path) -> tuple[float, int]:
    """Seconds a store takes to start over ``count`` thumbnails (page cache warm: the file was just written)."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        folder = Path(tmp) / "thumbnails"
        store = ThumbnailStore(folder)
        import skimage.data

        store.add_picture("00" * 16, Image.fromarray(skimage.data.coffee()))  # a real photo's size (about 9 KB)
        made = store.get("00" * 16)
        assert made is not None
        data = made.data
        store.close()
        with contextlib.closing(sqlite3.connect(folder / "thumbnails.sqlite3")) as db, db:
            db.executemany(
                "INSERT INTO thumbnails (hash, size, used, data) VALUES (?, ?, ?, ?)",
                ((f"{i:032x}", len(data), float(i), data) for i in range(1, count)),
            )
        started = time.perf_counter()
        again = ThumbnailStore(folder)
        seconds = time.perf_counter() - started
        found = int(again.stats()["count"])
        again.close()
        return seconds, found


# -- reporting -----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="efficientnet", help="the extractor (clip: random weights, speed only)")
    parser.add_argument("--small", type=int, default=96, help="small JPEGs (<= 1 MP) per indexing run")
    parser.add_argument("--large", type=int, default=24, help="large JPEGs (>= 8 MP) per indexing run (0: none)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--route-images", type=int, default=96, help="small JPEGs the route is asked for")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=5, help="warm and 304 passes ask for every thumbnail this often")
    parser.add_argument("--scan", type=int, default=20000, help="thumbnails in the store for the start timing")
    parser.add_argument(
        "--data-dir",
        default=os.path.join(tempfile.gettempdir(), "imgsearchd-bench-thumbnails"),
        help="where the test images are made and kept between runs",
    )
    parser.add_argument("--seed", type=int, default=4321)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)

    data_dir = Path(args.data_dir)
    sets = {
        "small": make_set(data_dir / "small", args.small, SMALL_SIZES, 3.0, args.seed),
        "large": make_set(data_dir / "large", args.large, LARGE_SIZES, 8.0, args.seed + 1) if args.large else [],
    }
    route_paths = make_set(data_dir / "route", args.route_images, SMALL_SIZES, 3.0, args.seed + 2)
    for paths in (*sets.values(), route_paths):
        for path in paths:
            Path(path).read_bytes()  # a warm page cache for every variant
    settings: dict[str, Any] = {"device": "cpu", "engine": "torch", "batch_size": args.batch_size}
    if args.model == "clip":
        settings["pretrained"] = "none"
    extractor = extractors.create(args.model, settings)

    load_before = os.getloadavg()
    indexing = bench_indexing(extractor, sets, args.repeats, data_dir)
    if args.model != "efficientnet":  # the served daemon runs efficientnet (tests/helpers.server_config)
        del extractor
        extractor = extractors.create(
            "efficientnet", {"device": "cpu", "engine": "torch", "batch_size": args.batch_size}
        )
    route = bench_route(extractor, route_paths, args.clients, data_dir, args.rounds)
    scan_seconds, scanned = bench_scan(args.scan, data_dir) if args.scan else (0.0, 0)
    load_after = os.getloadavg()

    import torch

    print()
    print(
        f"Machine: {os.cpu_count()} CPUs ({cpu_model()}), Python {platform.python_version()}, torch {torch.__version__}, "
        f"{args.model} on CPU, batch size {args.batch_size}, repeats {args.repeats}"
    )
    print(f"Load average (1 min) before/after: {load_before[0]:.2f} / {load_after[0]:.2f}")
    print()
    print("Indexing, the same pictures, fresh catalogue each run (median and range; cost per repeat):")
    print()
    print("| images | no thumbnails img/s | WebP img/s | JPEG img/s | WebP cost (wall) | JPEG cost (wall) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for row in indexing:
        print(
            f"| {row['set']} ({row['images']}) | {spread(row['none_img_s'])} | {spread(row['webp_img_s'])} | "
            f"{spread(row['jpeg_img_s'])} | {spread([c * 100 for c in row['webp_wall_cost']])}% | "
            f"{spread([c * 100 for c in row['jpeg_wall_cost']])}% |"
        )
    print()
    print("| images | CPU ms/img, none | WebP | JPEG | WebP cost (CPU) | JPEG cost (CPU) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for row in indexing:
        print(
            f"| {row['set']} ({row['images']}) | {spread(row['none_cpu_ms'])} | {spread(row['webp_cpu_ms'])} | "
            f"{spread(row['jpeg_cpu_ms'])} | {spread([c * 100 for c in row['webp_cpu_cost']])}% | "
            f"{spread([c * 100 for c in row['jpeg_cpu_cost']])}% |"
        )
    print()
    print("The thumbnail's own CPU time in the loader threads (resize, encode, write), per image, and its")
    print("share of the CPU an image costs without thumbnails (the throughput it takes from a CPU-bound pipeline):")
    print()
    print("| images | WebP ms/img | WebP share | JPEG ms/img | JPEG share | target (WebP) |")
    print("| --- | ---: | ---: | ---: | ---: | --- |")
    for row in indexing:
        share = statistics.median(row["webp_thumb_share"])
        verdict = f"<= {TARGET_COST:.0%}: {'met' if share <= TARGET_COST else 'MISSED'}"
        print(
            f"| {row['set']} ({row['images']}) | {spread(row['webp_thumb_ms'], 2)} | "
            f"{spread([c * 100 for c in row['webp_thumb_share']])}% | {spread(row['jpeg_thumb_ms'], 2)} | "
            f"{spread([c * 100 for c in row['jpeg_thumb_share']])}% | {verdict} |"
        )
    print()
    print(
        f"/thumbnail, {len(route_paths)} small JPEGs (warm and 304: {args.rounds} rounds), "
        f"{args.clients} clients with keep-alive connections:"
    )
    print()
    print("| pass | requests/s | p50 ms | p95 ms | statuses |")
    print("| --- | ---: | ---: | ---: | --- |")
    store: dict[str, Any] = {}
    for name, result in route:
        if name == "store":
            store = result
            continue
        print(
            f"| {name} | {result['requests_s']:.1f} | {result['p50_ms']:.1f} | {result['p95_ms']:.1f} | "
            f"{result['statuses']} |"
        )
    print()
    print(f"Store after the cold pass: {store.get('count')} thumbnails, {store.get('bytes', 0) / 1024:.0f} KiB")
    if scanned:
        print(
            f"Store start: {scanned} thumbnails in {scan_seconds:.2f} s ({scan_seconds / scanned * 1e4:.3f} s per 10,000)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
