"""A JPEG's stored smaller pictures (MPF large thumbnail, EXIF thumbnail) as its model picture.

A camera's JPEG spends its decode in entropy decoding, which no DCT scale avoids: a grainy
12-MP one took 24-36 ms of CPU at 1/8 scale here, a 24-MP one 56-61 ms, against 8-9.5 ms for
either from a large thumbnail, this check included (busy 2-core machine). Cameras store the same
photo smaller beside it: an MPF (APP2, CIPA DC-007) "large thumbnail" (Sony 1616x1080,
Panasonic 1920x1440, Nikon 640x424) and an EXIF IFD1 thumbnail (160x120 on most cameras,
512x384 on Samsung phones). ``find`` takes the smallest of them that the mode allows
(``previews.refusal``: in "faithful" mode twice ``min_side`` and quality ``FAITHFUL_QUALITY``,
read off its luminance table; in "fast" mode ``min_side``) and that matches the primary:

- only MPF entries typed large thumbnail (0x010001, 0x010002) in JPEG, never another type (an
  Ultra HDR gain map, a stereo camera's other eye, a panorama's part);
- its aspect ratio within ``ASPECT_TOLERANCE`` of the primary's (a letterboxed 160x120 of a
  3:2 photo is 12% off, a 16:9 crop 19%), and its component count (grey, colour, CMYK) the
  primary's: a black-and-white edit keeps the camera's colour preview;
- its top rows agree with the primary's top rows (``_top_strip``): an editor that crops or
  retouches the primary and keeps the camera's preview leaves a stale one, so the primary's
  first sixteenth is decoded at 1/8 scale (its SOF height patched so the decoder stops there:
  2.3 ms for 12 MP, 4.6 for 24 MP, pixels identical to the full decode's) and compared.

Candidates are judged by their headers, and only one is decoded (the smallest that passes):
what the top rows do not show is not seen (an edit below them, docs/formats.md). The primary's
EXIF orientation applies to its previews (cameras store them the sensor's way up, like the
primary), read as the full decode reads it. A refusal is counted by its reason; anything
unexpected raises, which ``images`` counts and answers with the full decode.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from . import memory
from .failures import ImageError, Reason, decode_errors
from .formats import SUPPORTED_FORMATS
from .limits import FAITHFUL, ImageLimits, budget_pixels
from .previews import FAITHFUL_QUALITY, Preview, counts, decoded_size, refusal
from .rgb import orientation

# MP type codes (CIPA DC-007 5.2.3.3.1) of a large thumbnail, VGA- and full-HD-class.
LARGE_THUMBNAILS = (0x010001, 0x010002)
# How far a preview's aspect ratio may be from the primary's: cameras round a preview's sides
# to whole pixels or blocks (Sony 1616x1080 for 6000x4000: 0.25%; Nikon 640x424: 0.63%);
# another crop or a letterbox is 5% or more off (4:3 in 3:2 12%, 16:9 in 3:2 19%, 5:4 in 4:3 6.7%).
ASPECT_TOLERANCE = 0.015
# The primary's share decoded to check a preview (its top sixteenth, at least 128 rows), and
# how it is compared with the preview's same rows: both shrunk to _COMPARE_WIDTH pixels wide
# (at least 2 rows), the mean absolute difference of their 8-bit RGB within _MAX_DIFFERENCE.
# Measured on six skimage photos with grain (tests/media/test_jpeg_previews.py checks such
# cases), 4000x3000 and 6000x4000 with a 1616-pixel-wide preview, at compare widths 128 / 64 / 32:
# the camera's own preview 0.4-3.0 / 0.2-1.9 / 0.2-1.0 levels (a finer grid sees resampling
# at edges); the primary cropped 5% since 3.2-39 / 2.8-35 / 2.8-24, brightened 10% 4.0-16 /
# 3.7-16 / 3.7-15, mirrored 4.1-70 / 3.7-67 / 4.9-61, another photo 31-121 / 26-121 / 20-119.
# A small primary agrees less (1200x800 with 480x320: its own preview up to 2.3), hence 3.0;
# what passes is a strip of flat sky cropped by 5% (2.8; its vectors barely change).
_TOP_SHARE = 16
# How far into a preview its frame header is looked for: past its APP segments (an EXIF of
# 64 KB, an ICC profile in a few), and a bound on what up to 64 candidates' walks cost.
_PREVIEW_HEADER_BYTES = 1 << 20
_COMPARE_WIDTH = 32
_ANNEX_K_LUMINANCE_SUM = 3688
_MAX_DIFFERENCE = 3.0


@dataclass(frozen=True)
class _Layout:
    """What a JPEG's header segments say, with where they are."""

    width: int
    height: int
    components: int  # the frame's component count: 1 grey, 3 YCbCr/RGB, 4 CMYK/YCCK
    sof_at: int  # where the frame header's height field is
    progressive: bool  # every scan spans the whole picture: the top rows need all of them
    exif_at: int | None  # where the EXIF TIFF header is
    mpf_at: int | None  # where the MPF TIFF header is


