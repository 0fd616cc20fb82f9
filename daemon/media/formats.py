"""The formats beyond Pillow's own: HEIC/HEIF (pillow-heif), AVIF (Pillow's plugin) and camera RAW (rawpy).

Which optional decoders this process has, what kind of file some bytes are (from their
first bytes, never from a name), the names Pillow may open (``SUPPORTED_FORMATS``), and
the RAW decoder itself. ``files`` opens image files and ``images`` decodes them: they ask
this one what the bytes are and how to read them. A decoder that is not installed is a
fact to report per file, never an import failure.
"""

from __future__ import annotations

import io
import os
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, features

from ..config import AVIF_EXTENSIONS, HEIF_EXTENSIONS, RAW_EXTENSIONS
from . import format_types

try:
    import pillow_heif

    pillow_heif.register_heif_opener()  # Pillow then opens HEIC/HEIF as format "HEIF"
    HEIF_AVAILABLE = True
except ImportError:
    HEIF_AVAILABLE = False

try:
    import rawpy

    RAW_AVAILABLE = True
    # rawpy's errors by meaning (empty without rawpy: ``except ()`` catches nothing)
    RAW_UNSUPPORTED: tuple[type[Exception], ...] = (rawpy.LibRawFileUnsupportedError,)
    RAW_TOO_BIG: tuple[type[Exception], ...] = (
        rawpy.LibRawTooBigError,
        rawpy.LibRawUnsufficientMemoryError,
        rawpy.LibRawMemPoolOverflowError,
    )
    RAW_ERROR: tuple[type[Exception], ...] = (rawpy.LibRawError,)
except ImportError:
    RAW_AVAILABLE = False
    RAW_UNSUPPORTED = RAW_TOO_BIG = RAW_ERROR = ()

AVIF_AVAILABLE = bool(features.check("avif"))

# Pillow's names of what ``Image.open`` may read: the optional ones only when their decoder is here.
SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF") + (
    (("AVIF",) if AVIF_AVAILABLE else ()) + (("HEIF",) if HEIF_AVAILABLE else ())
)
# Our own cap (ImageLimits.max_pixels, checked right after reading the header) replaces
# Pillow's global one, so the configured value is the one that counts.
Image.MAX_IMAGE_PIXELS = None
Image.init()  # register every plugin, so ``formats=`` can name them (JPEG covers MPO)

# How many leading bytes ``sniff`` looks at: a TIFF-based RAW's first directory sits near
# the start (offset 8 in every DNG, CR2, NEF and ARW looked at).
HEAD_BYTES = 65536

# ISO-BMFF brands (the ``ftyp`` box) of HEIF stills and sequences; AVIF has its own.
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1", b"mif2"}
_AVIF_BRANDS = {b"avif", b"avis"}

# The kinds built of ISO-BMFF boxes that Pillow decodes (AVIF with its own plugin, HEIF and HEIC with pillow-heif).
BMFF_KINDS = frozenset({"AVIF", "HEIF", "HEIC"})
RAW_KINDS = frozenset({"DNG", "CR2", "CR3", "NEF", "ARW", "PEF", "RAF", "ORF", "RW2", "RAW"})
# TIFF-based RAW files named by their maker (the Make tag); others are just "RAW".
_RAW_BY_MAKER = {"NIKON": "NEF", "SONY": "ARW", "PENTAX": "PEF", "RICOH": "PEF"}

CONTENT_TYPES = format_types.CONTENT_TYPES  # their media types, in a module the CLI can import cheaply

# LibRaw's ``flip`` -> the PIL transpose that makes the picture upright (0: none).
RAW_FLIPS = {3: "ROTATE_180", 5: "ROTATE_90", 6: "ROTATE_270"}


def sniff(head: bytes) -> str | None:
    """The kind of file these first bytes start, for the kinds this module knows; None for the rest."""
    if head[4:8] == b"ftyp":
        return _bmff_kind(head)
    if head.startswith(b"FUJIFILMCCD-RAW"):
        return "RAF"
    if head[:4] in (b"IIRO", b"IIRS", b"MMOR"):
        return "ORF"
    if head[:4] == b"IIU\x00":
        return "RW2"
    if is_tiff(head):
        try:
            return _tiff_raw_kind(head)
        except (struct.error, IndexError):  # offsets past the head or the file: not a RAW we can read
            return None
    return None


def is_tiff(head: bytes) -> bool:
    """Whether these bytes start a TIFF (as DNG, CR2, NEF, ARW and PEF do)."""
    return head[:4] in (b"II*\x00", b"MM\x00*")


def _bmff_kind(head: bytes) -> str | None:
    size = struct.unpack(">I", head[:4])[0]
    box = head[8 : min(max(size, 16), 256)]
    major, brands = box[:4], {box[i : i + 4] for i in range(8, len(box) - 3, 4)} | {box[:4]}
    if major == b"crx ":
        return "CR3"
    if brands & _AVIF_BRANDS:
        return "AVIF"
    if major == b"heic" or major == b"heix":
        return "HEIC"
    if brands & _HEIF_BRANDS:
        return "HEIF"
    return None


