"""What a photo says about itself: capture time, size, camera, orientation, whether it has GPS.

Read from the header alone (Pillow opens lazily; nothing is decoded), so a file whose vectors
are reused still gets its facts for the cost of parsing its EXIF block (0.3-0.7 ms a 24 MP
JPEG, 1-2.4 ms a HEIC or AVIF, from a file; a RAW file is read whole: 77-95 ms for 50 MB;
bench/bench_formats.py).

- **Capture time**: EXIF ``DateTimeOriginal`` (else ``DateTimeDigitized``) with its
  ``OffsetTime*`` when the camera wrote one. A time without an offset is read in this
  machine's local time zone (most photos are taken where their owner lives) and is shown as
  the camera wrote it. With no usable EXIF date (screenshots, downloads, a camera that writes
  ``0000:00:00``) the file's mtime stands in, marked ``taken_from = "mtime"``.
- **GPS**: only whether the photo has a position, never the coordinates (a search answer
  should not hand out where someone lives).
- **RAW**: DNG, CR2, NEF, ARW, PEF, ORF and RW2 are TIFF structures (ORF and RW2 with their
  own magic number), read as such; RAF carries a JPEG with an EXIF block, CR3 its TIFF
  blocks in ``CMT1``/``CMT2`` boxes.
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Literal

import msgspec
from PIL import ExifTags, Image

from . import formats
from .formats import SUPPORTED_FORMATS


@dataclass(frozen=True)
class PhotoMetadata:
    """What a photo says about itself (``photo_metadata``), stored with its file's row."""

    taken_at: float  # capture time, unix seconds (what the date filters compare)
    taken: str  # the capture time in ISO 8601 as the camera wrote it (with its offset when known)
    taken_from: str  # "exif", or "mtime" when the file had no usable EXIF date
    width: int | None = None  # as shown (EXIF orientation applied)
    height: int | None = None
    camera: str | None = None
    orientation: int | None = None  # EXIF orientation 1-8
    has_gps: bool = False  # whether the file holds a position (never the position itself)

    def as_json(self) -> dict[str, object]:
        """The fields a search result or a duplicate group member carries."""
        return metadata_json(self)


class MetadataFields(msgspec.Struct, kw_only=True):
    """What a photo says about itself, as a search result and a duplicate group member carry it
    (every field null while the file's metadata is not read yet). The one definition of these
    fields: ``metadata_json`` builds them, the API's answer models and its spec include them."""

    taken: Annotated[
        str | None,
        msgspec.Meta(
            description="capture time, ISO 8601 (with the offset when the camera wrote one); "
            "null while the file's metadata is not read yet"
        ),
    ]
    taken_from: Annotated[
        Literal["exif", "mtime"] | None,
        msgspec.Meta(
            description="exif: the photo's own date; mtime: it had none, the file's modification time stands in"
        ),
    ]
    width: Annotated[
        Annotated[int, msgspec.Meta(ge=1)] | None, msgspec.Meta(description="pixels as shown (EXIF turn applied)")
    ]
    height: Annotated[int, msgspec.Meta(ge=1)] | None
    camera: Annotated[str | None, msgspec.Meta(description="EXIF make and model")]
    orientation: Annotated[
        Annotated[int, msgspec.Meta(ge=1, le=8)] | None, msgspec.Meta(description="EXIF orientation")
    ]
    gps: Annotated[bool | None, msgspec.Meta(description="whether the file holds a position (never the position)")]


METADATA_KEYS = MetadataFields.__struct_fields__


def metadata_json(metadata: PhotoMetadata | None) -> dict[str, object]:
    """A result's metadata fields; every one null for a file whose metadata is not read yet."""
    if metadata is None:
        return dict.fromkeys(METADATA_KEYS)
    return msgspec.structs.asdict(
        MetadataFields(
            taken=metadata.taken,
            taken_from=metadata.taken_from,  # type: ignore[arg-type]  # "exif" or "mtime" (from_exif)
            width=metadata.width,
            height=metadata.height,
            camera=metadata.camera,
            orientation=metadata.orientation,
            gps=metadata.has_gps,
        )
    )


log = logging.getLogger("imgsearchd.media.photo_metadata")

_DATE_TAGS = (  # (date tag, its offset tag, the IFD that holds them): first usable wins
    (ExifTags.Base.DateTimeOriginal, ExifTags.Base.OffsetTimeOriginal),
    (ExifTags.Base.DateTimeDigitized, ExifTags.Base.OffsetTimeDigitized),
)
_TURNED = {5, 6, 7, 8}  # orientations that swap width and height
_TIFF_HEADS = (b"II*\x00", b"MM\x00*")
# A camera's name is short ("Canon EOS R5 Mark II"); a longer one (an EXIF block can hold 64 KB,
# a PNG's any size) is cut, so a crafted file cannot fill the catalogue and every answer it is in.
_CAMERA_MAX = 64
# How far into a RAF file its embedded JPEG's EXIF block is looked for (it sits within the
# first 200 KB in the files looked at).
_RAF_EXIF_WITHIN = 1 << 20


