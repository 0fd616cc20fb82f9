"""JPEGs written the way cameras write them: an MPF large thumbnail, an EXIF thumbnail, an orientation.

Pillow writes neither (its MPO writer marks every image after the first "undefined", not a
large thumbnail, and its ``Exif`` writes no IFD1 thumbnail), so the two segments are built
here, small and by the standards:

- APP1 "Exif": a little-endian TIFF header, IFD0 holding the Orientation tag, and IFD1 (the
  thumbnail's IFD: Compression 6, JPEGInterchangeFormat and its length) followed by the
  thumbnail's JPEG bytes, offsets from the TIFF header (EXIF 2.32, 4.5.5).
- APP2 "MPF" (CIPA DC-007): a little-endian MP Index IFD (MPFVersion "0100", NumberOfImages,
  MPEntry) whose entries are the primary (type 0x030000, "representative image" flag, offset 0)
  and the large thumbnail (type 0x010001 VGA-class or 0x010002 full-HD-class by its size, or
  ``mpf_type``), whose JPEG follows the primary's EOI; its offset counts from the MPF TIFF
  header, as the standard says. (Cameras also give the preview its own MP Attribute IFD: no
  reader here needs it.)

The picture is given the way the sensor stored it; ``orientation`` is only the tag.
"""

from __future__ import annotations

import io
import struct

from PIL import Image

MP_PRIMARY = 0x030000  # Baseline MP Primary Image
MP_LARGE_VGA = 0x010001  # Large Thumbnail, VGA equivalent
MP_LARGE_FULL_HD = 0x010002  # Large Thumbnail, full-HD equivalent
MP_DISPARITY = 0x020002  # Multi-frame image, disparity (a stereo camera's other eye)
MP_UNDEFINED = 0x000000  # what Ultra HDR's gain map is marked (and Pillow's MPO writer)
_REPRESENTATIVE = 0x20000000  # MP attribute flag of the image shown by default
_EXIF_ROOM = 65_535 - 2 - 6 - 100  # an APP1 segment's bytes less its length, "Exif\0\0" and the IFDs


def camera_jpeg(
    picture: Image.Image,
    *,
    quality: int = 92,
    mpf_preview: tuple[int, int] | None = None,
    exif_thumbnail: tuple[int, int] | None = None,
    orientation: int = 1,
    preview_picture: Image.Image | None = None,
    progressive: bool = False,
    mpf_type: int | None = None,
    mpf_copies: int = 1,
    preview_quality: int = 90,
    exif_quality: int | None = None,
) -> bytes:
    """A camera's JPEG of ``picture`` with an MPF large thumbnail and/or an EXIF IFD1 thumbnail.

    A preview is ``picture`` (or ``preview_picture``, for a stale or wrong preview) fitted
    into the given size: stretched when the aspect ratios agree within 1% (cameras round a
    preview's sides, e.g. 1616x1080 for 6000x4000), else letterboxed with black bars as
    cameras fit a 3:2 photo into a 160x120 thumbnail. ``preview_picture`` is resized to the
    size as it is. A grey ("L") or CMYK ``picture`` keeps its mode in the primary (its previews
    stay colour). ``mpf_copies``: the preview is listed this many times (a hostile file).
    ``preview_quality``: the MPF preview's JPEG quality (cameras: 90-95); an EXIF thumbnail's is
    ``exif_quality``, else the best that fits its segment.
    """
    primary = _jpeg(picture, quality, progressive)
    exif = _exif_segment(orientation, _exif_thumbnail(picture, preview_picture, exif_thumbnail, exif_quality))
    if mpf_preview is None:
        return primary[:2] + exif + primary[2:]
    preview = _preview_jpeg(picture, preview_picture, mpf_preview, preview_quality)
    kind = mpf_type if mpf_type is not None else _large_thumbnail_type(mpf_preview)
    # the MPF segment's TIFF header sits after SOI, the APP1, the APP2 marker, length and "MPF\0"
    tiff_at = 2 + len(exif) + 8
    mpf_length = len(_mpf_segment(0, 0, 0, 0, mpf_copies))
    primary_size = len(primary) + len(exif) + mpf_length
    mpf = _mpf_segment(primary_size, kind, len(preview), primary_size - tiff_at, mpf_copies)
    return primary[:2] + exif + mpf + primary[2:] + preview


def _jpeg(picture: Image.Image, quality: int, progressive: bool = False) -> bytes:
    """``image_factory.jpeg_bytes`` keeping a grey or CMYK mode, optionally progressive."""
    out = io.BytesIO()
    (picture if picture.mode in ("L", "RGB", "CMYK") else picture.convert("RGB")).save(
        out, "JPEG", quality=quality, progressive=progressive
    )
    return out.getvalue()


