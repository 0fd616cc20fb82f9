"""The caps on a picture before it is decoded: file size, pixels, and the decode memory budget.

``ImageLimits`` holds the configured caps. ``check_size`` refuses a picture over the pixel
cap; ``budget_pixels`` costs a decode in the process-wide budget's 4-byte pixels
(``memory.DECODES``) and refuses, before decoding, one that alone needs more than the whole
budget; ``check_header`` applies both to the size an AVIF, HEIF or WebP header declares.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import formats, memory
from .failures import ImageError, Reason

if TYPE_CHECKING:
    from ..config import ImageSettings

# Give freed heap back to the system after a decode this big (16 M budget pixels, 64 MB):
# malloc_trim took 0.4-20 ms after 64-MP PNG decodes here, which take about a second.
GIVE_BACK_PIXELS = 16_000_000
# ``[images] previews``: "faithful" decodes a stored preview only when it is large and fine enough
# to keep the vectors near the primary's (``previews.FAITHFUL_FACTOR``: on real photos mean cosine
# 0.99 or more, min 0.977), "fast" any that covers the decode side and matches the primary (a
# phone's 320x240 thumbnail: vectors 0.90-0.99 of the full picture's), "off" always the primary
# (a camera RAW's demosaic too, not its embedded preview).
FAITHFUL, FAST, OFF = "faithful", "fast", "off"
PREVIEW_MODES = (FAITHFUL, FAST, OFF)


@dataclass(frozen=True)
class ImageLimits:
    """Caps that protect the daemon from huge files and decompression bombs."""

    max_file_bytes: int = 100 * 1024 * 1024
    max_pixels: int = 178_000_000
    # What decodes may allocate at once across the process (memory.DECODES), in 4-byte RGB
    # pixels: 1.02 GB. A decode costs its pixels times what its decoder allocates per pixel
    # (memory.bytes_per_pixel, measured); one that needs more than the whole budget is
    # refused. 256 M lets a picture at the pixel cap (178 MP) decode in the formats photos
    # are kept in, with room beside it for small decodes: RGB PNG, TIFF and JPEG 712 MB,
    # RGBA PNG and TIFF 819 MB, CMYK TIFF 783 MB (205 M would do, with no room). It refuses
    # WebP over 63 MP (16.1 bytes a pixel: the 178 MP one needs 2.9 GB), 8-bit 4:2:0 AVIF
    # over 111 MP and HEIF over 140 MP, and 4:4:4, alpha and 10-bit ones sooner (50 MP for
    # 10-bit 4:4:4 HEIF with alpha, 20.3 bytes a pixel). It was 180 M (720 MB), and a decode
    # over it ran alone, counted at 4 bytes a pixel: 2.7 GiB (2.9 GB) for one WebP.
    decode_budget_pixels: int = 256_000_000
    # Which of a file's stored smaller pictures (a HEIC's thumbnail item, a JPEG's MPF or EXIF
    # preview) may be decoded instead of its primary (``PREVIEW_MODES``, docs/formats.md).
    previews: str = FAITHFUL

    def __post_init__(self) -> None:
        if self.previews not in PREVIEW_MODES:
            raise ValueError(f"previews mode {self.previews!r}: must be one of {', '.join(PREVIEW_MODES)}")

    @property
    def use_previews(self) -> bool:
        """Whether any stored preview may stand in for the primary."""
        return self.previews != OFF

    @classmethod
    def from_config(cls, images: ImageSettings) -> ImageLimits:
        """The caps the ``[images]`` section sets."""
        return cls(
            max_file_bytes=int(images.max_file_mb * 1024 * 1024),
            max_pixels=int(images.max_megapixels * 1_000_000),
            decode_budget_pixels=int(images.decode_budget_megapixels * 1_000_000),
            previews=preview_mode(images.previews),
        )


def preview_mode(value: str | bool) -> str:
    """The ``[images] previews`` mode; the booleans it took before the modes still read:
    true is "faithful", false is "off"."""
    if isinstance(value, bool):
        return FAITHFUL if value else OFF
    return value  # config.py checked it is one of PREVIEW_MODES; ImageLimits checks again


def check_size(width: int, height: int, limits: ImageLimits) -> None:
    """Refuse a picture over the pixel cap or with a size that cannot be."""
    if width * height > limits.max_pixels:
        raise ImageError(
            Reason.TOO_LARGE,
            f"{width}x{height} pixels, over the {limits.max_pixels / 1e6:g}-megapixel cap",
        )
    if width < 1 or height < 1:
        raise ImageError(Reason.CORRUPT, f"image claims a size of {width}x{height}")


def budget_pixels(width: int, height: int, fmt: str | None, bytes_per_pixel: float, limits: ImageLimits) -> int:
    """A decode's cost in the budget's 4-byte RGB pixels; TOO_LARGE, before decoding, when
    it needs more than the whole budget (it would wait for every other decode, then take
    more than the budget allows on its own)."""
    cost = memory.budget_pixels(width * height, bytes_per_pixel)
    if cost > limits.decode_budget_pixels:
        name = {"WEBP": "WebP", None: "picture"}.get(fmt, fmt)
        needs = width * height * bytes_per_pixel / 1e9
        budget = limits.decode_budget_pixels * memory.BUDGET_PIXEL_BYTES / 1e9
        raise ImageError(
            Reason.TOO_LARGE,
            f"{width}x{height} {name} needs about {needs:.1f} GB to decode, more than the decode budget "
            f"(images.decode_budget_megapixels = {limits.decode_budget_pixels / 1e6:g}: {budget:.1f} GB)",
        )
    return cost


def check_header(data: bytes, kind: str | None, limits: ImageLimits) -> formats.BmffHeader | None:
    """The caps on the size an AVIF, HEIF or WebP header declares, before a decoder sees the
    bytes; the AVIF or HEIF header (None for other kinds).

    AVIF's decoder refuses a huge picture by failing to open it (which read as "not an
    image"), and Pillow's WebP plugin allocates the canvas as it opens the file (8 bytes a
    pixel of address space), so these are checked here, on the header's own numbers.
    """
    if kind in formats.BMFF_KINDS:
        header = formats.bmff_header(data)
        if header.width and header.height:  # none when the boxes cannot be walked: the decoder tells then
            check_size(header.width, header.height, limits)
        return header
    size = formats.webp_size(data[:30])
    if size is not None:
        check_size(*size, limits)
        budget_pixels(*size, "WEBP", memory.bytes_per_pixel("WEBP", "RGB"), limits)
    return None
