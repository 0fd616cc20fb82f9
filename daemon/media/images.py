"""The only place that opens image files.

``read_file`` reads a file's bytes once (size-capped) with a consistent stat;
``decode`` turns those bytes into an RGB picture just big enough for a model:
EXIF orientation applied, transparency flattened onto white, 16-bit and CMYK
converted, large JPEGs decoded at reduced size (Pillow's draft mode), a pixel
cap against decompression bombs, and a process-wide budget of the memory decodes take
at once (each decode costed by its format and mode, ``memory.bytes_per_pixel``; one that
alone needs more than the whole budget is refused before decoding). HEIC/HEIF, AVIF and
camera RAW files (``formats``) go through the same caps; one whose decoder is not
installed fails with ``Reason.MISSING_LIBRARY``. Every failure is an ``ImageError``
whose ``reason`` is one short word.

Longer than most modules: every format's caps, pixel budget and failure reasons stay in
the one place that opens image files (the RAW path, preview or demosaic, is 90 of its lines).
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import BinaryIO

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from ..paths import is_inside
from . import formats, memory

# Pillow's names of what ``Image.open`` may read: the optional ones only when their decoder is here.
SUPPORTED_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF") + (
    (("AVIF",) if formats.AVIF_AVAILABLE else ()) + (("HEIF",) if formats.HEIF_AVAILABLE else ())
)
# Our own cap (ImageLimits.max_pixels, checked right after reading the header) replaces
# Pillow's global one, so the configured value is the one that counts.
Image.MAX_IMAGE_PIXELS = None
Image.init()  # register every plugin, so ``formats=`` can name them (JPEG covers MPO)


class Reason(StrEnum):
    """Why an image could not be used: the ``reason`` of an ImageError, one short word."""

    MISSING = "missing"
    NOT_A_FILE = "not_a_file"
    UNREADABLE = "unreadable"
    EMPTY = "empty"
    TOO_LARGE = "too_large"
    NOT_AN_IMAGE = "not_an_image"
    TRUNCATED = "truncated"
    CORRUPT = "corrupt"
    OUTSIDE_ROOTS = "outside_roots"  # a link that leads out of the watched folders and allowed roots
    INTERNAL = "internal_error"  # a bug in imgsearchd or a library: the log has the traceback
    MISSING_LIBRARY = "missing_library"  # HEIC, AVIF or RAW whose optional decoder is not installed


# Reasons that say nothing about the file's content: tried again on the next event or scan
# even when size and mtime are unchanged (a chmod changes neither; nor does installing pillow-heif).
TRANSIENT_REASONS = frozenset({Reason.UNREADABLE, Reason.MISSING, Reason.INTERNAL, Reason.MISSING_LIBRARY})


_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
# Modes whose box average commutes with the RGB conversion, to the bit (tested): CMYK's
# conversion is a product, 32-bit grey rounds its average differently (1 level), and
# palettes and alpha are no averages at all, so those convert first.
_SHRINK_FIRST_MODES = ("L", "RGB")
# 32-bit grey and float pictures are scaled by their whole range, so they convert whole.
_WHOLE_PICTURE_MODES = ("I", "F")
# Other modes convert to RGB this many pixels at a time (16 MB of RGB in Pillow's 4 bytes).
_BAND_PIXELS = 4_000_000
# EXIF orientation tag value -> the turn that undoes it (as ImageOps.exif_transpose does).
_ORIENTATIONS = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}
# What decoders say of a file cut short.
# Matched as written: Pillow's "Truncated File Read" comes from a header of garbage (corrupt),
# its "image file is truncated" from a file cut short.
_CUT_SHORT = ("truncated", "broken data stream", "Truncated data", "end of file")
# Give freed heap back to the system after a decode this big (16 M budget pixels, 64 MB):
# malloc_trim took 0.4-20 ms after 64-MP PNG decodes here, which take about a second.
GIVE_BACK_PIXELS = 16_000_000


class ImageError(Exception):
    """An image that cannot be used, with a one-word ``reason`` and a readable detail."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


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

    @classmethod
    def from_config(cls, images: dict[str, float]) -> ImageLimits:
        return cls(
            max_file_bytes=int(images["max_file_mb"] * 1024 * 1024),
            max_pixels=int(images["max_megapixels"] * 1_000_000),
            decode_budget_pixels=int(images["decode_budget_megapixels"] * 1_000_000),
        )


