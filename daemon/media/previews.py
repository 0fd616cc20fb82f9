"""Embedded previews: a smaller picture a file stores beside its primary image, decoded instead of it.

A model needs about 224 pixels a side and the thumbnail store 256, while a phone's HEIC is a
12-MP grid of HEVC tiles with no reduced-size decode (1.8 s for 24 MP) and a camera's JPEG
spends most of its decode in entropy decoding that no DCT scale avoids. Many such files
carry a smaller picture of the same photo: a HEIF thumbnail item, a JPEG's MPF large
thumbnail or EXIF thumbnail. A format's finder (``heif_previews``, ``jpeg_previews``) says
which stored picture is large enough in ``ImageLimits.previews``' mode (``refusal``:
"faithful" only one whose vectors stay near the full picture's: mean cosine 0.99 or more,
min 0.977 on real photos; "fast" any that covers ``min_side``) and matches the primary;
it decodes that one to check it, ``images.decode`` makes it the model's picture (``fitted``:
the size the primary's own decode would have), and the primary is not decoded at all. Every doubt
falls back to the full decode: a finder returns None, and one that raises is logged and
treated as None.

``counts`` says how many pictures came from each kind of preview and how many files were
turned down and why (tests and benchmarks read it).
"""

from __future__ import annotations

import collections
import threading
from dataclasses import dataclass

from PIL import Image

from . import memory
from .failures import decode_errors
from .limits import FAITHFUL, ImageLimits, budget_pixels
from .rgb import to_rgb

# "faithful" mode (``[images] previews``): a preview stands in only when its shorter side is at
# least FAITHFUL_FACTOR times the decode side and, for a JPEG, its quality (read off its
# luminance table) at least FAITHFUL_QUALITY. Measured on 112 real photos (82 camera and phone
# JPEGs, Debian's wallpapers, skimage's): previews made as cameras make them (Lanczos, then JPEG),
# decoded and ``fitted`` as here, cosine of the vector to the full decode's (EfficientNet-Lite0
# fp32), mean / min at decode side 224 | 256: 2x q90 0.9945 / 0.977 | 0.9960 / 0.982, q85 0.991
# / 0.960 | 0.994 / 0.971, q75 0.982 / 0.88 | 0.987 / 0.90; 1.5x q90 0.9902 / 0.948 | 0.994 /
# 0.970; 3x q90 0.996 / 0.981 | 0.997 / 0.981. Lossless (PNG) previews at 2x: 0.997 / 0.982 |
# 0.998 / 0.980, a floor no preview passes (a Galaxy Note 3's photo, at every size). So 2x q90
# keeps the mean over 0.99 at both sides; its min (0.977: a Kodak M5370's photo at 224) is not
# 1, and 3x would raise it to 0.981 only. The EXIF thumbnails of real phones (512x384 at
# q50-75: 0.91-0.99) are not the same picture for the model, nor are iPhones' 320x240 HEIC
# thumbnails (0.90-0.95); a camera's MPF preview (1440x1080 q92) is (0.998). A HEIC
# thumbnail's quality cannot be read: the size rule alone, set by real iPhones' thumbnails
# (1.1x and 1.7x the side: 0.95 and 0.90, sharpened otherwise than the primary).
# docs/formats.md has the table.
FAITHFUL_FACTOR = 2.0
FAITHFUL_QUALITY = 90
UNDER_FAITHFUL = f"under {FAITHFUL_FACTOR:g}x the decode side"
# How ``fitted`` brings a preview to the primary's decoded size. The filters agree within 0.001
# (side 224, 40 of the photos, q90, mean / min at 2x and 3x: bicubic 0.9950 / 0.977, 0.9965 /
# 0.989; Lanczos 0.9942 / 0.980, 0.9960 / 0.988; bilinear 0.9939 / 0.981, 0.9946 / 0.984;
# reducing by whole factors first: as without), and cost does not: a 720x540 preview to 456x342
# took 7.3 ms of CPU with Lanczos, 4.2 bicubic, 2.6 bilinear (busy machine). Bicubic: the models' own filter.
_FILTER = Image.Resampling.BICUBIC


@dataclass(frozen=True)
class Preview:
    """A stored smaller picture of a file, decoded by its finder (which checks its pixels)."""

    image: Image.Image  # decoded inside the decode budget; ``fitted`` converts and shrinks it
    turn: Image.Transpose | None  # what makes it upright: the primary's orientation, as the full decode applies it
    source: str  # what it is, for logs and ``counts``: "HEIF thumbnail", "JPEG MPF preview", "EXIF thumbnail"
    # the picture the primary's own decode would give (``decoded_size``; for a JPEG after its
    # draft), the preview's way up: ``fitted`` resizes the preview to it
    size: tuple[int, int]


class _Counts:
    """Thread-safe counters by name (the loader threads decode at once)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: collections.Counter[str] = collections.Counter()

    def add(self, name: str) -> None:
        with self._lock:
            self._counts[name] += 1

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def clear(self) -> None:
        with self._lock:
            self._counts.clear()


# "used: <source>" per picture taken from a preview; "declined: <reason>" per file whose
# preview was looked at and turned down (full decode instead).
counts = _Counts()


def refusal(side: int, min_side: int, limits: ImageLimits) -> str:
    """Why a preview whose shorter side is ``side`` cannot stand for the primary in ``limits``'
    mode ("too small", ``UNDER_FAITHFUL``), or "" when it is large enough."""
    if side < min_side:
        return "too small"
    if limits.previews == FAITHFUL and side < FAITHFUL_FACTOR * min_side:
        return UNDER_FAITHFUL
    return ""


def shrink_factor(size: tuple[int, int], min_side: int) -> int:
    """The box-reduce factor the full decode applies (``images._fit``): the largest that keeps
    the shorter side >= ``min_side`` (1: none)."""
    return max(1, min(size) // min_side) if min_side > 0 else 1


def decoded_size(size: tuple[int, int], min_side: int) -> tuple[int, int]:
    """The size of the picture the full decode gives from one of ``size`` (after a JPEG's
    draft): reduced by ``shrink_factor``, each side rounded up as ``Image.reduce`` rounds it."""
    factor = shrink_factor(size, min_side)
    return (-(-size[0] // factor), -(-size[1] // factor))


def fitted(preview: Preview, min_side: int, limits: ImageLimits) -> Image.Image:
    """The preview as the model's RGB picture: resized to the size the primary's own decode
    gives (``Preview.size``; never enlarged), made upright. Raises ``ImageError`` as a decode does."""
    image = preview.image
    # previews are small (a 1616x1080 MPF preview, a 320x240 HEIF thumbnail) and decoded
    # already (a HEIF thumbnail costed by its file's bit depth and chroma in heif_previews):
    # what is left is the conversion, counted as RGBA at 5 bytes a pixel, converted whole
    cost = budget_pixels(image.width, image.height, image.format, 5, limits)
    with memory.DECODES.hold(cost, limits.decode_budget_pixels), decode_errors():
        picture = to_rgb(image)
        if min(picture.size) > min(preview.size):
            # the primary's size, not just min_side: a 448-pixel preview reduced to exactly 224
            # reached the model unresampled while the full decode (224-447) was resampled by
            # the model: vectors 0.984 mean, 0.934 min at 2x (EfficientNet, side 224)
            picture = picture.resize(preview.size, _FILTER)
    counts.add(f"used: {preview.source}")
    return picture.transpose(preview.turn) if preview.turn is not None else picture
