"""Pictures decoded for a model: the public open and decode API of ``media``.

``decode`` turns a file's bytes (``read_file``) into an RGB picture just big enough for a
model: EXIF orientation applied, transparency flattened onto white, 16-bit and CMYK
converted (``rgb``), large JPEGs decoded at reduced size (Pillow's draft mode), a pixel
cap against decompression bombs, and a process-wide budget of the memory decodes take
at once (each decode costed by its format and mode, ``memory.bytes_per_pixel``; one that
alone needs more than the whole budget is refused before decoding: ``limits``). HEIC/HEIF,
AVIF and camera RAW files (``formats``) go through the same caps; one whose decoder is not
installed fails with ``Reason.MISSING_LIBRARY``. Every failure is an ``ImageError``
whose ``reason`` is one short word (``failures``).

Opening files is ``files``'s, the failures ``failures``'s, the caps ``limits``'s and the
conversion to RGB ``rgb``'s: callers import those names from there. ``ImageError`` and
``Reason`` are re-exported because the API (``api.errors``, ``app``, ``routing``) reads them here.
"""

from __future__ import annotations

import io
import logging

import numpy as np
from PIL import Image

from . import formats, heif_previews, jpeg_previews, memory, previews
from .failures import ImageError, Reason, decode_errors
from .files import read_file
from .formats import SUPPORTED_FORMATS
from .limits import GIVE_BACK_PIXELS, ImageLimits, budget_pixels, check_header, check_size
from .rgb import orientation, raw_turn, to_rgb

log = logging.getLogger("imgsearchd.media.images")

__all__ = ["ImageError", "Reason", "decode", "load_image"]  # the errors: api.errors, .app, .routing read them here

# Modes whose box average commutes with the RGB conversion, to the bit (tested): CMYK's
# conversion is a product, 32-bit grey rounds its average differently (1 level), and
# palettes and alpha are no averages at all, so those convert first.
_SHRINK_FIRST_MODES = ("L", "RGB")
# 32-bit grey and float pictures are scaled by their whole range, so they convert whole.
_WHOLE_PICTURE_MODES = ("I", "F")
# Other modes convert to RGB this many pixels at a time (16 MB of RGB in Pillow's 4 bytes).
_BAND_PIXELS = 4_000_000


def load_image(path: str, min_side: int = 0, limits: ImageLimits = ImageLimits()) -> Image.Image:
    """Read and decode one image file (for queries and tools)."""
    return decode(read_file(path, limits).data, min_side, limits)


def decode(
    data: bytes, min_side: int = 0, limits: ImageLimits = ImageLimits(), use_previews: bool = True
) -> Image.Image:
    """Decode image bytes into an RGB picture whose shorter side is at least ``min_side``.

    With ``min_side`` > 0 the picture is decoded or shrunk to between ``min_side`` and
    about twice that on its shorter side, which is all a model's preprocessing needs; a
    smaller picture the file stores of itself is decoded instead of the primary when it
    covers that and matches it, as ``limits.previews`` allows ("faithful", "fast": ``previews``;
    "off" or ``use_previews=False`` always decodes the primary).
    The full-size decode runs inside the process-wide pixel budget (``memory.DECODES``)
    and is dropped as soon as the shrunk picture exists.
    """
    if not data:
        raise ImageError(Reason.EMPTY, "file is empty")
    kind = formats.sniff(data[: formats.HEAD_BYTES])
    missing = formats.missing_library(kind)
    if missing:
        raise ImageError(Reason.MISSING_LIBRARY, missing)
    if kind in formats.RAW_KINDS:
        try:
            return _decode_raw(data, min_side, limits, use_previews and limits.use_previews)
        except ImageError as exc:
            # a TIFF that only looked like a camera's (a maker's name and a preview page), or a
            # camera newer than LibRaw: Pillow reads its first page rather than nothing
            if exc.reason != Reason.NOT_AN_IMAGE or not formats.is_tiff(data):
                raise
    header = check_header(data, kind, limits)
    if min_side > 0 and use_previews and limits.use_previews:
        picture = _from_preview(data, kind, min_side, limits, header)
        if picture is not None:
            return picture
    try:
        with decode_errors():
            held = [_open(data, min_side, limits)]
    except ImageError as exc:
        # Pillow names every file it cannot open "not an image"; an AVIF or HEIF by its
        # ftyp box is one, cut short or damaged
        if header is None or exc.reason != Reason.NOT_AN_IMAGE:
            raise
        if header.truncated:
            raise ImageError(Reason.TRUNCATED, f"{kind} file cut short: a box runs past its end") from exc
        raise ImageError(Reason.CORRUPT, f"{kind} file whose boxes its decoder cannot read") from exc
    return _load_and_fit(held, min_side, limits, header=header)


