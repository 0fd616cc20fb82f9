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
    # Decode a file's stored smaller picture (a HEIC's thumbnail item, a JPEG's MPF or EXIF preview)
    # instead of its primary when it covers the model and matches it (``previews``); False: always
    # the primary, for those who want every vector from the full picture (docs/formats.md).
    use_previews: bool = True

    @classmethod
    def from_config(cls, images: ImageSettings) -> ImageLimits:
        """The caps the ``[images]`` section sets."""
        return cls(
            max_file_bytes=int(images.max_file_mb * 1024 * 1024),
            max_pixels=int(images.max_megapixels * 1_000_000),
            decode_budget_pixels=int(images.decode_budget_megapixels * 1_000_000),
            use_previews=images.previews,
        )


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
