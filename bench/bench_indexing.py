"""Indexing throughput: the real pipeline against a naive loop and the bare forward pass.

For each extractor (random weights: speed only) and each image set -- small JPEGs
(<= 1 MP) and large JPEGs (>= 8 MP, upscaled from scikit-image's sample photos with
added grain and saved at quality 90) -- this measures, side by side in one run:

* naive: one image at a time, full decode (PIL open + convert("RGB"), no draft),
  the model's own transform, one forward pass (batch of 1) per image;
* forward-only: ``extractor.embed`` on pre-made tensors at the configured batch size;
* end-to-end: ``Pipeline(...).process(paths)`` over the files on disk into a fresh
  catalogue (read, hash, decode, preprocess, embed, SQLite writes).

Every file has different bytes, so the catalogue's content-hash reuse skips nothing.
The three variants run back to back for each set; ratios are taken per repeat. A second
table gives each variant's process CPU time per image and the cores it got (CPU / wall):
on a shared machine that separates "this costs more" from "this got less of the CPU".

Run: ``.venv/bin/python bench/bench_indexing.py`` (``--help`` for counts; the images are
made once, about a minute, and kept in ``--data-dir``). On a busy machine, compare with
``OMP_WAIT_POLICY=PASSIVE`` set (see BENCHMARKS.md).
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
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from imgsearchd import extractors
from imgsearchd.ingest.pipeline import Pipeline
from imgsearchd.media.limits import ImageLimits
from imgsearchd.store.catalog import Catalog

DATA_VERSION = 1  # bump when the way images are made changes

# Sizes (w, h) for the two sets; each image picks one, landscape or portrait.
SMALL_SIZES = [(640, 480), (800, 600), (512, 512), (1024, 768), (1000, 1000), (1152, 864)]
LARGE_SIZES = [(3264, 2448), (3840, 2160), (4000, 3000), (4032, 3024)]

TARGET_E2E_OVER_FORWARD_SMALL = 0.85
TARGET_E2E_OVER_NAIVE_LARGE = 2.5


# -- test images -----------------------------------------------------------------


def base_photos() -> list[np.ndarray]:
    """scikit-image's colour sample photos that ship with the package (no download)."""
    import skimage.data as data

    photos = []
    for name in (
        "chelsea",
        "coffee",
        "astronaut",
        "rocket",
        "stereo_motorcycle",
        "retina",
        "hubble_deep_field",
        "immunohistochemistry",
        "colorwheel",
    ):
        try:
            picture = getattr(data, name)()
        except Exception:  # a sample that needs a download: skip it
            continue
        if isinstance(picture, tuple):
            picture = picture[0]
        if picture.ndim == 3 and picture.shape[2] == 3:
            photos.append(np.ascontiguousarray(picture))
    if not photos:
        raise SystemExit("no scikit-image sample photos available")
    return photos


