"""Backfill through Ray on this machine against ``imgsearchd index`` on the same files.

Issue 15: what going through a Ray cluster costs when the cluster is this one machine.
Side by side in one run, rotating the order between repeats: the real pipeline
(``Pipeline.process``, what ``imgsearchd index`` runs: loader threads + batched forward
passes) and the real backfill (``backfill.Backfill``: plan, a Ray Data pipeline of
``FileEmbedder`` actors, results streamed back into the catalogue) into fresh catalogues
on the same JPEGs (efficientnet with its packaged weights; CPU). For the backfill, the
start (joining or starting the cluster, the actors loading their models) is shown apart
from the steady rate (files written after the first result, over the time since), since a
real archive pays the start once and the steady rate for days.

    .venv/bin/python bench/bench_backfill.py [--files 256] [--repeats 2] [--ray local]

``--ray local`` starts a Ray instance in this process for each backfill (as ``imgsearchd
backfill --ray local`` does); give an address to use a running cluster instead.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

from bench_indexing import SMALL_SIZES, cpu_model, make_set, spread  # noqa: E402
from imgsearchd import extractors  # noqa: E402
from imgsearchd.bulk.backfill import Backfill, ClusterOptions, plan  # noqa: E402
from imgsearchd.bulk.status import BackfillProgress  # noqa: E402
from imgsearchd.extractors.registry import extractor_settings  # noqa: E402
from imgsearchd.ingest.pipeline import Pipeline  # noqa: E402
from imgsearchd.media.limits import ImageLimits  # noqa: E402
from imgsearchd.store.catalog import Catalog  # noqa: E402

VARIANTS = ("index", "backfill")


def run_index(extractor: Any, paths: list[str], workdir: Path) -> dict[str, float]:
    """``imgsearchd index``'s pipeline into a fresh catalogue: wall seconds and img/s."""
    with Catalog(workdir / "index.sqlite3") as catalog, Pipeline(catalog, {"efficientnet": extractor}) as pipeline:
        started = time.perf_counter()
        pipeline.process(paths)
        seconds = time.perf_counter() - started
    (workdir / "index.sqlite3").unlink()
    return {"seconds": seconds, "img_s": len(paths) / seconds}


def run_backfill(
    extractor: Any, settings: dict[str, Any], folder: Path, count: int, address: str, workdir: Path, batch_size: int
) -> dict[str, float]:
    """The backfill into a fresh catalogue: total seconds, start seconds, steady img/s."""
    marks: list[tuple[float, int]] = []
    with Catalog(workdir / "backfill.sqlite3") as catalog:
        started = time.perf_counter()
        models = {"efficientnet": extractor.model_id}
        found = plan(catalog, [str(folder)], ["jpg"], True, models, None)
        assert len(found.paths) == count, f"planned {len(found.paths)} of {count}"
        backfill = Backfill(
            catalog,
            {"efficientnet": extractor},
            {"efficientnet": extractor_settings("efficientnet", settings)},
            ImageLimits(),
            None,
            # One batch per task: results come back a batch at a time, so the steady rate is seen
            # (the default, four batches a task, gave two results for 256 files).
            ClusterOptions(address=address, files_per_task=batch_size),
            BackfillProgress(folders=[str(folder)], address=address),
            on_update=lambda progress, _n: marks.append((time.perf_counter(), progress.done)),
        )
        progress = backfill.run(found.paths)
        seconds = time.perf_counter() - started
        assert progress.embedded == count, progress
    (workdir / "backfill.sqlite3").unlink()
    written = [(t, done) for t, done in marks if done]
    first_t, first_done = written[0]
    last_t, last_done = written[-1]
    steady = (last_done - first_done) / (last_t - first_t) if last_t > first_t else float("nan")
    return {"seconds": seconds, "img_s": count / seconds, "start_s": first_t - started, "steady_img_s": steady}


