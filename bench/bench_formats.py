"""Decode and metadata cost per image format: imgsearchd's way vs the naive way (issue 14).

One scikit-image photo (``coffee``, 3:2) upscaled to ``--megapixels`` (24) with sensor-like
grain, so the encoders see a photo's entropy rather than a smooth upscale, is written as
JPEG (quality 90), PNG, HEIC (pillow-heif, quality 50: about a phone's bytes per pixel), AVIF (Pillow, quality 85) and DNG
(``tests/image_factory.dng_bytes``: a 16-bit RGGB mosaic, once with an embedded 8-bit RGB
preview of about 1.7 MP as cameras write one, once without). Every file carries EXIF (a
capture date with its offset, make and model, GPS) so that the metadata reader does its
real work. For each format it times, alternating which goes first, median over repeats:

- **ours**: ``images.decode(data, min_side)`` (draft mode for JPEG, the embedded preview or
  a half-size demosaic for RAW), the loader's whole path to the model's picture;
- **naive**: ``Image.open`` + ``load`` + ``convert("RGB")`` at full size, and for RAW
  rawpy's full ``postprocess()``;
- **metadata**: ``photo_metadata.read_metadata`` (bytes in memory) and
  ``read_metadata_file`` (the header from a file in the page cache), against both decodes.

Wall time (``time.perf_counter``): libheif, dav1d and LibRaw may use more than one thread.

    PYTHONPATH=build/pp .venv/bin/python bench/bench_formats.py  # 24 MP: 1.5 min (+2 to make the files)
    PYTHONPATH=build/pp .venv/bin/python bench/bench_formats.py --megapixels 0.3 --repeats 1
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from bench_indexing import cpu_model  # noqa: E402
from imgsearchd.media import formats, images, photo_metadata  # noqa: E402
from imgsearchd.media.photo_metadata import PhotoMetadata  # noqa: E402

from image_factory import dng_bytes  # noqa: E402

DATA_VERSION = 2
# The shorter side the daemon decodes to at the default framing (squash, 224 for every
# extractor; EfficientNet's crop framing would ask for 256).
MIN_SIDE = 224
PREVIEW_MEGAPIXELS = 1.7  # a camera's embedded preview (1-6 MP); the README's 24 MP DNG had 1.7
TAKEN = "2024:06:01 12:34:56"
KINDS = ["JPEG", "PNG", "HEIC", "AVIF", "DNG + preview", "DNG, no preview"]
NAMES = ["photo.jpg", "photo.png", "photo.heic", "photo.avif", "preview.dng", "bare.dng"]
# Pillow's format name and save options of each raster kind (the HEIF plugin is pillow-heif's).
SAVE: dict[str, tuple[str, dict[str, int]]] = {
    "JPEG": ("JPEG", {"quality": 90}),
    "PNG": ("PNG", {"compress_level": 6}),
    "HEIC": ("HEIF", {"quality": 50}),  # a phone's size (3.6 MB at 24 MP); q85 with grain: libde265 fails
    "AVIF": ("AVIF", {"quality": 85}),
}


def say(*parts: object) -> None:
    print(*parts, file=sys.stderr, flush=True)


def photo(megapixels: float, seed: int) -> Image.Image:
    """scikit-image's ``coffee`` (600x400) upscaled to ``megapixels`` at 3:2, with grain."""
    import skimage.data

    width = int(math.sqrt(megapixels * 1e6 * 1.5)) // 2 * 2
    height = int(width / 1.5) // 2 * 2
    big = Image.fromarray(skimage.data.coffee()).resize((width, height), Image.Resampling.BICUBIC)
    array = np.asarray(big, dtype=np.int16)
    noise = np.random.default_rng(seed).normal(0.0, 6.0, size=array.shape).astype(np.int16)
    return Image.fromarray(np.clip(array + noise, 0, 255).astype(np.uint8))