@dataclass(frozen=True)
class FileBytes:
    """A file's content and the stat taken from the same open file."""

    path: str
    size: int
    mtime_ns: int
    data: bytes

    @property
    def content_hash(self) -> str:
        return content_hash(self.data)


def content_hash(data: bytes) -> str:
    """A short, collision-safe fingerprint of a file's bytes."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _os_error(exc: OSError) -> ImageError:
    """The ImageError for a failed stat, open or read."""
    if isinstance(exc, FileNotFoundError):
        return ImageError(Reason.MISSING, "no such file")
    if isinstance(exc, PermissionError):
        return ImageError(Reason.UNREADABLE, "permission denied")
    if isinstance(exc, IsADirectoryError):
        return ImageError(Reason.NOT_A_FILE, "is a folder")
    if exc.errno in (errno.ENAMETOOLONG, errno.ELOOP, errno.ENOTDIR):  # no such file can be there
        return ImageError(Reason.MISSING, exc.strerror or str(exc))
    return ImageError(Reason.UNREADABLE, exc.strerror or str(exc))


def stat_file(path: str) -> os.stat_result:
    """``os.stat`` with failures turned into ImageError."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise _os_error(exc) from exc
    if not stat.S_ISREG(st.st_mode):
        raise ImageError(Reason.NOT_A_FILE, "not a regular file")
    return st


def opened_path(fd: int) -> str:
    """Where an open file really is: the kernel's name for it, every link resolved."""
    return os.readlink(f"/proc/self/fd/{fd}")


def check_inside(fd: int, roots: Sequence[str]) -> None:
    """Refuse an open file that is not below one of ``roots`` (real paths).

    Checked on the file already open, so a name swapped for a link between a check and
    the read cannot smuggle another file's content in.
    """
    try:
        real = opened_path(fd)
    except OSError:
        real = ""
    if not is_inside(real, roots):
        raise ImageError(Reason.OUTSIDE_ROOTS, f"leads to {real or 'an unknown place'}, outside the allowed folders")


def _open_regular(path: str) -> int:
    """Open a regular file for reading without ever blocking on it (a FIFO swapped in)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise _os_error(exc) from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ImageError(Reason.NOT_A_FILE, "not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_file(path: str, limits: ImageLimits = ImageLimits(), roots: Sequence[str] | None = None) -> FileBytes:
    """Read a whole image file, refusing empty, oversized and unreadable ones.

    With ``roots``, a file whose real location (links resolved) is not below one of them
    is refused with ``Reason.OUTSIDE_ROOTS``.
    """
    st = stat_file(path)
    if st.st_size > limits.max_file_bytes:
        raise ImageError(Reason.TOO_LARGE, f"file is {st.st_size} bytes, over the {limits.max_file_bytes}-byte cap")
    fd = _open_regular(path)
    try:
        with os.fdopen(fd, "rb") as fh:
            if roots:
                check_inside(fh.fileno(), roots)
            st = os.fstat(fh.fileno())
            # Ask for the size fstat reported, plus one byte to notice growth, not for the
            # whole cap: read(n) allocates n bytes up front, so asking for the 100 MB cap made
            # every file pay for a 100 MB allocation (half the read time of a 3 MB JPEG).
            # A file that grew since fstat is read on, up to the cap, as before.
            want = min(st.st_size, limits.max_file_bytes) + 1
            data = fh.read(want)
            if len(data) == want and want <= limits.max_file_bytes:
                data += fh.read(limits.max_file_bytes + 1 - want)
    except OSError as exc:
        raise _os_error(exc) from exc
    if not data:
        raise ImageError(Reason.EMPTY, "file is empty")
    if len(data) > limits.max_file_bytes:
        raise ImageError(Reason.TOO_LARGE, f"file is over the {limits.max_file_bytes}-byte cap")
    return FileBytes(path=path, size=len(data), mtime_ns=st.st_mtime_ns, data=data)


def decode(data: bytes, min_side: int = 0, limits: ImageLimits = ImageLimits()) -> Image.Image:
    """Decode image bytes into an RGB picture whose shorter side is at least ``min_side``.

    With ``min_side`` > 0 the picture is decoded or shrunk to between ``min_side`` and
    about twice that on its shorter side, which is all a model's preprocessing needs.
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
            return _decode_raw(data, min_side, limits)
        except ImageError as exc:
            # a TIFF that only looked like a camera's (a maker's name and a preview page), or a
            # camera newer than LibRaw: Pillow reads its first page rather than nothing
            if exc.reason != Reason.NOT_AN_IMAGE or not formats.is_tiff(data):
                raise
    header = _check_header(data, kind, limits)
    try:
        with _decode_errors():
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


