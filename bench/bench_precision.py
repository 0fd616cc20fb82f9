"""Precision and layout: the new pipeline against round 1's fp32 eager one, side by side in one run.

For each extractor this measures, back to back and rotating the order between repeats:

* **round-1**: fp32, the plain eager model (NCHW, batch norms separate): what indexing ran before;
* **new**: the extractor as the daemon loads it on torch (``engine = "torch"``, ``precision = "auto"``:
  chosen for this CPU and checked against fp32 at load; convolutional models channels-last, batch
  norms folded; bench_engines.py compares torch with OpenVINO);
* **ORT** (CLIP only, ``--ort``): the same image tower exported to ONNX and run by ONNX Runtime
  fp32 (bench/ort_clip.py), the engine Immich's machine-learning service uses;
* optionally other explicit precisions (``--also bf16,int8``) for the forward table.

Tables: forward pass at batch 32 on pre-made tensors; end to end (``Pipeline.process`` over
small real-looking JPEGs into a fresh catalogue); end to end on 10-MP camera-like JPEGs
against forward-only at the new precision; single-image query latency (JPEG bytes -> decode,
preprocess, a forward pass of one; and one text for CLIP); the smallest cosine of each
variant's vectors to round 1's on scikit-image's photos.

Run: ``.venv/bin/python bench/bench_precision.py --repeats 3`` (``--help`` for counts;
``pip install -e '.[bench]'`` first for ``--ort``). Random weights for CLIP and ResNet, the
packaged real weights for EfficientNet.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import timm
import torch
from PIL import Image

from bench_indexing import LARGE_SIZES, SMALL_SIZES, cpu_model, describe_set, make_set, run_end_to_end, run_forward
from imgsearchd import extractors
from imgsearchd.extractors import precision
from imgsearchd.extractors.base import RANDOM_WEIGHTS_SEED, Extractor
from imgsearchd.extractors.clip import ClipExtractor
from imgsearchd.extractors.efficientnet import load_lite0_state_dict, packaged_weights_path
from imgsearchd.media import images

SETTINGS: dict[str, dict[str, Any]] = {
    "clip": {"pretrained": "none"},
    "efficientnet": {},
    "resnet": {"weights": "none"},
}


def plain_model(name: str) -> torch.nn.Module:
    """A convolutional model as round 1 built it: NCHW, batch norms as separate layers."""
    if name == "efficientnet":
        model = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=0)
        model.load_state_dict(load_lite0_state_dict(packaged_weights_path(), model.state_dict()))
    else:
        from torchvision import models

        torch.manual_seed(RANDOM_WEIGHTS_SEED)
        model = models.resnet50(weights=None)
        model.fc = torch.nn.Identity()
    return model.eval()


def make(name: str, variant: str, batch_size: int) -> Extractor:
    """One variant of an extractor: round-1, new (auto), ort, or an explicit precision."""
    # torch, every variant: round-1 swaps in the plain torch model, which OpenVINO would not run
    settings = {"device": "cpu", "engine": "torch", "batch_size": batch_size, **SETTINGS[name]}
    if variant == "round-1":
        extractor = extractors.create(name, {**settings, "precision": "fp32"})
        if extractor.channels_last:
            extractor.model, extractor.channels_last = plain_model(name), False
        return extractor
    if variant == "ort":
        from ort_clip import OrtClipExtractor, export_image_tower

        fp32 = extractors.create(name, {**settings, "precision": "fp32"})
        assert isinstance(fp32, ClipExtractor)
        return OrtClipExtractor(fp32, export_image_tower(fp32))
    return extractors.create(name, {**settings, "precision": "auto" if variant == "new" else variant})


def photos() -> list[Image.Image]:
    import skimage.data as data

    names = ("chelsea", "coffee", "astronaut", "rocket", "immunohistochemistry", "hubble_deep_field", "retina")
    return [Image.fromarray(getattr(data, n)()).convert("RGB") for n in names]


def jpeg_bytes(path: str) -> bytes:
    return Path(path).read_bytes()


def query_latency(extractor: Extractor, data: bytes, runs: int) -> float:
    """Median milliseconds from JPEG bytes to a unit vector: decode, preprocess, forward of one."""
    times = []
    for _ in range(runs + 1):
        started = time.perf_counter()
        picture = images.decode(data, extractor.decode_side)
        extractor.embed(extractor.preprocess(picture).unsqueeze(0))
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:]) * 1e3


def text_latency(extractor: Extractor, runs: int) -> float:
    times = []
    for i in range(runs + 1):
        started = time.perf_counter()
        extractor.encode_text([f"a photo of a red bicycle number {i}"])
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:]) * 1e3


def _recorder(timings: dict[str, dict[str, list[float]]]) -> Callable[[str, str, float], None]:
    def record(variant: str, key: str, value: float) -> None:
        timings[variant].setdefault(key, []).append(value)

    return record


def med(values: list[float], digits: int = 1) -> str:
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.median(values):.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def rotate(items: list[str], rep: int) -> list[str]:
    k = rep % len(items)
    return items[k:] + items[:k]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="efficientnet,clip", help="comma-separated extractors")
    parser.add_argument("--ort", action="store_true", help="add the ONNX Runtime fp32 pipeline for CLIP")
    parser.add_argument("--also", default="", help="other precisions for the forward table, e.g. bf16,int8")
    parser.add_argument("--small", type=int, default=128, help="small JPEGs (<= 1 MP) end to end")
    parser.add_argument("--large", type=int, default=32, help="10-MP camera-like JPEGs end to end")
    parser.add_argument("--forward", type=int, default=64, help="tensors per forward-pass run")
    parser.add_argument("--queries", type=int, default=15, help="single-image queries per latency run")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--data-dir",
        default=os.path.join(tempfile.gettempdir(), "imgsearchd-bench-data"),
        help="where the test images are made and kept between runs",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    data_dir = Path(args.data_dir)
    small = make_set(data_dir / "small", args.small, SMALL_SIZES, 3.0, 1234)
    large = make_set(data_dir / "large", args.large, LARGE_SIZES, 8.0, 1235)
    warm = make_set(data_dir / "warmup", 2 * args.batch_size, SMALL_SIZES[:3], 2.0, 1236)
    for path in small + large:
        Path(path).read_bytes()  # a warm page cache for every variant
    query = jpeg_bytes(small[0])
    reference_photos = photos()
    load_before = os.getloadavg()
    print(f"flags: native bf16 = {precision.native_bf16(precision.cpu_flags())}", file=sys.stderr)

    rows: list[dict[str, Any]] = []
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        variants = ["round-1", "new"] + (["ort"] if args.ort and name == "clip" else [])
        extra = [p for p in args.also.split(",") if p]
        made = {v: make(name, v, args.batch_size) for v in variants + extra}
        with Image.open(warm[0]) as im:
            shape = tuple(made["new"].preprocess(im.convert("RGB")).shape)
        baseline = made["round-1"].embed_images(reference_photos)
        for variant, extractor in made.items():  # warm-up: one-off costs are not timed
            run_forward(extractor, args.batch_size, shape)
            if variant in variants:
                run_end_to_end(name, extractor, warm, 0, data_dir)
        timings: dict[str, dict[str, list[float]]] = {v: {} for v in made}
        record = _recorder(timings)
        for rep in range(args.repeats):
            for variant in rotate(list(made), rep):
                extractor = made[variant]
                record(variant, "forward", run_forward(extractor, args.forward, shape)[0])
                if variant not in variants:
                    continue
                record(variant, "e2e_small", run_end_to_end(name, extractor, small, 0, data_dir)[0][0])
                record(variant, "query_ms", query_latency(extractor, query, args.queries))
                if extractor.supports_text and variant != "ort":
                    record(variant, "text_ms", text_latency(extractor, args.queries))
                if variant == "new":
                    record(variant, "e2e_large", run_end_to_end(name, extractor, large, 0, data_dir)[0][0])
        for variant, extractor in made.items():
            vectors = extractor.embed_images(reference_photos)
            rows.append(
                {
                    "model": name,
                    "variant": variant,
                    "precision": getattr(extractor, "precision", None),
                    "min_cosine": float(np.min(np.sum(vectors * baseline, axis=1))),
                    **timings[variant],
                }
            )
        print(f"{name} done", file=sys.stderr)
        del made
    report(rows, args, small, large, load_before)
    return 0


def ratio(rows: list[dict[str, Any]], model: str, key: str, variant: str, base: str) -> str:
    """Median of the per-repeat ratios variant/base for one measurement."""
    by = {r["variant"]: r for r in rows if r["model"] == model}
    if variant not in by or base not in by or key not in by[variant] or key not in by[base]:
        return "-"
    return med([a / b for a, b in zip(by[variant][key], by[base][key])], 2)


def report(rows: list[dict[str, Any]], args: Any, small: list[str], large: list[str], load: tuple) -> None:
    print(
        f"\nMachine: {os.cpu_count()} CPUs ({cpu_model()}; native bf16: "
        f"{precision.native_bf16(precision.cpu_flags()) or 'no'}), Python {platform.python_version()}, "
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {args.batch_size}, "
        f"repeats {args.repeats}; load average before/after {load[0]:.2f} / {os.getloadavg()[0]:.2f}"
    )
    print(f"small: {describe_set(small)}\nlarge: {describe_set(large)}\n")
    print("| model | variant | precision in use | forward img/s | vs round-1 | min cosine to round-1 |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    for r in rows:
        used = r["precision"].used if r["precision"] is not None else "fp32 (ONNX Runtime)"
        print(
            f"| {r['model']} | {r['variant']} | {used} | {med(r['forward'])} | "
            f"{ratio(rows, r['model'], 'forward', r['variant'], 'round-1')} | {r['min_cosine']:.5f} |"
        )
    print("\n| model | variant | end-to-end small img/s | vs round-1 | vs ORT | query ms (1 image) | text ms |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        if "e2e_small" not in r:
            continue
        print(
            f"| {r['model']} | {r['variant']} | {med(r['e2e_small'])} | "
            f"{ratio(rows, r['model'], 'e2e_small', r['variant'], 'round-1')} | "
            f"{ratio(rows, r['model'], 'e2e_small', r['variant'], 'ort')} | {med(r['query_ms'])} | "
            f"{med(r['text_ms']) if 'text_ms' in r else '-'} |"
        )
    print("\n| model | 10-MP end-to-end img/s (new) | forward-only img/s (new) | e2e / forward |")
    print("| --- | ---: | ---: | ---: |")
    for r in rows:
        if "e2e_large" in r:
            ratios = [e / f for e, f in zip(r["e2e_large"], r["forward"])]
            print(f"| {r['model']} | {med(r['e2e_large'])} | {med(r['forward'])} | {med(ratios, 2)} |")


if __name__ == "__main__":
    sys.exit(main())