def exif_block() -> Image.Exif:
    """A camera's EXIF: make, model, orientation, a capture date with offset, a GPS position."""
    exif = Image.Exif()
    exif[0x010F] = "Canon"  # Make
    exif[0x0110] = "Canon EOS R5"  # Model
    exif[0x0112] = 1  # Orientation
    sub = exif.get_ifd(0x8769)
    sub[0x9003] = TAKEN  # DateTimeOriginal
    sub[0x9011] = "+02:00"  # OffsetTimeOriginal
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2], gps[3], gps[4] = "N", (48.0, 51.0, 24.0), "E", (2.0, 21.0, 3.0)
    return exif


def make_files(folder: Path, megapixels: float, seed: int) -> dict[str, Path]:
    """The test pictures in ``folder``, made once per spec (a 24 MP HEIC or AVIF takes a while to encode)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {kind: folder / name for kind, name in zip(KINDS, NAMES)}
    stamp = folder / "made.json"
    spec = {"version": DATA_VERSION, "megapixels": megapixels, "seed": seed}
    if stamp.exists() and json.loads(stamp.read_text()) == spec and all(p.exists() for p in paths.values()):
        return paths
    picture = photo(megapixels, seed)
    exif = exif_block().tobytes()
    for kind, (pillow_name, options) in SAVE.items():
        t = time.monotonic()
        buf = io.BytesIO()
        picture.save(buf, pillow_name, exif=exif, **options)
        data = buf.getvalue()
        paths[kind].write_bytes(data)
        say(f"made {kind}: {len(data) / 1e6:.1f} MB in {time.monotonic() - t:.1f} s")
    tags = [
        (271, "s", 0, "Canon", True),
        (272, "s", 0, "Canon EOS R5", True),
        (36867, "s", 0, TAKEN, True),  # DateTimeOriginal in IFD0, as some RAW writers do
    ]
    scale = math.sqrt(PREVIEW_MEGAPIXELS * 1e6 / (picture.width * picture.height))
    preview = picture.resize((round(picture.width * scale), round(picture.height * scale)), Image.Resampling.BILINEAR)
    for kind, with_preview in (("DNG + preview", preview if scale < 1 else picture), ("DNG, no preview", None)):
        t = time.monotonic()
        data = dng_bytes(picture, preview=with_preview, extra_tags=tags)
        paths[kind].write_bytes(data)
        say(f"made {kind}: {len(data) / 1e6:.1f} MB in {time.monotonic() - t:.1f} s")
    stamp.write_text(json.dumps(spec))
    return paths


def naive(data: bytes, kind: str) -> Image.Image:
    """The naive way: the whole picture at full size in RGB (rawpy's full postprocess for RAW)."""
    if kind.startswith("DNG"):
        import rawpy

        with rawpy.imread(io.BytesIO(data)) as raw:
            return Image.fromarray(raw.postprocess())
    with Image.open(io.BytesIO(data)) as image:
        image.load()
        return image.convert("RGB")


def timed(work: Callable[[], object]) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


@dataclass
class Result:
    """Median seconds of each way for one file, and what they gave."""

    size: int
    ours_size: tuple[int, int]
    facts: PhotoMetadata
    ours: float
    naive: float
    meta: float
    meta_file: float


def measure(path: Path, kind: str, min_side: int, repeats: int) -> Result:
    """Median seconds of ours, naive and the metadata reads of one file, and what each gave."""
    data = path.read_bytes()
    mtime_ns = path.stat().st_mtime_ns
    ours = images.decode(data, min_side)  # warm-up, and the sizes for the table
    full = naive(data, kind)
    facts = photo_metadata.read_metadata_file(str(path), mtime_ns, 100 << 20)
    assert full.size[0] * full.size[1] >= ours.size[0] * ours.size[1], (full.size, ours.size)
    ours_size = ours.size
    del ours, full
    times: dict[str, list[float]] = {"ours": [], "naive": [], "meta": [], "meta_file": []}
    steps: dict[str, Callable[[], object]] = {
        "ours": lambda: images.decode(data, min_side),
        "naive": lambda: naive(data, kind),
    }
    meta_rounds = max(20, repeats)  # a header read is short: more rounds for a steady median
    for rep in range(repeats):
        for name in list(steps) if rep % 2 == 0 else list(steps)[::-1]:
            times[name].append(timed(steps[name]))
    for _ in range(meta_rounds):
        times["meta"].append(timed(lambda: photo_metadata.read_metadata(data, mtime_ns)))
        times["meta_file"].append(timed(lambda: photo_metadata.read_metadata_file(str(path), mtime_ns, 100 << 20)))
    medians = {name: statistics.median(values) for name, values in times.items()}
    return Result(len(data), ours_size, facts, **medians)


def ms(seconds: float) -> str:
    value = seconds * 1000
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}" if value >= 0.1 else f"{value:.3f}"


