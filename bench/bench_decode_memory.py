"""Decode memory per format: the peak each decoder really allocates, in bytes per pixel (issue 26).

For each case (a format, a mode or bit depth, a way of writing it) a picture of ``--size``
(one colour with a few diagonal lines, so every encoder writes something) is written with
Pillow, pillow-heif, tifffile, or imagecodecs where it is importable (the only writer of 10-
and 12-bit AVIF; ``pip install --target DIR imagecodecs`` and ``PYTHONPATH=DIR`` will do).
Then a fresh process per case reads the file into memory, resets its peak resident size
(``/proc/self/clear_refs`` 5) and runs ``images.decode(data, min_side)`` as the daemon does,
with the caps and the budget out of the way. The peak growth (``VmHWM`` after minus ``VmRSS``
before) over the picture's pixels (width x height from its header) is the figure the decode
budget needs (``memory.bytes_per_pixel``); "charged" is what the budget holds for the
same decode, in the same bytes per pixel, so "covered" says whether the table holds enough
(to within 1 MiB: a decoder's fixed buffers are not counted).

Fixed costs (a band of rows converted at a time, decoder threads) are folded into the
figure, so small pictures show more bytes per pixel: measure at a large ``--size``.

    .venv/bin/python bench/bench_decode_memory.py                      # 2000x1500: seconds
    .venv/bin/python bench/bench_decode_memory.py --size 11000x11000   # the table: 10-15 min on 2 cores
    .venv/bin/python bench/bench_decode_memory.py --only webp_lossless_rgb avif_rgb --json
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))

from imgsearchd.media import formats, images, memory  # noqa: E402
from imgsearchd.media.limits import ImageLimits  # noqa: E402

import image_factory as make  # noqa: E402

MIN_SIDE = 224  # the shorter side the daemon decodes to at the default framing
SLACK = 2**20  # "covered" allows a decoder's fixed buffers (up to 1 MiB, not counted by the budget)


def picture(mode: str, width: int, height: int) -> Image.Image:
    """One colour and a few thick diagonal lines, in ``mode``."""
    colour: int | tuple[int, ...] = (40, 90, 200, 128)[: len(mode)] if mode in ("RGB", "RGBA", "CMYK") else 90
    line: int | tuple[int, ...] = (200, 20, 20, 255)[: len(mode)] if mode in ("RGB", "RGBA", "CMYK") else 20
    if mode == "LA":
        colour, line = (90, 128), (20, 255)
    image = Image.new(mode, (width, height), colour)
    draw = ImageDraw.Draw(image)
    for x in range(0, width, max(1, width // 12)):
        draw.line((x, 0, width - x, height), fill=line, width=9)
    return image


def saved(image: Image.Image, fmt: str, **options: object) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **options)
    return buf.getvalue()


def rgb16(width: int, height: int, channels: int = 3) -> np.ndarray:
    """A 16-bit RGB (or RGBA) picture: a horizontal ramp in red, flat green, blue and alpha."""
    array = np.empty((height, width, channels), np.uint16)
    array[:, :, 0] = np.linspace(0, 65535, width, dtype=np.uint16)
    array[:, :, 1:] = (20000, 50000, 40000)[: channels - 1]
    return array


def tiff_rgb16(width: int, height: int) -> bytes:
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, rgb16(width, height), photometric="rgb", compression="zlib", metadata=None)
    return buf.getvalue()


def png_rgb16(width: int, height: int) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        return make.solid_png(Path(tmp) / "p.png", width, height, (40, 90, 200), bit_depth=16).read_bytes()


def heif(mode: str, width: int, height: int, **options: object) -> bytes:
    import pillow_heif

    if mode.endswith(";16"):  # pillow-heif writes 16-bit pictures as 10-bit HEIF
        pixels = rgb16(width, height, len(mode) - 3).tobytes()
        image = pillow_heif.from_bytes(mode=mode, size=(width, height), data=pixels)
        buf = io.BytesIO()
        image.save(buf, quality=60, enc_params={"preset": "ultrafast"}, **options)
        return buf.getvalue()
    return saved(picture(mode, width, height), "HEIF", quality=60, enc_params={"preset": "ultrafast"}, **options)


def avif_deep(bits: int, width: int, height: int, channels: int = 3, chroma: str = "YUV444") -> bytes:
    """A 10- or 12-bit AVIF: Pillow writes 8 bits only, imagecodecs (libavif) writes more."""
    imagecodecs = importlib.import_module("imagecodecs")  # optional: not a dependency
    array = (rgb16(width, height, channels) >> (16 - bits)).astype(np.uint16)
    pixelformat = imagecodecs.AVIF.PIXEL_FORMAT[chroma]
    return bytes(imagecodecs.avif_encode(array, level=60, speed=8, bitspersample=bits, pixelformat=pixelformat))


def animated(fmt: str, width: int, height: int, **options: object) -> bytes:
    frames = [picture("RGB", width, height), Image.new("RGB", (width, height), (10, 200, 10))]
    return saved(frames[0], fmt, save_all=True, append_images=frames[1:], **options)


@dataclass(frozen=True)
class Case:
    name: str
    write: Callable[[int, int], bytes]
    min_side: int = MIN_SIDE


def _pil(mode: str, fmt: str, **options: object) -> Callable[[int, int], bytes]:
    return lambda w, h: saved(picture(mode, w, h), fmt, **options)


CASES = [
    Case("png_rgb", _pil("RGB", "PNG")),
    Case("png_rgba", _pil("RGBA", "PNG")),
    Case("png_la", _pil("LA", "PNG")),
    Case("png_l", _pil("L", "PNG")),
    Case("png_p", _pil("P", "PNG")),
    Case("png_i16", lambda w, h: saved(Image.fromarray(rgb16(w, h)[:, :, 0]), "PNG")),
    Case("png_rgb16", png_rgb16),
    Case("webp_lossless_rgb", _pil("RGB", "WEBP", lossless=True)),
    Case("webp_lossless_rgba", _pil("RGBA", "WEBP", lossless=True)),
    Case("webp_lossy_rgb", _pil("RGB", "WEBP", quality=80)),
    Case("webp_lossy_rgba", _pil("RGBA", "WEBP", quality=80)),
    Case("webp_animated", lambda w, h: animated("WEBP", w, h, quality=80)),
    Case("tiff_rgb", _pil("RGB", "TIFF")),
    Case("tiff_lzw_rgb", _pil("RGB", "TIFF", compression="tiff_lzw")),
    Case("tiff_deflate_rgba", _pil("RGBA", "TIFF", compression="tiff_adobe_deflate")),
    Case("tiff_cmyk", _pil("CMYK", "TIFF", compression="tiff_lzw")),
    Case("tiff_rgb16", tiff_rgb16),
    Case("tiff_i16", lambda w, h: saved(Image.fromarray(rgb16(w, h)[:, :, 0]), "TIFF", compression="tiff_lzw")),
    Case("tiff_i32", lambda w, h: saved(picture("I", w, h), "TIFF", compression="tiff_adobe_deflate")),
    Case("tiff_float", lambda w, h: saved(picture("F", w, h), "TIFF", compression="tiff_adobe_deflate")),
    Case("tiff_3_pages", lambda w, h: animated("TIFF", w, h, compression="tiff_lzw")),
    Case("gif", _pil("P", "GIF")),
    Case("gif_animated", lambda w, h: animated("GIF", w, h)),
    Case("bmp", _pil("RGB", "BMP")),
    Case("jpeg_rgb", _pil("RGB", "JPEG", quality=90)),
    Case("jpeg_rgb_full", _pil("RGB", "JPEG", quality=90), min_side=0),
    Case("jpeg_cmyk", _pil("CMYK", "JPEG", quality=90)),
    Case("jpeg_cmyk_full", _pil("CMYK", "JPEG", quality=90), min_side=0),
    Case("avif_rgb", _pil("RGB", "AVIF", quality=60, speed=8)),
    Case("avif_rgb_444", _pil("RGB", "AVIF", quality=60, speed=8, subsampling="4:4:4")),
    Case("avif_rgba", _pil("RGBA", "AVIF", quality=60, speed=8)),
    Case("avif_rgba_444", _pil("RGBA", "AVIF", quality=60, speed=8, subsampling="4:4:4")),
    Case("avif_10bit", lambda w, h: avif_deep(10, w, h, chroma="YUV420")),
    Case("avif_10bit_444", lambda w, h: avif_deep(10, w, h)),
    Case("avif_10bit_rgba", lambda w, h: avif_deep(10, w, h, channels=4, chroma="YUV420")),
    Case("avif_10bit_rgba_444", lambda w, h: avif_deep(10, w, h, channels=4)),
    Case("avif_12bit_444", lambda w, h: avif_deep(12, w, h)),
    Case("heif_rgb", lambda w, h: heif("RGB", w, h)),
    Case("heif_rgb_444", lambda w, h: heif("RGB", w, h, chroma=444)),
    Case("heif_rgba", lambda w, h: heif("RGBA", w, h)),
    Case("heif_rgba_444", lambda w, h: heif("RGBA", w, h, chroma=444)),
    Case("heif_10bit", lambda w, h: heif("RGB;16", w, h)),
    Case("heif_10bit_444", lambda w, h: heif("RGB;16", w, h, chroma=444)),
    Case("heif_10bit_rgba", lambda w, h: heif("RGBA;16", w, h)),
    Case("heif_10bit_rgba_444", lambda w, h: heif("RGBA;16", w, h, chroma=444)),
]


class _Charged(memory.PixelBudget):
    """The process budget, remembering the most it was asked to hold."""

    asked = 0

    @contextmanager
    def hold(self, pixels: int, capacity: int) -> Iterator[None]:
        self.asked = max(self.asked, pixels)
        with super().hold(pixels, capacity):
            yield


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise AssertionError(field)


def child(path: str, min_side: int) -> None:
    """Decode one file as the daemon does and print the peak growth as JSON (run in its own process)."""
    data = Path(path).read_bytes()
    with Image.open(io.BytesIO(data)) as opened:
        width, height, fmt, mode = *opened.size, opened.format, opened.mode
    header = formats.bmff_header(data) if formats.sniff(data[: formats.HEAD_BYTES]) in formats.BMFF_KINDS else None
    limits = ImageLimits(max_pixels=10**10, decode_budget_pixels=10**12)
    memory.DECODES = charged = _Charged()
    base = _status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    started = time.perf_counter()
    try:
        images.decode(data, min_side, limits)
        error = None
    except Exception as exc:  # reported in the table, the other cases go on
        error = repr(exc)[:120]
    seconds = time.perf_counter() - started
    peak = _status("VmHWM") - base
    bits, chroma = (header.bits, "4:2:0" if header.subsampled else "4:4:4") if header else (8, "")
    result: dict[str, object] = {
        "width": width,
        "height": height,
        "format": fmt,
        "mode": mode,
        "bits": bits,
        "chroma": chroma,
    }
    result |= {"peak": peak, "charged": charged.asked * 4, "seconds": seconds, "error": error}
    print(json.dumps(result))


def measure(case: Case, width: int, height: int, folder: Path) -> dict[str, object]:
    """Write the case's file, decode it in a fresh process, and return what that process saw."""
    started = time.perf_counter()
    try:
        data = case.write(width, height)
    except Exception as exc:  # an encoder that is missing or refuses the size: reported, not fatal
        return {"case": case.name, "error": f"cannot make: {type(exc).__name__}: {str(exc)[:100]}"}
    made = time.perf_counter() - started
    path = folder / case.name
    path.write_bytes(data)
    run = subprocess.run(
        [sys.executable, __file__, "--child", str(path), str(case.min_side)], capture_output=True, text=True
    )
    path.unlink()
    if run.returncode != 0:
        return {"case": case.name, "error": f"child failed: {run.stderr.strip()[-200:]}"}
    result: dict[str, object] = {"case": case.name, "file_bytes": len(data), "make_seconds": round(made, 1)}
    return result | json.loads(run.stdout)