def read_metadata(data: bytes, mtime_ns: int) -> PhotoMetadata:
    """The facts of one image file's bytes; never raises (a bad header gives the mtime and no size)."""
    kind = formats.sniff(data[: formats.HEAD_BYTES])
    width = height = None
    exif = Image.Exif()
    shown = False  # the size is already as shown (a RAW's, turned by LibRaw's flip)
    try:
        if kind in formats.RAW_KINDS:
            exif = _raw_exif(data, kind)
            width, height = _raw_size(data)
            shown = True
        else:
            with Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS) as image:
                width, height = image.size
                exif = _header_exif(image)
    except Exception as exc:
        log.debug("no metadata from a %s file: %s", kind, exc)
    return from_exif(exif, width, height, mtime_ns, shown)


def read_metadata_file(path: str, mtime_ns: int, max_bytes: int) -> PhotoMetadata:
    """The facts of a file on disk, reading only its header where the format allows (not a
    RAW's: LibRaw and the EXIF block may sit anywhere in it). Never raises: a file gone,
    unreadable or over ``max_bytes`` gives ``mtime_ns`` and no size."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(formats.HEAD_BYTES)
            kind = formats.sniff(head)
            if kind in formats.RAW_KINDS:
                if os.fstat(fh.fileno()).st_size > max_bytes:
                    return mtime_only(mtime_ns)
                return read_metadata(head + fh.read(), mtime_ns)
            fh.seek(0)
            with Image.open(fh, formats=SUPPORTED_FORMATS) as image:
                return from_exif(_header_exif(image), image.width, image.height, mtime_ns)
    except Exception as exc:
        log.debug("no metadata from %s: %s", path, exc)
        return mtime_only(mtime_ns)


def _header_exif(image: Image.Image) -> Image.Exif:
    """The EXIF block found in the header, never decoding the picture.

    Pillow's PNG ``getexif`` decodes the whole picture (``load``) to look for an ``eXIf``
    chunk after the pixels when none came before them, as in most PNGs (screenshots): a 48 MP
    PNG cost 690-810 ms instead of 0.6 ms, and a PNG over the loader's pixel cap was decoded
    whole before the cap was checked. Pillow's writers and exiftool put ``eXIf`` before the
    pixels; one after them is not read.
    """
    return Image.Image.getexif(image)


def mtime_only(mtime_ns: int) -> PhotoMetadata:
    """The facts of a file whose header could not be read: its mtime as the capture time."""
    return from_exif(Image.Exif(), None, None, mtime_ns)


def from_exif(
    exif: Image.Exif, width: int | None, height: int | None, mtime_ns: int, shown: bool = False
) -> PhotoMetadata:
    """The facts from a parsed EXIF block, the picture's size and the file's mtime.

    The size is as stored, turned here by the EXIF orientation, unless ``shown`` says it is turned already.
    """
    orientation = _int(exif.get(ExifTags.Base.Orientation))
    if orientation in _TURNED and width and height and not shown:
        width, height = height, width
    try:
        sub = exif.get_ifd(ExifTags.IFD.Exif)
    except Exception:
        sub = {}
    taken = _exif_time(sub) or _exif_time(exif)  # a few writers put the date in IFD0
    camera = _camera(exif)
    try:
        gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
        has_gps = bool(gps.get(ExifTags.GPS.GPSLatitude) or gps.get(ExifTags.GPS.GPSLongitude))
    except Exception:
        has_gps = False
    if taken is not None:
        at, text = taken
        source = "exif"
    else:
        local = datetime.fromtimestamp(mtime_ns / 1e9, UTC).astimezone()
        at, text, source = mtime_ns / 1e9, local.isoformat(timespec="seconds"), "mtime"
    return PhotoMetadata(
        taken_at=at,
        taken=text,
        taken_from=source,
        width=width if width and width > 0 else None,
        height=height if height and height > 0 else None,
        camera=camera,
        orientation=orientation if orientation in range(1, 9) else None,
        has_gps=has_gps,
    )


def _exif_time(tags: Image.Exif | dict[int, object]) -> tuple[float, str] | None:
    """(unix seconds, ISO text) from the first usable date tag, else None."""
    for date_tag, offset_tag in _DATE_TAGS:
        # OffsetTime (the offset of DateTime, the file's last change) when none was written for
        # this date: the same zone unless the file was edited elsewhere, closer than local time
        offset = tags.get(offset_tag) or tags.get(ExifTags.Base.OffsetTime)
        parsed = parse_exif_time(tags.get(date_tag), offset)
        if parsed is not None:
            return parsed
    return None


def parse_exif_time(value: object, offset: object = None) -> tuple[float, str] | None:
    """EXIF's ``YYYY:MM:DD HH:MM:SS`` (and ``+HH:MM`` offset) as (unix seconds, ISO text); None if unusable."""
    text = _text(value)
    if text is None:
        return None
    try:
        naive = datetime.strptime(text[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:  # blank ("    :  :  "), zeros, or another format: not a date
        return None
    if naive.year < 1826:  # before the first photograph: a camera's unset clock
        return None
    zone = _offset(_text(offset))
    if zone is not None:
        aware = naive.replace(tzinfo=zone)
        return aware.timestamp(), aware.isoformat(timespec="seconds")
    return naive.astimezone().timestamp(), naive.isoformat(timespec="seconds")


def _offset(text: str | None) -> timezone | None:
    """EXIF's ``+HH:MM`` / ``-HH:MM`` as a zone; None when absent or malformed."""
    if text is None or len(text) != 6 or text[0] not in "+-" or text[3] != ":":
        return None
    try:
        hours, minutes = int(text[1:3]), int(text[4:6])
    except ValueError:
        return None
    if hours > 14 or minutes > 59:
        return None
    sign = -1 if text[0] == "-" else 1
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def _camera(exif: Image.Exif) -> str | None:
    """``Model``, with ``Make`` in front unless the model already names it ("Canon EOS R5")."""
    make = _text(exif.get(ExifTags.Base.Make)) or ""
    model = _text(exif.get(ExifTags.Base.Model)) or ""
    if model and make and make.split()[0].lower() not in model.lower():
        model = f"{make.split()[0]} {model}"
    name = "".join(ch for ch in (model or make) if ch.isprintable())[:_CAMERA_MAX].strip()
    return name or None


def _text(value: object) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    value = value.replace("\x00", "").strip()
    return value or None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# -- RAW files ----------------------------------------------------------------------


def _raw_exif(data: bytes, kind: str | None) -> Image.Exif:
    """The EXIF of a RAW file: its TIFF structure, RAF's embedded JPEG, or CR3's CMT boxes."""
    exif = Image.Exif()
    if kind == "CR3":
        return _cr3_exif(data)
    if kind == "RAF":
        at = data.find(b"Exif\x00\x00", 0, _RAF_EXIF_WITHIN)
        if at >= 0:
            exif.load(data[at:])
        return exif
    head = data[:4]
    if head[:2] in (b"II", b"MM") and head not in _TIFF_HEADS:  # ORF ("IIRO"), RW2 ("IIU\0")
        data = (_TIFF_HEADS[0] if head[:2] == b"II" else _TIFF_HEADS[1]) + data[4:]
    exif.load(data)
    return exif


def _cr3_exif(data: bytes) -> Image.Exif:
    """CR3 keeps IFD0 in a ``CMT1`` box and the Exif IFD in ``CMT2``, each a TIFF of its own."""
    exif = Image.Exif()
    ifd0 = _box_tiff(data, b"CMT1")
    if ifd0:
        exif.load(ifd0)
    sub = _box_tiff(data, b"CMT2")
    if sub:
        inner = Image.Exif()
        inner.load(sub)
        for tag in (*_DATE_TAGS[0], *_DATE_TAGS[1], ExifTags.Base.OffsetTime):
            if tag in inner:
                exif[tag] = inner[tag]  # read by ``_exif_time(exif)`` as a fallback
    return exif


def _box_tiff(data: bytes, name: bytes) -> bytes | None:
    at = data.find(name, 0, formats.HEAD_BYTES)
    if at < 4:
        return None
    size = int.from_bytes(data[at - 4 : at], "big")
    body = data[at + 4 : at - 4 + size]
    return body if body[:4] in _TIFF_HEADS else None


def _raw_size(data: bytes) -> tuple[int | None, int | None]:
    """A RAW's (width, height) as shown (LibRaw's flip applied), from its header; (None, None) without rawpy."""
    if not formats.RAW_AVAILABLE:
        return None, None
    with formats.open_raw(data) as raw:
        sizes = raw.sizes
        width, height = int(sizes.width), int(sizes.height)
        return (height, width) if sizes.flip in (5, 6) else (width, height)  # 5, 6: a quarter turn
