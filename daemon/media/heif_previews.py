"""A HEIC/HEIF/AVIF file's thumbnail items as its model picture.

A phone's HEIC is a grid of 512x512 HEVC tiles with no reduced-size decode: a 12-MP one took
1.04 s of CPU to decode here, its 320x240 thumbnail item 7 ms. The smallest thumbnail the mode
allows (``previews.refusal``: twice ``min_side`` in "faithful" mode, which no phone's 320x240
reaches, ``min_side`` in "fast" mode) is decoded instead when it shows the primary:

- the same transforms (``irot``/``imir`` orientation, ``clap`` crop as fractions of each
  picture), so libheif makes it upright exactly as it makes the primary upright; the full
  decode adds no turn of its own (pillow-heif resets EXIF's orientation to 1), nor does this;
- the same aspect ratio, upright, within ``ASPECT_PIXELS`` of the thumbnail's sides;
- the same pixel layout (mode) and colour profile, and no flat bars on two opposite edges
  (a letterboxed thumbnail);
- its own size inside the caps, and it decodes (inside the decode budget) to that size.

What passes all that and still differs: a thumbnail of another picture with the same aspect
ratio, or one whose coded data is damaged past its headers (libde265 conceals the errors and
libheif reports none). Nothing short of decoding the primary tells those apart, and
pillow-heif decodes no single tile; HEIF's ``thmb`` reference says the thumbnail is the
primary's. A thumbnail libheif scaled itself (nearest pixel: aliased) gives vectors further
from the full decode's than a phone's filtered one (docs/formats.md). Refusals are counted
in ``previews.counts``. pillow-heif 1.9's ``HeifImageFile.draft`` picks a thumbnail by the
same scaled-copy checks, but it says nothing of why it picked none (the counts the bench and
tests read), has no letterbox check and no decoded-size check, so the choice is made here.

AVIF: Pillow's AVIF reader (libavif) decodes the primary item only and this pillow-heif has no
AV1 decoder, so an AVIF's thumbnail cannot be read here: AVIF files are always decoded whole.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from PIL import Image

from . import formats, memory
from .failures import ImageError
from .limits import ImageLimits, budget_pixels, check_size
from .previews import Preview, counts, decoded_size, refusal
from .rgb import to_rgb

SOURCE = "HEIF thumbnail"
# How far, in the thumbnail's own pixels, its sides may be from the primary's aspect ratio
# scaled to its longer side: libheif rounds the other side down to even (1200x800 -> 320x212,
# 1.33 pixels; 4032x3024 -> 320x240 exactly). A letterboxed or other-crop thumbnail is off by
# tens of pixels (320x240 for 16:9: 60).
ASPECT_PIXELS = 2.0
# A letterbox bar: this many edge rows (or columns) on both opposite sides, each flat to
# within ``BAR_SPREAD`` levels and the two of nearly one colour. HEVC at quality 80 keeps a
# black bar within 2-3 levels; none of 39 real photos' 320-pixel thumbnails (skimage's and
# Debian's wallpapers) had two flat opposite edges.
BAR_LINES = 2
BAR_SPREAD = 6
# libheif's transforms that change orientation (``clap`` crops and is compared on its own).
_ORIENTING = ("irot", "imir")
# What libheif raises on boxes or coded data it cannot read (pillow-heif passes them on).
_HEIF_ERRORS = (OSError, ValueError, RuntimeError, EOFError, SyntaxError, KeyError, IndexError)


def find(
    data: bytes, kind: str, min_side: int, limits: ImageLimits, header: formats.BmffHeader | None = None
) -> Preview | None:
    """The thumbnail of this HEIF file that covers ``min_side`` and matches the primary, or None.

    ``header``: ``formats.bmff_header(data)`` when the caller has it (``images.decode`` reads it
    for the caps), else read here."""
    if kind == "AVIF" or not formats.HEIF_AVAILABLE or min_side <= 0:
        return None
    import pillow_heif

    try:
        heif = pillow_heif.open_heif(io.BytesIO(data))  # reads the boxes; decodes nothing
        primary = heif[heif.primary_index]
        listed = primary.info.get("thumbnails")
        if not isinstance(listed, list) or not listed:
            return None  # no thumbnail: nothing looked at, nothing counted
        thumbnails = [primary.get_thumbnail(index) for index in range(len(listed))]
    except _HEIF_ERRORS:
        counts.add("declined: boxes unreadable")  # the full decode says what is wrong
        return None
    header = formats.bmff_header(data) if header is None else header
    found = _picture(thumbnails, primary, min_side, limits, header)
    if isinstance(found, str):
        counts.add(f"declined: {found}")
        return None
    return Preview(
        found, None, SOURCE, decoded_size(primary.size, min_side)
    )  # HEIF has no draft: the full size, reduced


def _picture(
    thumbnails: list[Any], primary: Any, min_side: int, limits: ImageLimits, header: formats.BmffHeader
) -> Image.Image | str:
    """The smallest thumbnail large enough for ``min_side`` in ``limits``' mode (``previews.refusal``:
    "faithful" wants twice it, so a phone's 320x240 never stands in for 224), decoded, or why none will do."""
    area = primary.size[0] * primary.size[1]
    smaller = [t for t in thumbnails if t.size[0] * t.size[1] < area]
    covering = [t for t in smaller if not refusal(min(t.size), min_side, limits)]
    if not covering:  # the largest's reason: the one that came nearest
        return refusal(max((min(t.size) for t in smaller), default=0), min_side, limits) or "too small"
    thumbnail = min(covering, key=lambda t: t.size[0] * t.size[1])
    reason = _mismatch(thumbnail, primary)
    if reason:
        return reason
    width, height = thumbnail.size
    check_size(width, height, limits)
    return _decoded(thumbnail, limits, header)