def write_ceiling(dim: int, rows: int, workdir: Path) -> float:
    """Rows/s the driver can write: ``Catalog.record_batch`` in transactions of 256 results with
    ``dim``-float vectors and metadata (the rate no cluster can exceed while one machine writes)."""
    import numpy as np

    from imgsearchd.media.photo_metadata import PhotoMetadata
    from imgsearchd.store.rows import FileResult

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((rows, dim)).astype(np.float32)
    meta = PhotoMetadata(taken_at=1.5e9, taken="2017-07-14T02:40:00", taken_from="exif", width=4032, height=3024)
    results = [
        FileResult(f"/archive/{i // 1000:04d}/IMG_{i:07d}.jpg", 3_000_000 + i, 1_500_000_000 * 10**9 + i,
                   f"{i:032x}", {"efficientnet": ("bench", vectors[i])}, None, None, meta)
        for i in range(rows)
    ]  # fmt: skip
    with Catalog(workdir / "ceiling.sqlite3") as catalog:
        started = time.perf_counter()
        for start in range(0, rows, 256):
            catalog.record_batch(results[start : start + 256])
        seconds = time.perf_counter() - started
    for leftover in workdir.glob("ceiling.sqlite3*"):
        leftover.unlink()
    return rows / seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=256, help="JPEGs (640x480 to 1152x864) per run")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--ceiling-rows", type=int, default=20000, help="rows for the driver's write ceiling")
    parser.add_argument("--ray", default="local", help="a Ray address, or local (a Ray instance in this process)")
    parser.add_argument(
        "--data-dir",
        default=os.path.join(tempfile.gettempdir(), "imgsearchd-bench-data"),
        help="where the test images are made and kept between runs",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)

    folder = Path(args.data_dir) / f"backfill-{args.files}"
    paths = make_set(folder, args.files, SMALL_SIZES, 3.0, 4321)
    for path in paths:  # read once: every variant sees a warm page cache
        Path(path).read_bytes()
    settings = {"device": "cpu", "engine": "torch", "batch_size": args.batch_size, "precision": "fp32"}
    extractor = extractors.create("efficientnet", settings)
    run_index(extractor, paths[: min(8, len(paths))], Path(tempfile.mkdtemp()))  # warm-up: kernels, allocator
    load_before = os.getloadavg()
    runs: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory() as work:
        for rep in range(args.repeats):
            for variant in VARIANTS[rep % 2 :] + VARIANTS[: rep % 2]:
                if variant == "index":
                    runs[variant].append(run_index(extractor, paths, Path(work)))
                else:
                    runs[variant].append(
                        run_backfill(extractor, settings, folder, len(paths), args.ray, Path(work), args.batch_size)
                    )
                print(f"{variant}: {runs[variant][-1]}", file=sys.stderr)
        ceilings = {dim: write_ceiling(dim, args.ceiling_rows, Path(work)) for dim in (512, 1280)}
    load_after = os.getloadavg()

    index_rates = [r["img_s"] for r in runs["index"]]
    total_rates = [r["img_s"] for r in runs["backfill"]]
    steady_rates = [r["steady_img_s"] for r in runs["backfill"]]
    print()
    print(
        f"Machine: {os.cpu_count()} CPUs ({cpu_model()}), Python {platform.python_version()}, "
        f"{len(paths)} JPEGs 640x480-1152x864, efficientnet fp32 batch {args.batch_size}, "
        f"Ray at {args.ray}, repeats {args.repeats}"
    )
    print(f"Load average (1 min) before/after: {load_before[0]:.2f} / {load_after[0]:.2f}")
    print()
    print("| path | img/s, whole run | start (s) | img/s, steady | steady / index |")
    print("| --- | ---: | ---: | ---: | ---: |")
    print(f"| imgsearchd index | {spread(index_rates)} | - | {spread(index_rates)} | 1.00 |")
    ratio = [s / i for s, i in zip(steady_rates, index_rates)]
    print(
        f"| backfill through Ray | {spread(total_rates)} | {spread([r['start_s'] for r in runs['backfill']])} | "
        f"{spread(steady_rates)} | {statistics.median(ratio):.2f} |"
    )
    print()
    print("| the driver's write ceiling (record_batch, 256 a transaction) | rows/s |")
    print("| --- | ---: |")
    for dim, rate in ceilings.items():
        print(f"| {dim}-float vectors + metadata, {args.ceiling_rows:,} rows | {rate:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
