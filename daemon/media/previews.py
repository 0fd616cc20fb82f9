"""Embedded previews: a smaller picture a file stores beside its primary image, decoded instead of it.

A model needs about 224 pixels a side and the thumbnail store 256, while a phone's HEIC is a
12-MP grid of HEVC tiles with no reduced-size decode (1.8 s for 24 MP) and a camera's JPEG
spends most of its decode in entropy decoding that no DCT scale avoids. Many such files
carry a smaller picture of the same photo: a HEIF thumbnail item, a JPEG's MPF large
thumbnail or EXIF thumbnail. A format's finder (``heif_previews``, ``jpeg_previews``) says
which stored picture covers ``min_side`` and matches the primary; it decodes that one to check
it, ``images.decode`` makes it the model's picture (``fitted``), and the primary is not decoded at all. Every doubt falls back to the full
decode: a finder returns None, and one that raises is logged and treated as None.

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
from .limits import ImageLimits, budget_pixels
from .rgb import to_rgb


@dataclass(frozen=True)
class Preview:
    """A stored smaller picture of a file, decoded by its finder (which checks its pixels)."""

    image: Image.Image  # decoded inside the decode budget; ``fitted`` converts and shrinks it
    turn: Image.Transpose | None  # what makes it upright: the primary's orientation, as the full decode applies it
    source: str  # what it is, for logs and ``counts``: "HEIF thumbnail", "JPEG MPF preview", "EXIF thumbnail"


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


def fitted(preview: Preview, min_side: int, limits: ImageLimits) -> Image.Image:
    """The preview as the model's RGB picture: shrunk by whole factors while the shorter side
    stays >= ``min_side``, made upright. Raises ``ImageError`` as a decode does."""
    image = preview.image
    # previews are small (a 1616x1080 MPF preview, a 320x240 HEIF thumbnail) and decoded
    # already (a HEIF thumbnail costed by its file's bit depth and chroma in heif_previews):
    # what is left is the conversion, counted as RGBA at 5 bytes a pixel, converted whole
    cost = budget_pixels(image.width, image.height, image.format, 5, limits)
    with memory.DECODES.hold(cost, limits.decode_budget_pixels), decode_errors():
        factor = max(1, min(image.size) // min_side) if min_side > 0 else 1
        picture = to_rgb(image)
        if factor > 1:
            picture = picture.reduce(factor)
    counts.add(f"used: {preview.source}")
    return picture.transpose(preview.turn) if preview.turn is not None else picture