def find_preview(
    data: bytes, kind: str | None, min_side: int, limits: ImageLimits, header: formats.BmffHeader | None = None
) -> previews.Preview | None:
    """The stored smaller picture this file's format offers for ``min_side`` (``heif_previews``
    for AVIF and HEIF, whose ``header`` the caller may have read already; ``jpeg_previews``), or
    None; raises what the finder raises."""
    if kind in formats.BMFF_KINDS:
        return heif_previews.find(data, kind, min_side, limits, header)
    if data[:3] == b"\xff\xd8\xff":
        return jpeg_previews.find(data, min_side, limits)
    return None


def _from_preview(
    data: bytes, kind: str | None, min_side: int, limits: ImageLimits, header: formats.BmffHeader | None
) -> Image.Image | None:
    """The picture from the file's embedded preview, or None to decode the primary.

    A finder that fails in any way means "no preview": the full decode then says what is
    wrong with the file, if anything.
    """
    try:
        found = find_preview(data, kind, min_side, limits, header)
        return previews.fitted(found, min_side, limits) if found is not None else None
    except Exception as exc:  # a damaged preview is no reason to lose the file: the full decode judges it
        log.debug("preview of a %s file not used: %s", kind or "JPEG", exc)
        previews.counts.add(f"declined: {type(exc).__name__}")
        return None


def _load_and_fit(
    held: list[Image.Image],
    min_side: int,
    limits: ImageLimits,
    exif_turn: bool = True,
    header: formats.BmffHeader | None = None,
) -> Image.Image:
    """Decode an opened picture inside the decode budget and shrink it (``_fit``).

    ``held`` is a list holding the only reference to the picture, emptied here: a caller's
    local would keep the full-size picture alive after the budget lets the next decode in
    (four huge PNGs at once then peaked at 2,080 MiB instead of 1,485; tests/media/test_memory.py).
    ``header``: what an AVIF or HEIF file declares (bit depth and chroma change its cost).
    """
    opened = held.pop()
    cost = budget_pixels(opened.width, opened.height, opened.format, _bytes_per_pixel(opened, min_side, header), limits)
    with memory.DECODES.hold(cost, limits.decode_budget_pixels):
        with decode_errors():
            opened.load()
            picture = _fit(opened, min_side, exif_turn)
        del opened  # the full-size picture goes before the next decode is let in
    if cost >= GIVE_BACK_PIXELS:
        memory.give_back()
    return picture


def _bytes_per_pixel(image: Image.Image, min_side: int, header: formats.BmffHeader | None) -> float:
    """What decoding ``image`` (opened, after draft) and fitting it allocates per pixel."""
    header = header or formats.BmffHeader()
    cost = memory.bytes_per_pixel(image.format, image.mode, header.bits, header.subsampled)
    converted = image.mode not in (*_SHRINK_FIRST_MODES, *_WHOLE_PICTURE_MODES) or "transparency" in image.info
    if converted and image.width * image.height <= _BAND_PIXELS:
        # converted whole, not in bands: at 3 MP an RGBA PNG took 13.0 bytes a pixel (4.53 at
        # 121 MP), a 16-bit grey one 12.3 (2.67)
        cost += 10
    elif _shrink_factor(image, min_side) == 1 and (image.mode != "RGB" or "transparency" in image.info):
        cost += 4  # not shrunk: the RGB result is a full-size copy (a CMYK JPEG: 8.40 bytes a pixel)
    return cost