@dataclass(frozen=True)
class _Candidate:
    source: str
    start: int  # where its JPEG starts in the file
    size: int


class _Declined(Exception):
    """A known reason to decode the primary instead, counted as "declined: <reason>"."""


def find(data: bytes, min_side: int, limits: ImageLimits) -> Preview | None:
    """The stored picture of this JPEG that covers ``min_side`` and matches the primary, or None."""
    layout = _layout(data)
    if layout is None:
        return None
    try:
        return _find(data, layout, min_side, limits)
    except _Declined as declined:
        counts.add(f"declined: {declined}")
        return None


def _find(data: bytes, layout: _Layout, min_side: int, limits: ImageLimits) -> Preview | None:
    """``find`` for a walked header: raises ``_Declined`` with the reason a preview is not used.

    Candidates are judged by their headers, smallest first; only the first that passes is
    decoded and compared, and a "content differs" ends the search: a larger preview of the same
    file is stale the same way, and a file of many entries (64 pointing at one stale 12-MP
    preview took 70 times the full decode's CPU when each was decoded) costs one decode at most.
    """
    candidates, unreadable = _candidates(data, layout)
    if not candidates:
        if unreadable:
            raise _Declined(unreadable)
        return None  # no preview at all: nothing counted
    if layout.width * layout.height > limits.max_pixels:
        raise _Declined("over the pixel cap")  # the full decode refuses it, exactly as without previews
    reason = ""
    view = memoryview(data)
    for candidate in candidates:
        part = view[candidate.start : candidate.start + candidate.size]
        reason = _refusal(_layout(part[:_PREVIEW_HEADER_BYTES]), layout, min_side, limits)
        if reason:
            continue  # its header says no: nothing decoded
        try:
            opened = Image.open(io.BytesIO(part), formats=("JPEG",))
            if limits.previews == FAITHFUL:
                reason = _coarse(opened)
                if reason:
                    continue  # a larger candidate (an MPF preview after a q75 EXIF thumbnail) may still do
            turn, size = _primary(data, min_side)  # only the one candidate decoded needs it
            image = _decode(opened, min(size), limits)
        except (ImageError, UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
            if isinstance(exc, ImageError) and exc.reason == Reason.TOO_LARGE:
                raise _Declined("over the decode budget") from exc
            raise _Declined("preview unreadable") from exc
        if _difference(_top_strip(data, layout), image, layout) > _MAX_DIFFERENCE:
            raise _Declined("content differs")
        return Preview(image, turn, candidate.source, size)
    raise _Declined(reason)  # the largest's reason: the one that could have been used


def _primary(data: bytes, min_side: int) -> tuple[Image.Transpose | None, tuple[int, int]]:
    """The primary's EXIF turn, read as the full decode reads it (cameras store previews the
    sensor's way up, like the primary), and the size its own decode gives, before the turn:
    the DCT scale Pillow's draft picks for ``min_side`` (``images._open``; the header only,
    nothing decoded), then ``previews.decoded_size``'s reduce."""
    try:
        with decode_errors():
            image = Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS)
            image.draft("RGB", (min_side, min_side))
            return orientation(image), decoded_size(image.size, min_side)
    except ImageError as exc:
        raise _Declined("primary unreadable") from exc


def _refusal(own: _Layout | None, layout: _Layout, min_side: int, limits: ImageLimits) -> str:
    """Why a preview with this header cannot stand for the primary ("" when it can, so far)."""
    if own is None or min(own.width, own.height) < 1:
        return "preview unreadable"
    width, height = own.width, own.height
    if width >= layout.width or height >= layout.height:
        return "not smaller"
    if min(width, height) < min_side:
        return "too small"
    if abs((width / height) / (layout.width / layout.height) - 1) > ASPECT_TOLERANCE:
        return "aspect differs"
    if own.components != layout.components:
        # a black-and-white (or CMYK) primary with the camera's colour preview: a neutral top
        # (an overcast sky) passes the content check, and the model would get colour
        return "mode differs"
    return refusal(min(width, height), min_side, limits)  # "faithful": large enough for vectors near the full decode's


