"""Loader-path CPU time per image, stage by stage, old and new side by side (issue 11, decode).

For small JPEGs (<= 1 MP) and camera-like 8-12 MP JPEGs (bench_indexing's sets: scikit-image
sample photos upscaled with grain, quality 90, about 2.8 MB each) this times, image by
image, what ``Pipeline._load`` does to a file: read, hash, Pillow header + draft, decode
(``load``), ``_fit``, ``ResizeCrop``, and the tensor step. Every stage is timed with
``time.thread_time()``: CPU time of this thread, so a busy machine slows the run but moves
the numbers far less than wall time would. Torch runs on one intra-op thread here (unless
``--torch-threads``) so that the tensor step's work is all on this thread and in the count.

"old" is the tensor step as it was (torchvision ``ToTensor`` + ``Normalize``), "new" is
``model_transform`` as it is now; the other stages are the same code in both and show the
noise. The two pipelines take each file in turn, one right after the other (alternating
which goes first), and the median over repeats of each one's mean per image is shown with
the ratio new/old.

``--turbojpeg`` adds a row for decoding through libjpeg-turbo's TurboJPEG API (PyTurboJPEG
1.x and Debian's libturbojpeg0, neither a dependency) at the scale draft mode picks, with the
largest pixel difference to Pillow's decode. ``--cosine`` embeds both pipelines' tensors of
the scikit-image photos and of the first 16 files of each set with EfficientNet-Lite0's real
weights and prints the smallest cosine.

Run: ``PYTHONPATH=build/pp .venv/bin/python bench/bench_decode.py`` (``--help`` for counts).
"""

from __future__ import annotations

import argparse
import io
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
import PIL
import torch
from PIL import Image, features
from torchvision import transforms

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_indexing import LARGE_SIZES, SMALL_SIZES, base_photos, cpu_model, make_set
from imgsearchd.extractors.crop import ResizeCrop, model_transform
from imgsearchd.media import files, images
from imgsearchd.media.limits import ImageLimits