def make_image(photo: np.ndarray, size: tuple[int, int], rng: np.random.Generator, grain: float) -> bytes:
    """A random crop of ``photo`` resized to ``size``, with grain, as JPEG quality 90 bytes."""
    h, w = photo.shape[:2]
    w_out, h_out = size if rng.random() < 0.7 else size[::-1]
    # Crop 60-100% of the photo with the output's aspect ratio, at a random spot.
    aspect = w_out / h_out
    crop_h = int(min(h, w / aspect) * rng.uniform(0.6, 1.0))
    crop_w = max(1, int(crop_h * aspect))
    crop_h = max(1, crop_h)
    y = int(rng.integers(0, h - crop_h + 1))
    x = int(rng.integers(0, w - crop_w + 1))
    picture = Image.fromarray(photo[y : y + crop_h, x : x + crop_w]).resize((w_out, h_out), Image.Resampling.BICUBIC)
    array = np.asarray(picture, dtype=np.int16)
    # Sensor-like grain: distinct bytes for every file, and entropy closer to a real photo's
    # than a smooth upscale (which would make JPEG decoding unrealistically cheap).
    noise = rng.normal(0.0, grain, size=array.shape).astype(np.int16)
    array = np.clip(array + noise, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def make_set(folder: Path, count: int, sizes: list[tuple[int, int]], grain: float, seed: int) -> list[str]:
    """``count`` distinct JPEGs in ``folder`` (kept between runs; remade when missing)."""
    folder.mkdir(parents=True, exist_ok=True)
    stamp = folder / "made.json"
    spec = {"version": DATA_VERSION, "count": count, "sizes": sizes, "grain": grain, "seed": seed}
    paths = [str(folder / f"img{i:04d}.jpg") for i in range(count)]
    if (
        stamp.exists()
        and json.loads(stamp.read_text()) == json.loads(json.dumps(spec))
        and all(os.path.exists(p) for p in paths)
    ):
        return paths
    photos = base_photos()
    rng = np.random.default_rng(seed)
    for i, path in enumerate(paths):
        photo = photos[i % len(photos)]
        size = sizes[int(rng.integers(len(sizes)))]
        Path(path).write_bytes(make_image(photo, size, rng, grain))
    stamp.write_text(json.dumps(spec))
    return paths


def describe_set(paths: list[str]) -> str:
    pixels, sizes = [], []
    for path in paths:
        with Image.open(path) as im:
            pixels.append(im.size[0] * im.size[1] / 1e6)
        sizes.append(os.path.getsize(path) / 1e6)
    return (
        f"{len(paths)} JPEGs, {min(pixels):.2f}-{max(pixels):.2f} MP "
        f"(mean {statistics.mean(pixels):.2f}), {statistics.mean(sizes):.2f} MB mean file size"
    )


# -- the three variants -------------------------------------------------------------
# Each returns (images per second, process CPU milliseconds per image). On a shared machine
# the CPU time shows how many cores a variant actually got (CPU / wall) and what the work
# cost, which the wall-clock rate alone hides.


class _Clock:
    def __init__(self, count: int) -> None:
        self.count = count

    def __enter__(self) -> _Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall
        self.cpu = time.process_time() - self.cpu

    @property
    def result(self) -> tuple[float, float]:
        return self.count / self.wall, self.cpu / self.count * 1e3


def run_naive(extractor: extractors.Extractor, paths: list[str]) -> tuple[float, float]:
    """One image at a time: full decode, the model's transform, a forward pass of one."""
    with _Clock(len(paths)) as clock:
        for path in paths:
            with Image.open(path) as im:
                picture = im.convert("RGB")
            extractor.embed(extractor.preprocess(picture).unsqueeze(0))
    return clock.result


def run_forward(extractor: extractors.Extractor, count: int, shape: tuple[int, ...]) -> tuple[float, float]:
    """The forward pass alone on pre-made tensors, in batches of the extractor's size."""
    bs = extractor.batch_size
    batches = [torch.randn(min(bs, count - start), *shape) for start in range(0, count, bs)]
    with _Clock(count) as clock:
        for batch in batches:
            extractor.embed(batch)
    return clock.result


def run_end_to_end(
    name: str, extractor: extractors.Extractor, paths: list[str], loader_threads: int, workdir: Path
) -> tuple[tuple[float, float], int]:
    """The real pipeline into a fresh catalogue; also returns the loader thread count."""
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        catalog = Catalog(Path(tmp) / "catalog.sqlite3")
        pipeline = Pipeline(catalog, {name: extractor}, ImageLimits(), loader_threads=loader_threads)
        try:
            with _Clock(len(paths)) as clock:
                summary = pipeline.process(paths)
        finally:
            pipeline.close()  # stops the loader threads
            catalog.close()
    if summary["embedded"] != len(paths) or summary["failed"]:
        raise SystemExit(f"pipeline did not embed every image: {summary}")
    return clock.result, pipeline.loader_threads


# -- reporting ------------------------------------------------------------------------


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def spread(values: list[float], digits: int = 1) -> str:
    """The median, and the range when there is more than one value."""
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="efficientnet,clip", help="comma-separated extractors")
    parser.add_argument("--small", type=int, default=128, help="small images (<= 1 MP) per run")
    parser.add_argument("--large", type=int, default=48, help="large JPEGs (>= 8 MP) per run")
    parser.add_argument("--naive-small", type=int, default=32, help="of the small images, how many the naive loop does")
    parser.add_argument(
        "--naive-large", type=int, default=24, help="of the large images, how many the naive loop does (0: all)"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--loader-threads", type=int, default=0, help="Pipeline loader threads (0: its default)")
    parser.add_argument("--repeats", type=int, default=1, help="measure every variant this many times (median shown)")
    parser.add_argument(
        "--data-dir",
        default=os.path.join(tempfile.gettempdir(), "imgsearchd-bench-data"),
        help="where the test images are made and kept between runs",
    )
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--json", help="also write the raw numbers to this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)

    data_dir = Path(args.data_dir)
    t0 = time.perf_counter()
    sets = {
        "small": make_set(data_dir / "small", args.small, SMALL_SIZES, 3.0, args.seed),
        "large": make_set(data_dir / "large", args.large, LARGE_SIZES, 8.0, args.seed + 1),
    }
    warm = make_set(data_dir / "warmup", 2 * args.batch_size, SMALL_SIZES[:3], 2.0, args.seed + 2)
    print(f"images ready in {time.perf_counter() - t0:.1f} s under {data_dir}", file=sys.stderr)
    naive_count = {"small": args.naive_small or args.small, "large": args.naive_large or args.large}
    for paths in sets.values():
        for path in paths:  # the files are read once so every variant sees a warm page cache
            Path(path).read_bytes()

    load_before = os.getloadavg()
    results: list[dict[str, Any]] = []
    loader_threads_used = 0
    variants = ["forward", "e2e", "naive"]
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        settings: dict[str, object] = {"device": "cpu", "engine": "torch", "batch_size": args.batch_size}
        if name == "clip":
            settings["pretrained"] = "none"
        extractor = extractors.create(name, settings)
        with Image.open(warm[0]) as im:
            shape = tuple(extractor.preprocess(im.convert("RGB")).shape)
        # Warm-up: every variant once, so one-off costs (allocator, oneDNN kernels) are not timed.
        run_forward(extractor, args.batch_size, shape)
        run_naive(extractor, warm[:2])
        _, loader_threads_used = run_end_to_end(name, extractor, warm, args.loader_threads, data_dir)
        for set_name, paths in sets.items():
            runs: dict[str, list[tuple[float, float]]] = {v: [] for v in variants}
            for rep in range(args.repeats):
                # The three run back to back (rotating the order between repeats), so the
                # machine's background load hits them alike; ratios are taken per repeat.
                for variant in variants[rep % 3 :] + variants[: rep % 3]:
                    if variant == "forward":
                        runs[variant].append(run_forward(extractor, len(paths), shape))
                    elif variant == "e2e":
                        runs[variant].append(run_end_to_end(name, extractor, paths, args.loader_threads, data_dir)[0])
                    else:
                        runs[variant].append(run_naive(extractor, paths[: naive_count[set_name]]))
            row: dict[str, Any] = {
                "model": name,
                "set": set_name,
                "images": len(paths),
                "naive_images": naive_count[set_name],
                **{f"{v}_img_s": [r for r, _ in runs[v]] for v in variants},
                **{f"{v}_cpu_ms": [c for _, c in runs[v]] for v in variants},
                "e2e_over_forward": [e[0] / f[0] for e, f in zip(runs["e2e"], runs["forward"])],
                "e2e_over_naive": [e[0] / n[0] for e, n in zip(runs["e2e"], runs["naive"])],
                "load_avg_1min": os.getloadavg()[0],
            }
            results.append(row)
            print(
                f"{name} {set_name}: " + ", ".join(f"{v} {spread(row[f'{v}_img_s'])} img/s" for v in variants),
                file=sys.stderr,
            )
        del extractor
    load_after = os.getloadavg()

    print()
    print(
        f"Machine: {os.cpu_count()} CPUs ({cpu_model()}), Python {platform.python_version()}, "
        f"torch {torch.__version__}, torch intra-op threads {torch.get_num_threads()}, "
        f"loader threads {loader_threads_used}, batch size {args.batch_size}, repeats {args.repeats}, "
        f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '(unset)')}"
    )
    print(f"Load average (1 min) before/after: {load_before[0]:.2f} / {load_after[0]:.2f}")
    print(f"small: {describe_set(sets['small'])}; naive loop on {naive_count['small']} of them")
    print(f"large: {describe_set(sets['large'])}; naive loop on {naive_count['large']} of them")
    print()
    print(
        "| model | images | naive img/s | forward-only img/s | end-to-end img/s | e2e / forward | e2e / naive | target |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |")
    for row in results:
        over_fwd = statistics.median(row["e2e_over_forward"])
        over_naive = statistics.median(row["e2e_over_naive"])
        if row["set"] == "small":
            goal, got, label = TARGET_E2E_OVER_FORWARD_SMALL, over_fwd, "e2e/fwd"
        else:
            goal, got, label = TARGET_E2E_OVER_NAIVE_LARGE, over_naive, "e2e/naive"
        verdict = f"{label} >= {goal}: {'met' if got >= goal else 'MISSED'}"
        print(
            f"| {row['model']} | {row['set']} ({row['images']}) | {spread(row['naive_img_s'])} | "
            f"{spread(row['forward_img_s'])} | {spread(row['e2e_img_s'])} | "
            f"{spread(row['e2e_over_forward'], 2)} | {spread(row['e2e_over_naive'], 2)} | {verdict} |"
        )
    print()
    print("Process CPU time per image (ms) and cores the variant got (CPU time / wall time):")
    print()
    print("| model | images | naive | forward-only | end-to-end |")
    print("| --- | --- | ---: | ---: | ---: |")
    for row in results:
        cells = []
        for v in variants[2:] + variants[:2]:
            cpu_ms: list[float] = row[f"{v}_cpu_ms"]
            rates: list[float] = row[f"{v}_img_s"]
            cores = statistics.median(c * r / 1000 for c, r in zip(cpu_ms, rates))
            cells.append(f"{statistics.median(cpu_ms):.1f} ms ({cores:.2f} cores)")
        print(f"| {row['model']} | {row['set']} | " + " | ".join(cells) + " |")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "cpus": os.cpu_count(),
                    "cpu": cpu_model(),
                    "torch_threads": torch.get_num_threads(),
                    "loader_threads": loader_threads_used,
                    "batch_size": args.batch_size,
                    "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                    "load_before": load_before,
                    "load_after": load_after,
                    "results": results,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