@dataclass(frozen=True)
class BmffHeader:
    """What an AVIF or HEIF file declares in its boxes, read without a decoder."""

    width: int = 0  # of the largest ``ispe`` (image spatial extents): the primary image or its grid
    height: int = 0
    bits: int = 8  # the most bits a channel that ``pixi``, ``av1C`` or ``hvcC`` declares (8 when none does)
    subsampled: bool = False  # every AV1 or HEVC configuration says 4:2:0 or grey (False when none does)
    truncated: bool = False  # a top-level box runs past the end of the bytes


# Boxes that hold the ones read here, and where their children start (``meta`` is a full box).
_BMFF_CONTAINERS = {b"meta": 12, b"iprp": 8, b"ipco": 8}
_BMFF_READ = frozenset({b"ispe", b"pixi", b"av1C", b"hvcC"})


def bmff_header(data: bytes) -> BmffHeader:
    """The size, bit depth, chroma and completeness an AVIF or HEIF file declares, from its boxes.

    Walks the top-level boxes (``mdat`` is skipped, not read) and ``meta/iprp/ipco``, where
    ``ispe`` holds 4 bytes of version and flags, then width and height (big-endian uint32);
    ``pixi`` version and flags, a channel count and one bit depth per channel; ``av1C`` in
    its third byte high_bitdepth, twelve_bit, monochrome and chroma_subsampling_x and _y
    (bits 6 to 2); ``hvcC`` chroma_format_idc (1: 4:2:0) and bit depth - 8 in bytes 16 and 17.
    """
    width = height = 0
    bits = 8
    configs: list[bool] = []  # per AV1 or HEVC configuration: 4:2:0 or grey
    truncated = False
    todo = [(0, len(data))]
    while todo:
        start, end = todo.pop()
        for kind, at, box_end in _bmff_boxes(data, start, end):
            if box_end > len(data):
                truncated = True
            if kind in _BMFF_CONTAINERS:
                todo.append((at + _BMFF_CONTAINERS[kind], min(box_end, end)))
                continue
            if kind not in _BMFF_READ:
                continue  # mdat (the picture: most of the file) and the rest are never copied
            body = data[at + 8 : min(box_end, end)]
            if kind == b"ispe" and len(body) >= 12:
                w, h = struct.unpack(">II", body[4:12])
                if w * h > width * height:
                    width, height = w, h
            elif kind == b"pixi" and len(body) >= 5:
                bits = max([bits, *body[5 : 5 + body[4]]])
            elif kind == b"av1C" and len(body) >= 3:
                bits = max(bits, 12 if body[2] & 0x20 else 10 if body[2] & 0x40 else 8)
                configs.append(bool(body[2] & 0x10) or body[2] & 0x0C == 0x0C)
            elif kind == b"hvcC" and len(body) >= 18:
                bits = max(bits, 8 + (body[17] & 7))
                configs.append(body[16] & 3 <= 1)
    return BmffHeader(width, height, bits, bool(configs) and all(configs), truncated)


def _bmff_boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """(type, start, end) of each box from ``start`` on; a box's end may lie past ``end`` (cut short)."""
    at = start
    while at + 8 <= end:
        size, kind = struct.unpack(">I4s", data[at : at + 8])
        if size == 1 and at + 16 <= end:  # a 64-bit size follows the type
            size = struct.unpack(">Q", data[at + 8 : at + 16])[0]
        elif size == 0:  # to the end of the file
            size = end - at
        if size < 8:
            return  # not a box: the rest cannot be walked
        yield kind, at, at + size
        at += size