def _check_header(data: bytes, kind: str | None, limits: ImageLimits) -> formats.BmffHeader | None:
    """The caps on the size an AVIF, HEIF or WebP header declares, before a decoder sees the
    bytes; the AVIF or HEIF header (None for other kinds).

    AVIF's decoder refuses a huge picture by failing to open it (which read as "not an
    image"), and Pillow's WebP plugin allocates the canvas as it opens the file (8 bytes a
    pixel of address space), so these are checked here, on the header's own numbers.
    """
    if kind in formats.BMFF_KINDS:
        header = formats.bmff_header(data)
        if header.width and header.height:  # none when the boxes cannot be walked: the decoder tells then
            _check_size(header.width, header.height, limits)
        return header
    size = formats.webp_size(data[:30])
    if size is not None:
        _check_size(*size, limits)
        _budget_pixels(*size, "WEBP", memory.bytes_per_pixel("WEBP", "RGB"), limits)
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
    (four huge PNGs at once then peaked at 2,080 MiB instead of 1,485; tests/test_memory.py).
    ``header``: what an AVIF or HEIF file declares (bit depth and chroma change its cost).
    """
    opened = held.pop()
    cost = _budget_pixels(
        opened.width, opened.height, opened.format, _bytes_per_pixel(opened, min_side, header), limits
    )
    with memory.DECODES.hold(cost, limits.decode_budget_pixels):
        with _decode_errors():
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


def _budget_pixels(width: int, height: int, fmt: str | None, bytes_per_pixel: float, limits: ImageLimits) -> int:
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


def _decode_raw(data: bytes, min_side: int, limits: ImageLimits) -> Image.Image:
    """A camera RAW file: the camera's embedded preview when its shorter side reaches
    ``min_side``, else LibRaw's demosaic (half size when that still reaches it: a quarter
    of the work), under the same caps and budget as every other picture.

    Measured here (bench/bench_formats.py, 24 MP DNG, 2 shared cores): the 1.7 MP preview
    10 ms, the half-size demosaic 360-520 ms, rawpy's full postprocess 2.5-3.4 s (a 24 MP
    JPEG: 62-77 ms with draft mode); BENCHMARKS.md "Image formats and metadata".
    """
    with _decode_errors():
        raw = formats.open_raw(data)
    with raw:
        sizes = raw.sizes
        _check_size(sizes.raw_width, sizes.raw_height, limits)
        turn = _raw_turn(sizes.flip)
        if min_side > 0:
            with _decode_errors():
                preview = formats.raw_preview(raw)
            picture = _raw_preview_picture(preview, min_side, limits) if preview is not None else None
            if picture is not None:
                return picture.transpose(turn) if turn is not None else picture
        half = min_side > 0 and min(sizes.width, sizes.height) // 2 >= min_side
        # LibRaw holds the 16-bit raw data (2 bytes a pixel) and a 16-bit 4-channel picture
        # (8 bytes a pixel, a quarter of the pixels at half size): 4 bytes a raw pixel at half
        # size, 12 at full size.
        held = _budget_pixels(sizes.raw_width, sizes.raw_height, "camera RAW", 4 if half else 12, limits)
        with memory.DECODES.hold(held, limits.decode_budget_pixels):
            with _decode_errors():
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
        with _decode_errors():
            held = [_open(preview, min_side, limits)]  # draft keeps the shorter side >= min_side when it was
    else:
        held = [Image.fromarray(preview)]
    if min(held[0].size) < min_side:
        return None
    return _load_and_fit(held, min_side, limits, exif_turn=False)


def _raw_turn(flip: int) -> Image.Transpose | None:
    """LibRaw's ``flip`` as the turn that makes the picture upright."""
    name = formats.RAW_FLIPS.get(flip)
    return Image.Transpose[name] if name else None