def ratio(value: float) -> str:
    return f"{value:.1f}x" if value < 10 else f"{value:.0f}x"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megapixels", type=float, default=24.0, help="size of the test pictures")
    parser.add_argument("--repeats", type=int, default=5, help="decodes per way and format (median shown)")
    parser.add_argument("--min-side", type=int, default=MIN_SIDE, help="decode side (224: the default framing)")
    parser.add_argument("--formats", nargs="+", choices=KINDS, default=KINDS, metavar="KIND", help=", ".join(KINDS))
    parser.add_argument("--data-dir", default=os.path.join(tempfile.gettempdir(), "imgsearchd-bench-formats"))
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args(argv)
    if not (formats.HEIF_AVAILABLE and formats.AVIF_AVAILABLE and formats.RAW_AVAILABLE):
        raise SystemExit(f"bench_formats needs pillow-heif, Pillow's AVIF and rawpy: {formats.available()}")

    paths = make_files(Path(args.data_dir) / f"{args.megapixels:g}mp", args.megapixels, args.seed)
    load_before = os.getloadavg()
    results: dict[str, Result] = {}
    for kind in args.formats:
        r = results[kind] = measure(paths[kind], kind, args.min_side, args.repeats)
        say(f"{kind}: ours {ms(r.ours)} ms, naive {ms(r.naive)} ms, metadata {ms(r.meta_file)} ms")
    load_after = os.getloadavg()

    import pillow_heif
    import rawpy

    print(
        f"Machine: {os.cpu_count()} CPUs ({cpu_model()}), Python {platform.python_version()}, Pillow {PIL.__version__}, "
        f"pillow-heif {pillow_heif.__version__} (libheif {pillow_heif.libheif_version()}), "
        f"rawpy {rawpy.__version__} (LibRaw {rawpy.libraw_version}); "
        f"{args.megapixels:g} MP pictures, decode side {args.min_side}, {args.repeats} repeats (median, wall ms)"
    )
    print(
        f"Load average (1 / 5 min) before: {load_before[0]:.2f} / {load_before[1]:.2f}, "
        f"after: {load_after[0]:.2f} / {load_after[1]:.2f}\n"
    )
    print("| format | file MB | ours: `images.decode` ms | gives | naive full decode ms | naive / ours |")
    print("|---|---:|---:|---|---:|---:|")
    for kind, r in results.items():
        w, h = r.ours_size
        print(f"| {kind} | {r.size / 1e6:.1f} | {ms(r.ours)} | {w}x{h} | {ms(r.naive)} | {ratio(r.naive / r.ours)} |")
    print(
        "\n| format | `read_metadata` (bytes) ms | `read_metadata_file` ms | `images.decode` / `read_metadata_file` | naive decode / `read_metadata_file` | what it read |"
    )
    print("|---|---:|---:|---:|---:|---|")
    for kind, r in results.items():
        f = r.facts
        print(
            f"| {kind} | {ms(r.meta)} | {ms(r.meta_file)} | {ratio(r.ours / r.meta_file)} | {ratio(r.naive / r.meta_file)} "
            f"| {f.taken} ({f.taken_from}; {f.width}x{f.height}, {f.camera}, GPS {f.has_gps}) |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