def _decode_raw(data: bytes, min_side: int, limits: ImageLimits, use_preview: bool = True) -> Image.Image:
    """A camera RAW file: the camera's embedded preview when its shorter side reaches
    ``min_side`` (and ``use_preview``: not in "off" mode), else LibRaw's demosaic (half size
    when that still reaches it: a quarter of the work), under the same caps and budget as
    every other picture. "faithful" takes the preview as "fast" does, with no size or quality
    rule: it is the camera's own rendering of the photo (a camera's JPEG at full or 1.7 MP),
    while the demosaic is LibRaw's (its own curve and brightness), no more the photo's pixels.

    Measured here (bench/bench_formats.py, 24 MP DNG, 2 shared cores): the 1.7 MP preview
    10 ms, the half-size demosaic 360-520 ms, rawpy's full postprocess 2.5-3.4 s (a 24 MP
    JPEG: 62-77 ms with draft mode); BENCHMARKS.md "Image formats and metadata".
    """
    with decode_errors():
        raw = formats.open_raw(data)
    with raw:
        sizes = raw.sizes
        check_size(sizes.raw_width, sizes.raw_height, limits)
        turn = raw_turn(sizes.flip)
        if min_side > 0 and use_preview:
            with decode_errors():
                preview = formats.raw_preview(raw)
            picture = _raw_preview_picture(preview, min_side, limits) if preview is not None else None
            if picture is not None:
                return picture.transpose(turn) if turn is not None else picture
        half = min_side > 0 and min(sizes.width, sizes.height) // 2 >= min_side
        # LibRaw holds the 16-bit raw data (2 bytes a pixel) and a 16-bit 4-channel picture
        # (8 bytes a pixel, a quarter of the pixels at half size): 4 bytes a raw pixel at half
        # size, 12 at full size.
        held = budget_pixels(sizes.raw_width, sizes.raw_height, "camera RAW", 4 if half else 12, limits)
        with memory.DECODES.hold(held, limits.decode_budget_pixels):
            with decode_errors():
                array = formats.demosaic(raw, half)  # upright already: LibRaw applies the flip
                picture = _fit(Image.fromarray(array), min_side, exif_turn=False)
            del array
    if held >= GIVE_BACK_PIXELS:
        memory.give_back()
    return picture


def _raw_preview_picture(preview: bytes | np.ndarray, min_side: int, limits: ImageLimits) -> Image.Image | None:
    """The embedded preview as the model's picture, or None when it is smaller than ``min_side``.

    Its own EXIF orientation is ignored: the RAW's orientation (LibRaw's flip) is the one that counts.
    """
    if isinstance(preview, bytes):
        with decode_errors():
            held = [_open(preview, min_side, limits)]  # draft keeps the shorter side >= min_side when it was
    else:
        held = [Image.fromarray(preview)]
    if min(held[0].size) < min_side:
        return None
    return _load_and_fit(held, min_side, limits, exif_turn=False)


def _open(data: bytes, min_side: int, limits: ImageLimits) -> Image.Image:
    """Read the header, check the caps, and set JPEG draft mode; nothing decoded yet."""
    image: Image.Image = Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS)
    check_size(*image.size, limits)
    if image.format in ("JPEG", "MPO") and min_side > 0:
        image.draft("RGB", (min_side, min_side))
    return image


def _fit(image: Image.Image, min_side: int, exif_turn: bool = True) -> Image.Image:
    """The decoded picture shrunk, turned upright and in RGB, in the order that copies least.

    Grey and RGB pictures are shrunk first; the other modes (palettes, alpha, 16-bit, CMYK)
    are converted a band of rows at a time, each band shrunk at once, so no second
    full-size copy exists: a 13000x13000 RGBA PNG peaked at 2094 MiB over the picture-less
    process when converted whole, and the EXIF turn of a full-size picture copied it too.
    """
    turn = orientation(image) if exif_turn else None
    factor = _shrink_factor(image, min_side)
    if image.mode in _SHRINK_FIRST_MODES and "transparency" not in image.info:
        image = to_rgb(image.reduce(factor) if factor > 1 else image)
    elif image.mode in _WHOLE_PICTURE_MODES:
        image = to_rgb(image)  # scaled by the whole picture's range: no bands
        image = image.reduce(factor) if factor > 1 else image
    else:
        image = _rgb_in_bands(image, factor)
    return image.transpose(turn) if turn is not None else image


def _rgb_in_bands(image: Image.Image, factor: int) -> Image.Image:
    """``to_rgb`` then ``reduce(factor)``, a band of rows at a time: the same pixels (bands
    are whole multiples of the factor), with only a band converted at once."""
    width, height = image.size
    if width * height <= _BAND_PIXELS:
        rgb = to_rgb(image)
        return rgb.reduce(factor) if factor > 1 else rgb
    rows = max(factor, _BAND_PIXELS // width // factor * factor)
    out = Image.new("RGB", (-(-width // factor), -(-height // factor)))
    for top in range(0, height, rows):
        band = to_rgb(image.crop((0, top, width, min(height, top + rows))))
        out.paste(band.reduce(factor) if factor > 1 else band, (0, top // factor))
    return out


def _shrink_factor(image: Image.Image, min_side: int) -> int:
    """The box-reduce factor that keeps the shorter side >= min_side (1: none); ``previews``
    sizes a preview by the same rule."""
    return previews.shrink_factor(image.size, min_side)