def _check_size(width: int, height: int, limits: ImageLimits) -> None:
    """Refuse a picture over the pixel cap or with a size that cannot be."""
    if width * height > limits.max_pixels:
        raise ImageError(
            Reason.TOO_LARGE,
            f"{width}x{height} pixels, over the {limits.max_pixels / 1e6:g}-megapixel cap",
        )
    if width < 1 or height < 1:
        raise ImageError(Reason.CORRUPT, f"image claims a size of {width}x{height}")


def _open(data: bytes, min_side: int, limits: ImageLimits) -> Image.Image:
    """Read the header, check the caps, and set JPEG draft mode; nothing decoded yet."""
    image: Image.Image = Image.open(io.BytesIO(data), formats=SUPPORTED_FORMATS)
    _check_size(*image.size, limits)
    if image.format in ("JPEG", "MPO") and min_side > 0:
        image.draft("RGB", (min_side, min_side))
    return image


@contextmanager
def _decode_errors() -> Iterator[None]:
    """Pillow's many failure types as ImageErrors with a one-word reason."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    except ImageError:
        raise
    except formats.RAW_UNSUPPORTED as exc:
        raise ImageError(Reason.NOT_AN_IMAGE, f"a camera RAW file LibRaw does not read: {exc}") from exc
    except formats.RAW_TOO_BIG as exc:
        raise ImageError(Reason.TOO_LARGE, f"LibRaw: {exc}") from exc
    except formats.RAW_ERROR as exc:
        message = str(exc) or type(exc).__name__
        raise ImageError(Reason.TRUNCATED if "EOF" in message else Reason.CORRUPT, f"LibRaw: {message}") from exc
    except UnidentifiedImageError as exc:
        raise ImageError(Reason.NOT_AN_IMAGE, f"not a supported image ({', '.join(SUPPORTED_FORMATS)})") from exc
    except Image.DecompressionBombError as exc:
        raise ImageError(Reason.TOO_LARGE, str(exc)) from exc
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError) as exc:
        message = str(exc) or type(exc).__name__
        # "image file is truncated" (Pillow), "Truncated data" (libavif), "Unexpected end of file" (libheif)
        if any(words in message for words in _CUT_SHORT) or isinstance(exc, EOFError):
            raise ImageError(Reason.TRUNCATED, message) from exc
        raise ImageError(Reason.CORRUPT, message) from exc
    except MemoryError as exc:
        raise ImageError(Reason.TOO_LARGE, "not enough memory to decode") from exc


def _fit(image: Image.Image, min_side: int, exif_turn: bool = True) -> Image.Image:
    """The decoded picture shrunk, turned upright and in RGB, in the order that copies least.

    Grey and RGB pictures are shrunk first; the other modes (palettes, alpha, 16-bit, CMYK)
    are converted a band of rows at a time, each band shrunk at once, so no second
    full-size copy exists: a 13000x13000 RGBA PNG peaked at 2094 MiB over the picture-less
    process when converted whole, and the EXIF turn of a full-size picture copied it too.
    """
    turn = _orientation(image) if exif_turn else None
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
    """The box-reduce factor that keeps the shorter side >= min_side (1: none)."""
    if min_side <= 0:
        return 1
    return max(1, min(image.size) // min_side)


def load_image(path: str, min_side: int = 0, limits: ImageLimits = ImageLimits()) -> Image.Image:
    """Read and decode one image file (for queries and tools)."""
    return decode(read_file(path, limits).data, min_side, limits)


def _orientation(image: Image.Image) -> Image.Transpose | None:
    """The turn that makes the picture upright, read from its EXIF orientation tag."""
    try:
        value = image.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # a malformed EXIF block must not cost the picture
        return None
    return _ORIENTATIONS.get(value) if isinstance(value, int) else None


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB, transparency flattened onto white."""
    mode = image.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        image = _high_depth_to_l(image)
        mode = image.mode
    has_alpha = mode in _ALPHA_MODES or (mode in ("P", "L", "RGB", "1") and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if mode != "RGB":
        return image.convert("RGB")
    return image


def _high_depth_to_l(image: Image.Image) -> Image.Image:
    """16-bit, 32-bit integer or float greyscale to 8-bit, keeping the tonal range."""
    array = np.asarray(image)
    if image.mode.startswith("I;16"):
        scaled = (array.astype(np.uint32) >> 8).astype(np.uint8)
    elif image.mode == "I" and array.size and array.max() <= 255 and array.min() >= 0:
        scaled = array.astype(np.uint8)
    elif image.mode == "I":
        scaled = np.clip(array.astype(np.float64) / 257.0, 0, 255).astype(np.uint8)
    else:
        lo, hi = (float(array.min()), float(array.max())) if array.size else (0.0, 1.0)
        span = hi - lo if hi > lo else 1.0
        scaled = ((array.astype(np.float64) - lo) * (255.0 / span)).astype(np.uint8)
    return Image.fromarray(scaled)


# Content types of the formats read, by Pillow's name (MPO is a JPEG with extra frames).
CONTENT_TYPES = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
    **formats.CONTENT_TYPES,  # HEIF, AVIF and camera RAW, by the kind ``formats.sniff`` names
}