def _coarse(image: Image.Image) -> str:
    """Why this preview is too coarsely coded for "faithful" mode ("" when it is not): its
    quality under ``FAITHFUL_QUALITY`` (a phone's q75 EXIF thumbnail: 0.91-0.99), or unreadable."""
    quality = _quality(image)
    if quality is None:
        return "quality unreadable"
    return f"quality under {FAITHFUL_QUALITY}" if quality < FAITHFUL_QUALITY else ""


def _quality(image: Image.Image) -> float | None:
    """The preview's JPEG quality on libjpeg's scale, read off the table its first (luminance)
    component uses against the table libjpeg scales (ITU T.81 Annex K, summed: 3688 at quality
    50); None when that table cannot be read. A camera's own tables read as the libjpeg quality
    of the same coarseness."""
    layer = getattr(image, "layer", None)  # Pillow's frame components: (id, h, v, table id)
    tables = getattr(image, "quantization", None) or {}
    table = tables.get(layer[0][3]) if layer else None
    if not table:
        return None
    scale = 100 * sum(table) / _ANNEX_K_LUMINANCE_SUM  # libjpeg's percentage: 200 - 2q from q50 up, 5000/q below
    return 100 - scale / 2 if scale <= 100 else 5000 / scale


def _decode(image: Image.Image, side: int, limits: ImageLimits) -> Image.Image:
    """The preview decoded in RGB at the smallest DCT scale that keeps its shorter side >= ``side``
    (the shorter side of the primary's own decode, which ``previews.fitted`` resizes it to)."""
    image.draft("RGB", (side, side))
    cost = budget_pixels(image.width, image.height, image.format, 5, limits)  # as previews.fitted counts it
    with memory.DECODES.hold(cost, limits.decode_budget_pixels), decode_errors():
        image.load()
        return image if image.mode == "RGB" else image.convert("RGB")