def _preview_jpeg(
    picture: Image.Image, preview_picture: Image.Image | None, size: tuple[int, int], quality: int
) -> bytes:
    if preview_picture is not None:
        return _jpeg(preview_picture.convert("RGB").resize(size, Image.Resampling.LANCZOS), quality)
    width, height = size
    aspect, wanted = picture.width / picture.height, width / height
    if abs(aspect / wanted - 1) <= 0.01:
        return _jpeg(picture.convert("RGB").resize(size, Image.Resampling.LANCZOS), quality)
    scale = min(width / picture.width, height / picture.height)
    inner = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    boxed = Image.new("RGB", size, (0, 0, 0))
    boxed.paste(
        picture.convert("RGB").resize(inner, Image.Resampling.LANCZOS),
        ((width - inner[0]) // 2, (height - inner[1]) // 2),
    )
    return _jpeg(boxed, quality)


def _exif_thumbnail(
    picture: Image.Image, preview_picture: Image.Image | None, size: tuple[int, int] | None, quality: int | None
) -> bytes | None:
    """The thumbnail at ``quality``, else the best quality that fits the APP1 segment's 64 KB, as
    cameras fit it (a grainy 512x384 at quality 90 is about 70 KB)."""
    if size is None:
        return None
    for tried in [quality] if quality else range(90, 10, -10):
        thumbnail = _preview_jpeg(picture, preview_picture, size, tried)
        if len(thumbnail) < _EXIF_ROOM:
            return thumbnail
    raise ValueError(f"a {size} thumbnail does not fit an EXIF segment")


def _large_thumbnail_type(size: tuple[int, int]) -> int:
    return MP_LARGE_VGA if max(size) <= 640 else MP_LARGE_FULL_HD


def _segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def _ifd(entries: list[tuple[int, int, int, bytes]], next_ifd: int) -> bytes:
    """A little-endian TIFF IFD; each value (4 bytes, left-aligned) is given packed."""
    body = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        body += struct.pack("<HHI", tag, kind, count) + value.ljust(4, b"\0")
    return body + struct.pack("<I", next_ifd)


def _exif_segment(orientation: int, thumbnail: bytes | None) -> bytes:
    """APP1 Exif: IFD0 with the Orientation tag, IFD1 pointing at ``thumbnail`` when given."""
    ifd0_at = 8
    ifd0_size = 2 + 12 + 4
    ifd0 = [(0x0112, 3, 1, struct.pack("<H", orientation))]  # Orientation, SHORT
    if thumbnail is None:
        tiff = b"II*\0" + struct.pack("<I", ifd0_at) + _ifd(ifd0, 0)
        return _segment(0xE1, b"Exif\0\0" + tiff)
    ifd1_at = ifd0_at + ifd0_size
    data_at = ifd1_at + 2 + 3 * 12 + 4
    ifd1 = [
        (0x0103, 3, 1, struct.pack("<H", 6)),  # Compression: JPEG
        (0x0201, 4, 1, struct.pack("<I", data_at)),  # JPEGInterchangeFormat
        (0x0202, 4, 1, struct.pack("<I", len(thumbnail))),  # JPEGInterchangeFormatLength
    ]
    tiff = b"II*\0" + struct.pack("<I", ifd0_at) + _ifd(ifd0, ifd1_at) + _ifd(ifd1, 0) + thumbnail
    return _segment(0xE1, b"Exif\0\0" + tiff)


def _mpf_segment(primary_size: int, kind: int, preview_size: int, preview_offset: int, copies: int = 1) -> bytes:
    """APP2 MPF: the MP Index IFD with the primary's MP entry, then the preview's (``copies`` times)."""
    entries_at = 8 + 2 + 3 * 12 + 4
    index = [
        (0xB000, 7, 4, b"0100"),  # MPFVersion
        (0xB001, 4, 1, struct.pack("<I", 1 + copies)),  # NumberOfImages
        (0xB002, 7, 16 * (1 + copies), struct.pack("<I", entries_at)),  # MPEntry, 16 bytes an image
    ]
    entries = struct.pack("<IIIHH", _REPRESENTATIVE | MP_PRIMARY, primary_size, 0, 0, 0)
    entries += struct.pack("<IIIHH", kind, preview_size, preview_offset, 0, 0) * copies
    tiff = b"II*\0" + struct.pack("<I", 8) + _ifd(index, 0) + entries
    return _segment(0xE2, b"MPF\0" + tiff)
