"""Watching: how soon a dropped file is searchable, and what a reconcile scan costs.

1. Drop-to-search latency, through the real HTTP server: the real daemon (Service +
   cheroot, efficientnet, default [watch] settings) watches a folder; 100 distinct
   JPEGs are written into it one by one, and for each the time from its close to the
   first GET /search (by an indexed probe's path, every 5 ms) that returns it is
   measured, beside the forward-pass time of that file (the extractor's ``embed`` call,
   timed in the same process). A file not found within 15 s is a miss.

2. Reconcile scan of N unchanged files (default 100k): tiny synthetic files in 100
   folders, with catalogue rows inserted directly (matching size and mtime, one shared
   vector), then a Watcher comes up on the folder and runs its start-up reconcile. An
   audit hook counts every ``open()`` of a path below the folder and ``files.read_file``
   is counted too: both must stay 0. Page cache warm (the files were just written).

    .venv/bin/python bench/bench_watch.py [--drops 100] [--files 100000] [--side 256]
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from imgsearchd.ingest.folders import plan_folder
from imgsearchd.ingest.watched import WatchOptions
from imgsearchd.ingest.watcher import Watcher
from imgsearchd.ingest.workqueue import WorkQueue
from imgsearchd.media import files as media_files
from imgsearchd.media.files import FileBytes
from imgsearchd.store.catalog import Catalog
from imgsearchd.store.rows import FileResult

from helpers import live_server, wait_for, write_config

TARGET_OVERHEAD_S = 1.0  # drop-to-search latency minus the embedding time
TARGET_RECONCILE_S = 5.0  # "a few seconds" for 100k unchanged files


def photos(count: int, side: int) -> list[bytes]:
    """Distinct JPEGs from scikit-image's sample photos (crops, rotations, sizes)."""
    import skimage.data as data

    bases = [data.chelsea(), data.coffee(), data.astronaut(), data.rocket(), data.retina()]
    rng = np.random.default_rng(0)
    out = []
    for i in range(count):
        base = Image.fromarray(bases[i % len(bases)]).convert("RGB")
        w, h = base.size
        x, y = int(rng.integers(0, w // 4)), int(rng.integers(0, h // 4))
        crop = base.crop((x, y, x + 3 * w // 4, y + 3 * h // 4)).rotate(float(rng.integers(0, 360)))
        buf = io.BytesIO()
        crop.resize((side, side * 3 // 4)).save(buf, "JPEG", quality=85)
        out.append(buf.getvalue())
    return out


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q)) if values else float("nan")


# -- 1. drop to search ------------------------------------------------------------------


def bench_latency(work: Path, drops: int, side: int) -> dict[str, object]:
    folder = work / "dropbox"
    folder.mkdir()
    pictures = photos(drops + 1, side)
    probe = folder / "probe.jpg"
    probe.write_bytes(pictures[-1])
    config_path = write_config(
        work / "imgsearchd.toml",
        {
            "index": {"data_dir": str(work / "data"), "extractors": ["efficientnet"], "fallback_extractor": ""},
            "extractors.efficientnet": {"device": "cpu", "engine": "torch"},
            "watch": {"directories": [str(folder)]},
        },
    )
    latencies: list[float] = []
    embeds: list[float] = []
    misses = 0
    with live_server(config_path, threads=8) as live:
        service = live.service
        assert service.loaded is not None and service.catalog is not None
        catalog = service.catalog
        extractor = service.loaded.default
        calls: list[tuple[float, float, int]] = []
        original_embed = extractor.embed

        def timed_embed(batch: torch.Tensor) -> np.ndarray:
            started = time.monotonic()
            try:
                return original_embed(batch)
            finally:
                calls.append((started, time.monotonic(), int(batch.shape[0])))

        extractor.embed = timed_embed  # type: ignore[method-assign]
        query = f"{live.base}/search?" + urllib.parse.urlencode({"image": str(probe), "limit": drops + 10})

        def results() -> set[str]:
            with urllib.request.urlopen(query, timeout=10) as response:
                return {r["image"] for r in json.loads(response.read())["results"]}

        wait_for(lambda: catalog.get(str(probe)) and str(probe) in results(), 60, "the probe image to be indexed")
        for i, data in enumerate(pictures[:-1]):
            path = folder / f"drop{i:03d}.jpg"
            first_call = len(calls)
            with open(path, "wb") as f:
                f.write(data)
            closed = time.monotonic()
            seen = None
            while time.monotonic() - closed < 15.0:
                if str(path) in results():
                    seen = time.monotonic()
                    break
                time.sleep(0.005)
            if seen is None:
                misses += 1
                continue
            latencies.append(seen - closed)
            embeds.append(sum(end - start for start, end, _ in calls[first_call:]))
    overhead = [lat - emb for lat, emb in zip(latencies, embeds)]
    return {
        "drops": drops,
        "image": f"{side}x{side * 3 // 4} JPEG",
        "found": len(latencies),
        "misses": misses,
        "latency_s": {
            "median": round(statistics.median(latencies), 3),
            "p95": round(percentile(latencies, 95), 3),
            "max": round(max(latencies), 3),
        },
        "embed_s": {"median": round(statistics.median(embeds), 3), "p95": round(percentile(embeds, 95), 3)},
        "latency_minus_embed_s": {
            "median": round(statistics.median(overhead), 3),
            "p95": round(percentile(overhead, 95), 3),
            "max": round(max(overhead), 3),
        },
        "within_target": sum(1 for o in overhead if o <= TARGET_OVERHEAD_S),
    }


# -- 2. reconcile of unchanged files ----------------------------------------------------


def bench_reconcile(work: Path, files: int) -> dict[str, object]:
    folder = work / "library"
    per_folder = 1000
    started = time.monotonic()
    paths = []
    for i in range(files):
        sub = folder / f"d{i // per_folder:03d}"
        if i % per_folder == 0:
            sub.mkdir(parents=True)
        path = sub / f"img{i:06d}.jpg"
        path.write_bytes(b"x")
        paths.append(path)
    made = time.monotonic() - started
    model = "efficientnet:bench"
    with Catalog(work / "catalog.sqlite3") as catalog:
        batch = []
        for i, path in enumerate(paths):
            st = path.stat()
            vectors = {"efficientnet": (model, np.ones(8, np.float32))} if i == 0 else {}
            batch.append(FileResult(str(path), st.st_size, st.st_mtime_ns, "same-content", vectors))
            if len(batch) == 10_000:
                catalog.record_batch(batch)
                batch = []
        catalog.record_batch(batch)

        opened: list[str] = []
        prefix = str(folder)

        def audit(event: str, args: tuple[Any, ...]) -> None:
            if event == "open" and isinstance(args[0], str) and args[0].startswith(prefix):
                opened.append(args[0])

        sys.addaudithook(audit)
        with open(paths[0], "rb"):  # the hook sees opens: this one is counted, then forgotten
            pass
        assert opened == [str(paths[0])], opened
        opened.clear()
        reads = 0
        original_read = media_files.read_file

        def counting_read(*args: Any, **kwargs: Any) -> FileBytes:
            nonlocal reads
            reads += 1
            return original_read(*args, **kwargs)

        media_files.read_file = counting_read
        try:
            plans = []
            for _ in range(3):
                t0 = time.monotonic()
                plan = plan_folder(catalog, str(folder), (".jpg",), True, {"efficientnet": model})
                plans.append(time.monotonic() - t0)
            assert plan.unchanged == files and not plan.to_add and not plan.vanished, plan

            queue = WorkQueue()
            watcher = Watcher(queue, catalog, [folder], WatchOptions(extensions=(".jpg",)), {"efficientnet": model})
            t0 = time.monotonic()
            watcher.start()
            while not watcher.idle():
                time.sleep(0.01)
            up = time.monotonic() - t0
            status = watcher.status()[0]
            last_scan = status["last_scan"]
            assert last_scan is not None, "the watcher went idle before its first scan"
            watcher.stop()
        finally:
            media_files.read_file = original_read
    return {
        "files": files,
        "folders": (files + per_folder - 1) // per_folder,
        "make_files_s": round(made, 1),
        "plan_folder_s": [round(s, 3) for s in plans],
        "watcher_start_to_idle_s": round(up, 3),
        "watcher_scan_s": last_scan["seconds"],
        "observer": status["observer"],
        "queued": len(queue),
        "opened": len(opened),
        "read_file_calls": reads,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--drops", type=int, default=100)
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--side", type=int, default=256, help="width of the dropped JPEGs")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-reconcile", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    report: dict[str, object] = {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
    }
    with tempfile.TemporaryDirectory(prefix="bench-watch-") as tmp:
        if not args.skip_latency:
            (Path(tmp) / "latency").mkdir()
            report["drop_to_search"] = bench_latency(Path(tmp) / "latency", args.drops, args.side)
            print(json.dumps(report["drop_to_search"], indent=2), flush=True)
        if not args.skip_reconcile:
            (Path(tmp) / "reconcile").mkdir()
            report["reconcile"] = bench_reconcile(Path(tmp) / "reconcile", args.files)
            print(json.dumps(report["reconcile"], indent=2), flush=True)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