def row(result: dict[str, object]) -> str:
    if "peak" not in result:
        return f"| {result['case']} | | | | | | | {result['error']} |"
    pixels = int(result["width"]) * int(result["height"])  # type: ignore[call-overload]
    peak, charged = int(result["peak"]), int(result["charged"])  # type: ignore[call-overload]
    what = f"{result['format']} {result['mode']}" + (f" {result['bits']}-bit" if result["bits"] != 8 else "")
    what += f" {result['chroma']}" if result["chroma"] else ""
    covered = "yes" if charged >= peak - SLACK else "**no**"
    return (
        f"| {result['case']} | {what} | {int(result['file_bytes']) / 1e6:.2f} | {peak / 2**20:,.0f} "  # type: ignore[call-overload]
        f"| {peak / pixels:.2f} | {charged / pixels:.2f} | {covered} | {result['seconds']:.2f} "
        f"| {result['error'] or ''} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", default="2000x1500", help="WIDTHxHEIGHT of every picture")
    parser.add_argument("--only", nargs="*", default=[], help="case names (default: all)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], int(args.child[1]))
        return
    from bench_indexing import cpu_model  # torch comes with it: not in the children, whose memory is measured

    width, height = (int(v) for v in args.size.lower().split("x"))
    unknown = set(args.only) - {c.name for c in CASES}
    if unknown:
        parser.error(f"unknown cases: {sorted(unknown)}")
    cases = [c for c in CASES if not args.only or c.name in args.only]
    header = f"{width}x{height} ({width * height / 1e6:.1f} MP), decode to min side {MIN_SIDE}; {cpu_model()}"
    if not args.json:
        print(header)
        print("| case | Pillow format, mode | file MB | peak MiB | B/px | charged B/px | covered | s | error |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for case in cases:
            results.append(measure(case, width, height, Path(tmp)))
            if not args.json:
                print(row(results[-1]), flush=True)
    if args.json:
        print(json.dumps({"size": [width, height], "cpu": cpu_model(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
