"""Bounds on decoding memory: what a decode costs, a process-wide budget, and freed heap given back.

A decode allocates more than the picture it gives: Pillow keeps RGB as 4 bytes a pixel, and
WebP's decoder holds 16 (two canvases and two copies), AVIF's and HEIF's 7 to 20 (their YUV
planes), so a 6.8 KB lossless WebP of 16383x10860 took 2.7 GiB. ``bytes_per_pixel`` says, by
format and mode, what decoding costs (measured: bench/bench_decode_memory.py), and
``budget_pixels`` turns that into the budget's unit. ``DECODES`` lets decodes run together
only while their costs fit one budget (``images`` refuses one that alone exceeds it, before
decoding). ``give_back`` returns freed heap to the system.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager

# The budget's unit: a pixel of RGB as Pillow keeps it (``images.decode_budget_megapixels``
# counts these, so a config written when every decode was counted so keeps its meaning).
BUDGET_PIXEL_BYTES = 4

# Peak bytes per pixel of ``images.decode`` to the model's size (min_side 224), measured with
# bench/bench_decode_memory.py at 11000x11000 (121 MP; AMD EPYC, Pillow 13.0, libwebp 1.6,
# libavif 1.4.2 with dav1d, pillow-heif 1.9 with libheif 1.23.7; BENCHMARKS.md "Decode memory
# per format (issue 26)") and rounded up. Converting a band of rows at a time (images._fit)
# is folded in: about 60 MB a decode, 0.5 bytes a pixel at 121 MP; a picture of 4 MP or
# less is converted whole, which ``images`` adds. Not counted: a decoder's fixed buffers
# (up to 1 MB for Pillow's, 3 MB for dav1d's and libde265's).
#
# Pillow's own decoders (PNG, TIFF, GIF, BMP, JPEG): the picture as Pillow holds it, by mode.
_MODE_BYTES = {
    "1": 1.3,  # not measured: a byte a pixel, converted in bands as P is
    "L": 1.0,  # PNG 1.00
    "P": 1.3,  # PNG 1.28, GIF 1.28 (animated too: the first frame only)
    "I;16": 2.7,  # PNG 2.67, TIFF 2.67: 16-bit grey
    "RGB": 4.0,  # PNG 4.00 (16-bit RGB too: Pillow reads it as 8), TIFF 4.00 (LZW, 16-bit, 3 pages), BMP 4.00, JPEG 4.01
    "CMYK": 4.4,  # TIFF 4.38
    "RGBA": 4.6,  # PNG 4.53, TIFF (deflate) 4.53
    "LA": 4.6,  # PNG 4.53: held as 4 bytes, as RGBA
    "I": 12.1,  # TIFF 12.01: 32-bit grey, scaled whole through float64 (rgb.high_depth_to_l)
    "F": 17.1,  # TIFF 17.01: 32-bit float, the same
}
# Every other mode Pillow gives (PA, La, RGBa, RGBX, YCbCr, LAB) holds 4 bytes a pixel and
# converts in bands, as RGBA does.
_OTHER_MODE_BYTES = _MODE_BYTES["RGBA"]
# Decoders that hold buffers of their own. libwebp: its canvas and the copy kept for the
# next frame, Pillow's copy of it, the picture: 16.00-16.03 lossless and lossy, with or
# without alpha, animated (the first frame).
_WEBP_BYTES = 16.1
# libavif (with dav1d) and libheif (with libde265), by (alpha, more than 8 bits a channel,
# chroma 4:2:0): their YUV planes (16-bit ones above 8 bits) and RGB(A) copies. A file that
# does not say its chroma (formats.bmff_header) is taken as 4:4:4. 12-bit AVIF costs what
# 10-bit does (14.20 both, 4:4:4); 10- and 12-bit AVIF made with imagecodecs (Pillow writes 8).
_DECODER_BYTES: dict[str, dict[tuple[bool, bool, bool], float]] = {
    "AVIF": {
        (False, False, True): 9.2,  # 9.14
        (False, False, False): 10.8,  # 10.77
        (True, False, True): 11.5,  # 11.49
        (True, False, False): 13.2,  # 13.13
        (False, True, True): 11.0,  # 10.93
        (False, True, False): 14.3,  # 14.20
        (True, True, True): 14.1,  # 14.04
        (True, True, False): 17.4,  # 17.31
    },
    "HEIF": {
        (False, False, True): 7.3,  # 7.26
        (False, False, False): 9.4,  # 9.34
        (True, False, True): 8.3,  # 8.28
        (True, False, False): 12.4,  # 12.36
        (False, True, True): 7.8,  # 7.76
        (False, True, False): 15.3,  # 15.26
        (True, True, True): 11.8,  # 11.76
        (True, True, False): 20.3,  # 20.26
    },
}
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")


def bytes_per_pixel(fmt: str | None, mode: str, bits: int = 8, subsampled: bool = False) -> float:
    """What decoding a picture of ``fmt`` (Pillow's name) in ``mode`` allocates at its peak, per pixel.

    For AVIF and HEIF, which Pillow gives as 8-bit RGB(A) whatever the file holds, ``bits``
    is the most bits a channel the file declares and ``subsampled`` whether its chroma is
    4:2:0 (``formats.bmff_header``).
    """
    if fmt == "WEBP":
        return _WEBP_BYTES
    if fmt in _DECODER_BYTES:
        return _DECODER_BYTES[fmt][(mode in _ALPHA_MODES, bits > 8, subsampled)]
    return _MODE_BYTES.get("I;16" if mode.startswith("I;16") else mode, _OTHER_MODE_BYTES)


def budget_pixels(pixels: int, bytes_per_pixel: float) -> int:
    """A decode's cost in the budget's unit (4-byte RGB pixels)."""
    return math.ceil(pixels * bytes_per_pixel / BUDGET_PIXEL_BYTES)


class PixelBudget:
    """At most ``capacity`` pixels being decoded at once, first come first served."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: deque[object] = deque()
        self.in_use = 0
        self.peak = 0  # the most pixels ever held at once (stats and tests)

    @contextmanager
    def hold(self, pixels: int, capacity: int) -> Iterator[None]:
        """Wait until ``pixels`` fit beside the decodes running now (alone if over ``capacity``:
        ``images`` refuses those before they get here)."""
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
            # First come first served: a big picture waiting at the head is not overtaken by a
            # stream of small ones, and runs as soon as the ones before it are done.
            while self._queue[0] is not ticket or (self.in_use and self.in_use + pixels > capacity):
                self._cond.wait()
            self._queue.popleft()
            self.in_use += pixels
            self.peak = max(self.peak, self.in_use)
            self._cond.notify_all()  # the next in line may fit too
        try:
            yield
        finally:
            with self._cond:
                self.in_use -= pixels
                self._cond.notify_all()


DECODES = PixelBudget()


def _load_libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


_LIBC = _load_libc()


def give_back() -> bool:
    """Return the heap freed since the last call to the system (glibc ``malloc_trim``).

    glibc keeps freed memory for reuse, in one arena per thread: after four 169-megapixel
    PNGs posted at once (decoded one at a time) the idle daemon held 2104 MiB without it and
    814 MiB with it (744 MiB before them; BENCHMARKS.md).
    False where there is no glibc (musl, macOS), where freed memory is not held this way.
    """
    if _LIBC is None:
        return False
    _LIBC.malloc_trim(0)
    return True
