"""HEIC files written the way phones write them: a grid of tiles, a thumbnail item, an orientation.

An iPhone stores a 12-MP photo as a grid of 512x512 HEVC tiles with a 320x240 thumbnail item
(``thmb``) and the orientation as ``irot``/``imir`` transforms on both; pillow-heif 1.9
(libheif 1.23, x265) writes the same structure: ``tile_size`` makes the grid, ``thumbnails``
the thumbnail items, and an EXIF orientation becomes the transforms (the decoded picture comes
out turned, ``info["original_orientation"]`` keeps it). libheif scales a thumbnail by picking
the nearest pixel, which aliases; a phone filters, so ``phone_heic`` shrinks the thumbnail
itself (EfficientNet's vectors from libheif's own thumbnails were 0.979-0.998 of the full
decode's cosine, from filtered ones 1.000).

AVIF: neither writer here stores a thumbnail (Pillow's libavif writes none, and this
pillow-heif has no AV1 encoder), and Pillow's AVIF reader decodes the primary item only, so
there is no ``avif_with_thumbnail``.
"""

from __future__ import annotations

import io
from typing import Any

from PIL import Image
from pillow_heif import misc
from pillow_heif.constants import HeifCompressionFormat

from imgsearchd.media import formats

assert formats.HEIF_AVAILABLE  # importing formats registers pillow-heif's opener and saver with Pillow


def phone_heic(
    picture: Image.Image,
    *,
    tile: int = 512,
    thumbnail: int | None = 320,
    quality: int = 80,
    orientation: int = 1,
    thumbnail_picture: Image.Image | None = None,
    thumbnail_orientation: int | None = None,
    nearest_thumbnail: bool = False,
) -> bytes:
    """A grid HEIC of ``picture`` with ``tile``-pixel tiles and a thumbnail whose longer side is
    ``thumbnail`` (None: no thumbnail), as phones write them.

    ``picture`` is stored as the sensor saw it and ``orientation`` (EXIF's 1-8) says how to
    turn it: the decoded primary is ``picture`` turned, as a phone held sideways writes it.
    The thumbnail is shrunk with a filter (Lanczos), as a phone's is; ``nearest_thumbnail``
    leaves it to libheif, whose scaling picks the nearest pixel (aliased), as files written with
    libheif's own thumbnails (pillow-heif, libheif's tools) have it.
    ``thumbnail_picture``: the thumbnail is made from this picture instead (another picture or
    crop, as an editor that rewrites the primary and keeps the old thumbnail leaves it);
    ``thumbnail_orientation``: the thumbnail's own transforms say this orientation instead of
    the primary's (a writer's bug); those two need a grid (``picture`` larger than ``tile``). A grey ("L") ``picture`` makes a monochrome primary, its thumbnail
    (from ``thumbnail_picture``) stays colour.
    A picture within one tile gets libheif's own (nearest-pixel) thumbnail.
    """
    rgb = picture if picture.mode == "L" else picture.convert("RGB")
    exif = Image.Exif()
    exif[0x0112] = orientation
    own = thumbnail_picture is None and thumbnail_orientation is None
    # a picture within one tile is no grid: libheif then scales the thumbnail itself (nearest pixel)
    if not thumbnail or thumbnail >= max(rgb.size) or (own and (nearest_thumbnail or max(rgb.size) <= tile)):
        buf = io.BytesIO()
        thumbnails = [thumbnail] if thumbnail else []
        rgb.save(buf, "HEIF", quality=quality, tile_size=tile, thumbnails=thumbnails, exif=exif.tobytes())
        return buf.getvalue()
    if max(rgb.size) <= tile:
        raise ValueError(f"another thumbnail needs a grid: picture {rgb.size} is not larger than tile {tile}")
    other = (thumbnail_picture if thumbnail_picture is not None else rgb).convert("RGB")
    pixels = other if nearest_thumbnail else _filtered(other, thumbnail)
    turn = orientation if thumbnail_orientation is None else thumbnail_orientation
    writer = _OtherThumbnail(pixels, turn, quality)
    writer.add_image(
        rgb.size,
        rgb.mode,
        rgb.tobytes(),
        primary=True,
        tile_size=tile,
        thumbnails=[thumbnail],
        exif=exif.tobytes(),
        image_orientation=orientation,
    )
    buf = io.BytesIO()
    writer.save(buf)
    return buf.getvalue()


def _filtered(picture: Image.Image, longer: int) -> Image.Image:
    """``picture`` shrunk with Lanczos to ``longer`` pixels on its longer side (the other even,
    as 4:2:0 chroma wants), with one more column and row copied from the edge: libheif's
    nearest-pixel scaling of that to ``longer`` keeps every pixel of the shrunk picture."""
    width, height = picture.size
    scale = longer / max(width, height)
    size = (max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2))
    size = (longer, size[1]) if width >= height else (size[0], longer)
    shrunk = picture.resize(size, Image.Resampling.LANCZOS)
    padded = Image.new("RGB", (size[0] + 1, size[1] + 1))
    padded.paste(shrunk, (0, 0))
    padded.paste(shrunk.crop((size[0] - 1, 0, size[0], size[1])), (size[0], 0))
    padded.paste(padded.crop((0, size[1] - 1, size[0] + 1, size[1])), (0, size[1]))
    return padded


class _OtherThumbnail(misc.CtxEncode):
    """pillow-heif 1.9's writer with the grid's thumbnails scaled from pixels of our own.

    It overrides the private ``_add_image_grid`` (and uses ``misc._add_planes``, ``_grid_images``):
    pillow-heif has no public way to store a thumbnail other than the primary's own; the
    ``pillow-heif>=1.9`` pin in pyproject.toml keeps these names.
    """

    def __init__(self, thumbnail_pixels: Image.Image, orientation: int, quality: int) -> None:
        super().__init__(HeifCompressionFormat.HEVC, quality=quality)
        self._pixels = thumbnail_pixels
        self._orientation = orientation

    def _add_image_grid(self, size: tuple[int, int], mode: str, data: bytes, tile_size: int, **kwargs: Any) -> None:
        boxes = [box for box in kwargs.pop("thumbnails", []) if box > 3]
        super()._add_image_grid(size, mode, data, tile_size, thumbnails=[], **kwargs)
        other = self._pixels
        pixels = self.ctx_write.create_image(other.size, misc.MODE_INFO["RGB"][2], misc.MODE_INFO["RGB"][3], 0)
        misc._add_planes(pixels, other.size, "RGB", other.tobytes(), 0, 8)
        for box in boxes:
            self._grid_images[-1].encode_thumbnail(self.ctx_write, box, self._orientation, pixels)