# decode side, resize, crop, resampling, mean, std of each extractor's preprocessing.
MODELS: dict[str, tuple[int, int, int, Image.Resampling, tuple[float, ...], tuple[float, ...]]] = {
    "efficientnet": (256, 256, 224, Image.Resampling.BICUBIC, (0.498,) * 3, (0.502,) * 3),
    "resnet": (232, 232, 224, Image.Resampling.BILINEAR, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    "clip": (
        224,
        224,
        224,
        Image.Resampling.BICUBIC,
        (0.48145466, 0.4578275, 0.40821073),
        (0.26862954, 0.26130258, 0.27577711),
    ),
}
STAGES = ["read", "hash", "header+draft", "decode (load)", "_fit", "ResizeCrop", "tensor"]
Tensorise = Callable[[Image.Image], torch.Tensor]


def pipelines(model: str) -> tuple[int, ResizeCrop, dict[str, Tensorise]]:
    """The decode side, the crop, and the old and new tensor steps of ``model``."""
    side, resize, crop, resample, mean, std = MODELS[model]
    new = model_transform(resize, crop, resample, mean, std)
    old = transforms.Compose([transforms.ToTensor(), transforms.Normalize(mean, std)])
    return side, new.transforms[0], {"old": old, "new": new.transforms[1]}


def load_staged(path: str, side: int, crop: ResizeCrop, tensorise: Tensorise, times: dict[str, float]) -> torch.Tensor:
    """One file through the loader path (``read_file``, ``content_hash``, ``decode``'s steps,
    ``preprocess``), adding each stage's CPU seconds to ``times``."""
    limits = ImageLimits()
    clock = time.thread_time
    t0 = clock()
    file = files.read_file(path, limits)
    t1 = clock()
    file.content_hash  # noqa: B018 - the hash is the work
    t2 = clock()
    opened = images._open(file.data, side, limits)
    t3 = clock()
    opened.load()
    t4 = clock()
    picture = images._fit(opened, side)
    t5 = clock()
    cropped = crop(picture)
    t6 = clock()
    tensor = tensorise(cropped)
    t7 = clock()
    marks = [t0, t1, t2, t3, t4, t5, t6, t7]
    for stage, start, end in zip(STAGES, marks, marks[1:]):
        times[stage] += end - start
    return tensor


def turbo_decoder() -> Callable[[bytes, int], np.ndarray] | None:
    """Decoding through TurboJPEG at draft mode's scale, when PyTurboJPEG 1.x and the library are there."""
    try:
        from turbojpeg import TJPF_RGB, TurboJPEG  # type: ignore[import-not-found]

        jpeg = TurboJPEG()
    except Exception as exc:  # not installed, or the library is missing or too new for the module
        print(f"TurboJPEG row skipped: {type(exc).__name__}: {exc}", file=sys.stderr)
        return None

    def decode(data: bytes, side: int) -> np.ndarray:
        width, height, _, _ = jpeg.decode_header(data)
        most = min(width // side, height // side)
        scale = next(((1, s) for s in (8, 4, 2) if most >= s), None)
        result: np.ndarray = jpeg.decode(data, pixel_format=TJPF_RGB, scaling_factor=scale)
        return result

    return decode


def measure(paths: list[str], model: str, repeats: int, turbo: Callable[[bytes, int], np.ndarray] | None) -> dict:
    """Per variant, per repeat, the mean CPU milliseconds per image of every stage."""
    side, crop, tensorisers = pipelines(model)
    for path in paths[:3]:  # warm-up: imports, allocator, the page cache
        for tensorise in tensorisers.values():
            load_staged(path, side, crop, tensorise, dict.fromkeys(STAGES, 0.0))
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in tensorisers}
    turbo_runs: list[float] = []
    order = list(tensorisers)
    for rep in range(repeats):
        times = {name: dict.fromkeys(STAGES, 0.0) for name in tensorisers}
        turbo_time = 0.0
        for i, path in enumerate(paths):
            # Image by image, each variant right after the other (first one, then the other),
            # so that a change in the machine's load hits both alike.
            for name in order if (rep + i) % 2 == 0 else order[::-1]:
                load_staged(path, side, crop, tensorisers[name], times[name])
            if turbo is not None:
                data = Path(path).read_bytes()
                start = time.thread_time()
                turbo(data, side)
                turbo_time += time.thread_time() - start
        for name in tensorisers:
            runs[name].append({k: v / len(paths) * 1e3 for k, v in times[name].items()})
        turbo_runs.append(turbo_time / len(paths) * 1e3)
    result: dict[str, Any] = {"runs": runs}
    if turbo is not None:
        worst = 0
        for path in paths[:16]:
            data = Path(path).read_bytes()
            pillow = images._open(data, side, ImageLimits())
            pillow.load()
            ours = np.asarray(pillow.convert("RGB"), dtype=np.int16)
            theirs = turbo(data, side).astype(np.int16)
            worst = max(worst, int(np.abs(ours - theirs).max()) if ours.shape == theirs.shape else 999)
        result["turbo"] = (turbo_runs, worst)
    return result


def median_stage(runs: list[dict[str, float]], stage: str) -> float:
    return statistics.median(run[stage] for run in runs)


def report(name: str, paths: list[str], result: dict) -> None:
    runs = result["runs"]
    print(f"\n{name}: {describe(paths)}\n")
    print("| stage | old CPU ms/image | new CPU ms/image | new / old |")
    print("| --- | ---: | ---: | ---: |")
    for stage in STAGES:
        old, new = median_stage(runs["old"], stage), median_stage(runs["new"], stage)
        print(f"| {stage} | {old:.3f} | {new:.3f} | {new / max(old, 1e-9):.2f} |")
    totals = {v: statistics.median(sum(run.values()) for run in runs[v]) for v in ("old", "new")}
    print(f"| **loader total** | {totals['old']:.2f} | {totals['new']:.2f} | {totals['new'] / totals['old']:.3f} |")
    if "turbo" in result:
        turbo_runs, worst = result["turbo"]
        pillow = statistics.median(run["header+draft"] + run["decode (load)"] for run in runs["new"])
        turbo = statistics.median(turbo_runs)
        print(
            f"\nTurboJPEG header + decode at the same scale: {turbo:.2f} ms vs Pillow {pillow:.2f} ms "
            f"({turbo / pillow:.2f}x, {(pillow - turbo) / totals['new']:.1%} of the loader); "
            f"largest pixel difference to Pillow on 16 files: {worst}"
        )


def describe(paths: list[str]) -> str:
    pixels = []
    for path in paths:
        with Image.open(path) as im:
            pixels.append(im.size[0] * im.size[1] / 1e6)
    size = statistics.mean(os.path.getsize(p) for p in paths) / 1e6
    return f"{len(paths)} JPEGs, {min(pixels):.2f}-{max(pixels):.2f} MP (mean {statistics.mean(pixels):.2f}), {size:.2f} MB mean"


def cosine(sets: dict[str, list[str]]) -> None:
    """EfficientNet-Lite0 (real weights) vectors of the old and new tensors: the smallest cosine."""
    from imgsearchd import extractors

    extractor = extractors.create("efficientnet", {"device": "cpu", "engine": "torch", "batch_size": 16})
    side, crop, tensorisers = pipelines("efficientnet")
    pictures = []
    for photo in base_photos():
        buf = io.BytesIO()
        Image.fromarray(photo).save(buf, "JPEG", quality=92)
        pictures.append(images.decode(buf.getvalue(), side))
    for paths in sets.values():
        pictures += [images.load_image(path, side) for path in paths[:16]]
    tensors = {name: torch.stack([t(crop(p)) for p in pictures]) for name, t in tensorisers.items()}
    vectors = {name: extractor.embed(batch) for name, batch in tensors.items()}
    old, new = vectors["old"].astype(np.float64), vectors["new"].astype(np.float64)
    cosines = (old * new).sum(axis=1) / np.linalg.norm(old, axis=1) / np.linalg.norm(new, axis=1)
    print(
        f"\nEfficientNet-Lite0 (real weights), {len(pictures)} pictures: min cosine old vs new "
        f"{cosines.min():.9f}; largest difference: tensors {float((tensors['old'] - tensors['new']).abs().max()):.2e}, "
        f"vectors {float(np.abs(old - new).max()):.2e}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(MODELS), default="efficientnet", help="whose preprocessing")
    parser.add_argument("--small", type=int, default=128, help="small JPEGs (<= 1 MP)")
    parser.add_argument("--large", type=int, default=48, help="camera-like 8-12 MP JPEGs")
    parser.add_argument("--repeats", type=int, default=4, help="passes over each set per variant (median shown)")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch intra-op threads (1: all work counted)")
    parser.add_argument("--turbojpeg", action="store_true", help="also time TurboJPEG's decode (PyTurboJPEG 1.x)")
    parser.add_argument("--cosine", action="store_true", help="also compare EfficientNet-Lite0 vectors old vs new")
    parser.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(), "imgsearchd-bench-data"))
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.torch_threads)

    data_dir = Path(args.data_dir)
    sets = {
        "small": make_set(data_dir / "small", args.small, SMALL_SIZES, 3.0, args.seed),
        "large": make_set(data_dir / "large", args.large, LARGE_SIZES, 8.0, args.seed + 1),
    }
    turbo = turbo_decoder() if args.turbojpeg else None
    load_before = os.getloadavg()
    results = {name: measure(paths, args.model, args.repeats, turbo) for name, paths in sets.items()}
    load_after = os.getloadavg()

    print(
        f"Machine: {os.cpu_count()} CPUs ({cpu_model()}), Python {platform.python_version()}, "
        f"Pillow {PIL.__version__} (libjpeg-turbo {features.version('libjpeg_turbo')}), torch {torch.__version__}, "
        f"torch intra-op threads {torch.get_num_threads()}; preprocessing of {args.model}; "
        f"{args.repeats} repeats per variant"
    )
    print(
        f"Load average (1 / 5 min) before: {load_before[0]:.2f} / {load_before[1]:.2f}, after: {load_after[0]:.2f} / {load_after[1]:.2f}"
    )
    for name, paths in sets.items():
        report(name, paths, results[name])
    if args.cosine:
        cosine(sets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