def _mismatch(thumbnail: Any, primary: Any) -> str | None:
    """Why this thumbnail is not a scaled copy of the primary, or None when it is."""
    transforms, own = _transforms(primary), _transforms(thumbnail)
    if transforms is None or own is None:
        return "transforms unknown"
    if [t for t in own if t[0] in _ORIENTING] != [t for t in transforms if t[0] in _ORIENTING]:
        return "orientation differs"
    if not _same_crop(own, transforms):
        return "crop differs"
    if not _same_aspect(thumbnail.size, primary.size):
        return "aspect differs"
    if thumbnail.mode != primary.mode:
        return "mode differs"
    profile, own_profile = _profile(primary.info), _profile(thumbnail.info)
    if profile is not None and own_profile is not None and profile != own_profile:
        return "colour profile differs"
    return None


def _transforms(image: Any) -> list[tuple[Any, ...]] | None:
    """libheif's transforms of an item, in order (pillow-heif's own thumbnail choice reads them too)."""
    found = getattr(getattr(image, "_c_image", None), "transformations", None)
    return [tuple(t) for t in found] if isinstance(found, (tuple, list)) else None


def _same_crop(own: list[tuple[Any, ...]], transforms: list[tuple[Any, ...]]) -> bool:
    """The same ``clap`` crops, as fractions of each picture (left, top, right, bottom of width, height).

    A ``clap`` anchored top-left that trims under 64 pixels is an encoder's padding (a grid's
    tiles overhang the picture), not a crop: it is left out, as pillow-heif leaves it out.
    """
    crops = [_crop(t) for t in transforms if t[0] == "clap" and _crops(t)]
    own_crops = [_crop(t) for t in own if t[0] == "clap" and _crops(t)]
    if len(crops) != len(own_crops):
        return False
    return all(np.allclose(a, b, atol=0.005) for a, b in zip(crops, own_crops, strict=True))


def _crops(clap: tuple[Any, ...]) -> bool:
    left, top, right, bottom = clap[1:5]
    return bool(left or top or right >= 64 or bottom >= 64)


def _crop(clap: tuple[Any, ...]) -> tuple[float, ...]:
    left, top, right, bottom, width, height = clap[1:7]
    return (left / width, top / height, right / width, bottom / height)


def _same_aspect(size: tuple[int, int], primary: tuple[int, int]) -> bool:
    """Both sides within ``ASPECT_PIXELS`` of the primary scaled to the thumbnail's longer side."""
    scale = max(size) / max(primary)
    return all(abs(side - whole * scale) <= ASPECT_PIXELS for side, whole in zip(size, primary, strict=True))


def _profile(info: dict[str, Any]) -> tuple[str, object] | None:
    if info.get("icc_profile"):
        return "icc", info["icc_profile"]
    if info.get("nclx_profile"):
        return "nclx", info["nclx_profile"]
    return None


def _decoded(thumbnail: Any, limits: ImageLimits, header: formats.BmffHeader) -> Image.Image | str:
    """The thumbnail decoded by libheif (its transforms applied) and checked for bars, inside
    the decode budget, or why not: it cannot be decoded, comes out another size than it
    declares, or is letterboxed.

    Costed as the full decode costs the file's pixels (its bit depth, chroma and alpha: up to
    20 bytes a pixel), since nothing but the primary's area bounds a thumbnail's size.
    """
    width, height = thumbnail.size
    bytes_per_pixel = memory.bytes_per_pixel("HEIF", thumbnail.mode, header.bits, header.subsampled)
    try:
        cost = budget_pixels(width, height, "HEIF", bytes_per_pixel, limits)
    except ImageError:
        return "over the decode budget"
    with memory.DECODES.hold(cost, limits.decode_budget_pixels):
        try:
            picture: Image.Image = thumbnail.to_pillow()
        except _HEIF_ERRORS:
            return "unreadable"
        if picture.size != (width, height):
            return "unreadable"
        return "letterboxed" if _letterboxed(picture) else picture


def _letterboxed(picture: Image.Image) -> bool:
    """Flat bars of one colour on two opposite edges: a picture fitted into another frame.

    Only the ``BAR_LINES`` edge rows and columns are read (no whole-picture copy)."""
    width, height = picture.size
    if min(width, height) <= 4 * BAR_LINES:
        return False
    for first, last in (
        ((0, 0, width, BAR_LINES), (0, height - BAR_LINES, width, height)),
        ((0, 0, BAR_LINES, height), (width - BAR_LINES, 0, width, height)),
    ):
        a, b = _edge(picture, first), _edge(picture, last)
        if _flat(a) and _flat(b) and np.abs(a.mean((0, 1)) - b.mean((0, 1))).max() <= BAR_SPREAD:
            return True
    return False


def _edge(picture: Image.Image, box: tuple[int, int, int, int]) -> np.ndarray:
    return np.asarray(to_rgb(picture.crop(box))).astype(np.int16)


def _flat(band: np.ndarray) -> bool:
    return bool((band.max((0, 1)) - band.min((0, 1))).max() <= BAR_SPREAD)