def open_original(
    path: str, limits: ImageLimits = ImageLimits(), roots: Sequence[str] | None = None
) -> tuple[BinaryIO, int, str]:
    """Open an image file to send as it is: (the open file at its start, its size, its content type).

    A regular file, within the size cap, inside ``roots`` (checked on the open file) and an
    image by its header: the content type comes from the bytes, never from the name.
    """
    fh = os.fdopen(_open_regular(path), "rb")
    try:
        if roots:
            check_inside(fh.fileno(), roots)
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            raise ImageError(Reason.EMPTY, "file is empty")
        if size > limits.max_file_bytes:
            raise ImageError(Reason.TOO_LARGE, f"file is {size} bytes, over the {limits.max_file_bytes}-byte cap")
        kind = formats.sniff(fh.read(formats.HEAD_BYTES)) or ""  # RAW and HEIF need no decoder to be sent
        fh.seek(0)
        if kind not in formats.CONTENT_TYPES:
            with _decode_errors():
                kind = Image.open(fh, formats=SUPPORTED_FORMATS).format or ""  # the header only
            fh.seek(0)
    except OSError as exc:
        fh.close()
        raise _os_error(exc) from exc
    except BaseException:
        fh.close()
        raise
    return fh, size, CONTENT_TYPES.get(kind, "application/octet-stream")


_TURNED = (Image.Transpose.TRANSPOSE, Image.Transpose.ROTATE_270, Image.Transpose.TRANSVERSE, Image.Transpose.ROTATE_90)


def header_size(path: str, roots: Sequence[str] | None = None) -> tuple[int, int] | None:
    """(width, height) as shown (EXIF orientation applied), read from the header alone; None when unreadable.

    Pillow's open is lazy: nothing is decoded. With ``roots``, a file that really lies
    outside them gives None, as an unreadable one does.
    """
    try:
        fd = _open_regular(path)
    except ImageError:
        return None
    try:
        with os.fdopen(fd, "rb") as fh:
            if roots:
                check_inside(fh.fileno(), roots)
            if formats.sniff(fh.read(formats.HEAD_BYTES)) in formats.RAW_KINDS:
                return _raw_header_size(fh.fileno())
            fh.seek(0)
            with Image.open(fh, formats=SUPPORTED_FORMATS) as image:
                width, height = image.size
                if _orientation(image) in _TURNED:
                    width, height = height, width
                return (width, height) if width > 0 and height > 0 else None
    except Exception:  # any header Pillow cannot read: the size is unknown, the listing goes on
        return None


def _raw_header_size(fd: int) -> tuple[int, int] | None:
    """A RAW file's (width, height) as shown, from LibRaw reading its header through the open file."""
    if not formats.RAW_AVAILABLE:
        return None
    with formats.open_raw_file(f"/proc/self/fd/{fd}") as raw:  # the file already opened and checked
        sizes = raw.sizes
        width, height = sizes.width, sizes.height
        if _raw_turn(sizes.flip) in _TURNED:
            width, height = height, width
        return (width, height) if width > 0 and height > 0 else None