def _top_strip(data: bytes, layout: _Layout) -> Image.Image:
    """The primary's top rows (a sixteenth, at least 128) decoded at 1/8 scale and no further:
    its frame header's height is patched, so the decoder stops there."""
    rows = min(layout.height, max(128, layout.height // _TOP_SHARE // 16 * 16))  # whole MCU rows (8 or 16 high)
    # a sequential file's bytes for those rows, with room: a quarter of the file for a sixteenth
    # of its rows (a top denser than that runs out, and the full decode is taken), not a copy
    # of the whole file
    end = len(data) if layout.progressive else layout.sof_at + 2 + len(data) // 4 + 65536
    cut = data[: layout.sof_at] + struct.pack(">H", rows) + data[layout.sof_at + 2 : end]
    try:
        with decode_errors():
            top = Image.open(io.BytesIO(cut), formats=("JPEG",))
            top.draft("RGB", (layout.width // 8, rows // 8))
            top.load()  # the rest of the file is never entropy-decoded: pixels as the full decode's
            return top.convert("RGB")
    except ImageError as exc:
        raise _Declined("top rows unreadable") from exc


def _difference(strip: Image.Image, preview: Image.Image, layout: _Layout) -> float:
    """How far the preview's same rows are from the primary's ``strip``: the mean absolute
    difference of their 8-bit RGB, both shrunk to _COMPARE_WIDTH pixels wide.

    Both are stored the sensor's way up, so no turn is needed to compare them.
    """
    share = strip.height * 8 / layout.height
    box = (0.0, 0.0, float(preview.width), min(float(preview.height), preview.height * share))
    width = min(strip.width, _COMPARE_WIDTH)
    size = (width, min(strip.height, max(2, round(width * strip.height / strip.width))))
    theirs = np.asarray(preview.resize(size, Image.Resampling.BOX, box=box), dtype=np.float32)
    ours = np.asarray(strip.resize(size, Image.Resampling.BOX), dtype=np.float32)
    return float(np.abs(theirs - ours).mean())


def _candidates(data: bytes, layout: _Layout) -> tuple[list[_Candidate], str]:
    """The EXIF thumbnail and MPF large thumbnails, smallest first, each JPEG once; and why a
    source could not be read ("" when both could): each source is read on its own, so a bad
    one leaves the other's previews usable."""
    found: list[_Candidate] = []
    unreadable = ""
    for at, source, read in (
        (layout.exif_at, "EXIF thumbnail", _exif_thumbnail),
        (layout.mpf_at, "JPEG MPF preview", _mpf_previews),
    ):
        if at is None:
            continue
        try:
            found += [_Candidate(source, start, size) for start, size in read(data, at)]
        except (struct.error, ValueError):  # an offset or count past its segment
            unreadable = "EXIF unreadable" if source == "EXIF thumbnail" else "MPF unreadable"
    seen: set[int] = set()
    unique = []
    for candidate in sorted(found, key=lambda c: c.size):
        if candidate.start not in seen and data[candidate.start : candidate.start + 3] == b"\xff\xd8\xff":
            seen.add(candidate.start)  # entries at one offset are one JPEG, whatever size they claim
            unique.append(candidate)
    return unique, unreadable


def _layout(data: bytes | memoryview) -> _Layout | None:
    """Walk the segments before the first scan: the frame's size and the EXIF and MPF headers.

    None for a frame this module does not read (lossless, arithmetic-coded) or a header it
    cannot walk: the full decode then judges the file.
    """
    at, exif_at, mpf_at = 2, None, None
    while at + 10 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        (length,) = struct.unpack_from(">H", data, at + 2)
        body = at + 4
        if marker == 0xE1 and data[body : body + 6] == b"Exif\0\0" and exif_at is None:
            exif_at = body + 6
        elif marker == 0xE2 and data[body : body + 4] == b"MPF\0" and mpf_at is None:
            mpf_at = body + 4
        elif marker in (0xC0, 0xC1, 0xC2):  # baseline, extended, progressive Huffman
            height, width, components = struct.unpack_from(">HHB", data, body + 1)
            return _Layout(width, height, components, body + 1, marker == 0xC2, exif_at, mpf_at)
        elif marker == 0xDA or (0xC3 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC)):
            return None  # a scan before a frame, or a lossless or arithmetic-coded frame
        at += 2 + length
    return None


def _ifd(tiff: bytes | memoryview, at: int) -> tuple[dict[int, tuple[int, int, int]], int]:
    """One TIFF IFD: tag -> (type, count, value or offset), and the next IFD's offset."""
    order = {b"II": "<", b"MM": ">"}.get(bytes(tiff[:2]))
    if order is None:
        raise ValueError("TIFF header without byte order")
    (n,) = struct.unpack_from(order + "H", tiff, at)
    entries = {}
    for i in range(n):
        tag, kind, count = struct.unpack_from(order + "HHI", tiff, at + 2 + 12 * i)
        fmt = order + ("H" if kind == 3 and count == 1 else "I")
        (value,) = struct.unpack_from(fmt, tiff, at + 2 + 12 * i + 8)
        entries[tag] = (kind, count, value)
    (next_ifd,) = struct.unpack_from(order + "I", tiff, at + 2 + 12 * n)
    return entries, next_ifd


def _first_ifd(tiff: bytes | memoryview) -> int:
    return int(struct.unpack_from("<I" if bytes(tiff[:2]) == b"II" else ">I", tiff, 4)[0])


def _exif_thumbnail(data: bytes, exif_at: int) -> list[tuple[int, int]]:
    """IFD1's JPEG thumbnail (JPEGInterchangeFormat and its length) as (start, size) in the
    file; its offset counts from the TIFF header, and it lies inside the APP1."""
    length = struct.unpack_from(">H", data, exif_at - 8)[0] - 8  # the APP1 after "Exif\0\0"
    tiff = memoryview(data)[exif_at : exif_at + length]
    _, ifd1 = _ifd(tiff, _first_ifd(tiff))
    if not ifd1:
        return []
    entries, _ = _ifd(tiff, ifd1)
    start, size = entries.get(0x0201, (0, 0, 0))[2], entries.get(0x0202, (0, 0, 0))[2]
    return [(exif_at + start, size)] if start and 0 < size <= len(tiff) - start else []


def _mpf_previews(data: bytes, mpf_at: int) -> list[tuple[int, int]]:
    """The MP entries typed large thumbnail in JPEG as (start, size) in the file; their offsets
    count from the MPF TIFF header."""
    tiff = memoryview(data)[mpf_at:]  # entry offsets reach to the end of the file: no copy
    entries, _ = _ifd(tiff, _first_ifd(tiff))
    _, count, offset = entries.get(0xB002, (0, 0, 0))
    order = "<" if bytes(tiff[:2]) == b"II" else ">"
    found = []
    for i in range(min(count // 16, 64)):
        attribute, size, start, _, _ = struct.unpack_from(order + "IIIHH", tiff, offset + 16 * i)
        jpeg = (attribute >> 24) & 0x7 == 0
        if jpeg and attribute & 0xFFFFFF in LARGE_THUMBNAILS and start > 0 and start + size <= len(tiff):
            found.append((mpf_at + start, size))
    return found