def webp_size(head: bytes) -> tuple[int, int] | None:
    """The canvas size a WebP file's first 30 bytes declare (lossy, lossless or extended), or None.

    Read before Pillow opens the file: its WebP plugin allocates the whole canvas (twice,
    8 bytes a pixel of address space) as it opens.
    """
    if len(head) < 30 or head[:4] != b"RIFF" or head[8:12] != b"WEBP":
        return None
    chunk = head[12:16]
    if chunk == b"VP8 " and head[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", head[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and head[20] == 0x2F:
        bits = struct.unpack("<I", head[21:25])[0]
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X":
        return int.from_bytes(head[24:27], "little") + 1, int.from_bytes(head[27:30], "little") + 1
    return None


def _tiff_raw_kind(head: bytes) -> str | None:
    """A camera RAW built on TIFF, from its first directory's tags; None for a plain TIFF.

    DNG has DNGVersion; CR2 says "CR" after the header; NEF, ARW and PEF start with a
    reduced-size preview (NewSubfileType 1) or point to the raw data in SubIFDs, which
    the TIFFs of scanners and editors do not, and name their maker.
    """
    if head[8:10] == b"CR":
        return "CR2"
    order = "<" if head[:2] == b"II" else ">"
    tags = _ifd0_tags(head, order)
    if 50706 in tags:
        return "DNG"
    make = tags.get(271)
    if make is not None and (tags.get(254) == 1 or 330 in tags):
        maker = _ascii(head, order, make).split(" ")[0].upper()
        return _RAW_BY_MAKER.get(maker, "RAW")
    return None


def _ifd0_tags(head: bytes, order: str) -> dict[int, Any]:
    """Tag id -> (value of a short/long tag, or the entry's offset for others) in the first directory."""
    try:
        (offset,) = struct.unpack(order + "I", head[4:8])
        (count,) = struct.unpack(order + "H", head[offset : offset + 2])
    except struct.error:
        return {}
    tags: dict[int, Any] = {}
    for i in range(min(count, 1000)):
        entry = head[offset + 2 + 12 * i : offset + 14 + 12 * i]
        if len(entry) < 12:
            break
        tag, kind, _n = struct.unpack(order + "HHI", entry[:8])
        if kind == 3:
            tags[tag] = struct.unpack(order + "H", entry[8:10])[0]
        elif kind == 4:
            tags[tag] = struct.unpack(order + "I", entry[8:12])[0]
        else:
            tags[tag] = offset + 2 + 12 * i
    return tags


def _ascii(head: bytes, order: str, entry_at: int) -> str:
    """The text of an ASCII tag whose entry starts at ``entry_at``."""
    n = struct.unpack(order + "I", head[entry_at + 4 : entry_at + 8])[0]
    at = entry_at + 8 if n <= 4 else struct.unpack(order + "I", head[entry_at + 8 : entry_at + 12])[0]
    return head[at : at + n].split(b"\x00")[0].decode("ascii", "replace")


def missing_library(kind: str | None) -> str | None:
    """Why this process cannot decode ``kind`` (what to install), or None when it can."""
    if kind in ("HEIF", "HEIC") and not HEIF_AVAILABLE:
        return f"{kind} needs pillow-heif, which is not installed (pip install pillow-heif)"
    if kind == "AVIF" and not AVIF_AVAILABLE:
        return "AVIF needs a Pillow built with libavif (Pillow 11.3 or later from PyPI has it)"
    if kind in RAW_KINDS and not RAW_AVAILABLE:
        named = "camera RAW" if kind == "RAW" else f"camera RAW ({kind})"
        return f"{named} needs rawpy, which is not installed (pip install 'imgsearchd[raw]')"
    return None


def missing_notes() -> dict[str, str]:
    """What this process cannot decode, by kind, and what to install: for a line in the log at start."""
    notes = {kind: missing_library(kind) for kind in ("HEIC", "AVIF", "RAW")}
    return {kind: note for kind, note in notes.items() if note}


# Decoders are imported once, with this module: what this process can read never changes
# while it runs, so a missing_library failure it recorded is not worth another read of the file.
STARTED_AT = time.time()
# The decoder a file name suggests (the kind itself is read from the bytes when the file is tried).
_DECODER_BY_EXTENSION = (
    dict.fromkeys(HEIF_EXTENSIONS, "heif")
    | dict.fromkeys(AVIF_EXTENSIONS, "avif")
    | dict.fromkeys(RAW_EXTENSIONS, "raw")
)


def worth_retrying(path: str, failed_at: float) -> bool:
    """Whether a file that failed with missing_library at ``failed_at`` may be read now: only when
    an earlier process recorded it (a restart after installing the decoder) and the decoder its
    name suggests is here. Retrying on a timer would read a whole RAW library again each day.
    """
    if failed_at >= STARTED_AT:
        return False
    decoder = _DECODER_BY_EXTENSION.get(os.path.splitext(path)[1].lower())
    return decoder is None or available()[decoder]


def available() -> dict[str, bool]:
    """Which optional decoders this process has."""
    return {"heif": HEIF_AVAILABLE, "avif": AVIF_AVAILABLE, "raw": RAW_AVAILABLE}


def open_raw(data: bytes) -> Any:
    """A LibRaw handle on RAW bytes: the header read, nothing decoded (rawpy.RawPy)."""
    raw = rawpy.RawPy()
    raw.open_buffer(io.BytesIO(data))
    return raw


def open_raw_file(path: str) -> Any:
    """A LibRaw handle on a RAW file: only its header read."""
    raw = rawpy.RawPy()
    raw.open_file(path)
    return raw


def raw_preview(raw: Any) -> bytes | np.ndarray | None:
    """The camera's embedded preview: JPEG bytes, an RGB array, or None when there is none."""
    try:
        thumb = raw.extract_thumb()
    except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
        return None
    if thumb.format == rawpy.ThumbFormat.JPEG:
        return bytes(thumb.data)
    array = np.asarray(thumb.data)
    return array if array.ndim == 3 and array.shape[2] == 3 and array.dtype == np.uint8 else None


def demosaic(raw: Any, half_size: bool) -> np.ndarray:
    """The RAW data developed to 8-bit sRGB, upright (LibRaw applies the flip), camera white balance."""
    raw.unpack()
    array: np.ndarray = raw.postprocess(half_size=half_size, use_camera_wb=True, output_bps=8)
    return array
