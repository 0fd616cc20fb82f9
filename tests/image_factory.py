"""Makers of tricky image files, shared by the image and pipeline tests."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

RED = (255, 0, 0)
BLUE = (0, 0, 255)
GREEN = (0, 255, 0)


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    image.convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def zero_bytes(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def truncated_jpeg(path: Path, photo: Image.Image) -> Path:
    data = jpeg_bytes(photo)
    path.write_bytes(data[: len(data) // 2])
    return path


def text_as_jpeg(path: Path) -> Path:
    path.write_text("this is not a picture, just text\n" * 20, encoding="utf-8")
    return path


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_claiming_size(path: Path, width: int = 30000, height: int = 30000) -> Path:
    """A tiny PNG whose header claims a huge picture (a decompression bomb's calling card)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")
    )
    return path


def cmyk_jpeg(path: Path, photo: Image.Image) -> Path:
    photo.convert("RGB").convert("CMYK").save(path, "JPEG", quality=92)
    return path


def png_16bit(path: Path, size: int = 256) -> Path:
    """A 16-bit greyscale gradient from black to white."""
    ramp = np.linspace(0, 65535, size, dtype=np.uint16)
    array = np.tile(ramp, (size, 1))
    Image.fromarray(array).save(path, "PNG")
    return path


def palette_png_with_transparency(path: Path, size: int = 64) -> Path:
    """Left half transparent (palette index 0), right half opaque red."""
    image = Image.new("P", (size, size), 0)
    image.putpalette([0, 0, 0] + list(RED) + [0] * (254 * 3))
    for x in range(size // 2, size):
        for y in range(size):
            image.putpixel((x, y), 1)
    image.save(path, "PNG", transparency=0)
    return path


def rgba_png_half_transparent(path: Path, size: int = 64) -> Path:
    array = np.zeros((size, size, 4), dtype=np.uint8)
    array[:, size // 2 :] = (0, 0, 255, 255)  # right half opaque blue, left transparent
    Image.fromarray(array).save(path, "PNG")
    return path


def exif_rotated_jpeg(path: Path, width: int = 200, height: int = 100) -> Path:
    """Stored landscape, left half red and right half blue, with EXIF orientation 6
    (viewers turn it 90 degrees clockwise: portrait, red on top)."""
    image = Image.new("RGB", (width, height), BLUE)
    image.paste(RED, (0, 0, width // 2, height))
    exif = Image.Exif()
    exif[0x0112] = 6
    image.save(path, "JPEG", quality=95, exif=exif.tobytes())
    return path


def animated_gif(path: Path, size: int = 64) -> Path:
    """Three frames: red, green, blue."""
    frames = [Image.new("RGB", (size, size), c) for c in (RED, GREEN, BLUE)]
    frames[0].save(path, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    return path


def large_jpeg(path: Path, photo: Image.Image, width: int = 4000, height: int = 3000) -> Path:
    photo.convert("RGB").resize((width, height), Image.Resampling.BICUBIC).save(path, "JPEG", quality=88)
    return path


def solid_png(path: Path, width: int, height: int, rgb: tuple[int, ...] = (200, 40, 40), bit_depth: int = 8) -> Path:
    """A one-colour RGB (or RGBA, given 4 values) PNG of any size, 8 or 16 bits a channel
    (``rgb`` in 0-255 either way), written row by row: tiny on disk, and made without holding
    the picture (13000x13000 takes about 3 s and 0.5 MB here, 676 MB decoded)."""
    pixel = bytes(rgb) if bit_depth == 8 else b"".join((v * 257).to_bytes(2, "big") for v in rgb)
    row = b"\x00" + pixel * width  # filter byte "none", then the pixels
    packer = zlib.compressobj(9)
    rows_per_call = max(1, (1 << 22) // len(row))  # compress about 4 MB at a time
    parts = []
    for start in range(0, height, rows_per_call):
        parts.append(packer.compress(row * min(rows_per_call, height - start)))
    parts.append(packer.flush())
    colour_type = 6 if len(rgb) == 4 else 2  # RGBA or RGB
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", b"".join(parts))
        + _png_chunk(b"IEND", b"")
    )
    return path


# XYZ (D65) -> linear sRGB: a DNG ColorMatrix1 that makes the "camera" an sRGB sensor, so
# LibRaw's development gives back the picture's own colours.
_XYZ_TO_SRGB = (3.2404542, -1.5371385, -0.4985314, -0.9692660, 1.8760108, 0.0415560, 0.0556434, -0.2040259, 1.0572252)


def dng_bytes(
    photo: Image.Image, preview: Image.Image | None = None, orientation: int = 1, extra_tags: list | None = None
) -> bytes:
    """A real DNG (LibRaw reads it): ``photo`` as an RGGB Bayer mosaic of 16-bit linear light.

    Written with tifffile: the raw data in IFD0, or, with ``preview``, an 8-bit RGB preview in
    IFD0 (NewSubfileType 1) and the raw data in a SubIFD, as cameras write them.
    ``orientation`` is the TIFF Orientation tag (6: turn 90° clockwise to view); ``extra_tags``
    (tifffile's form) go into IFD0 too (Make, Model, a capture date).
    """
    import tifffile

    rgb = np.asarray(photo.convert("RGB"))
    height, width = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
    s = rgb[:height, :width].astype(np.float64) / 255
    linear = np.where(s <= 0.04045, s / 12.92, ((s + 0.055) / 1.055) ** 2.4)
    linear = np.round(linear * 65535).astype(np.uint16)
    mosaic = np.empty((height, width), np.uint16)
    mosaic[0::2, 0::2] = linear[0::2, 0::2, 0]
    mosaic[0::2, 1::2] = linear[0::2, 1::2, 1]
    mosaic[1::2, 0::2] = linear[1::2, 0::2, 1]
    mosaic[1::2, 1::2] = linear[1::2, 1::2, 2]
    matrix = tuple(v for x in _XYZ_TO_SRGB for v in (round(x * 10000), 10000))
    dng_tags = [
        (50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion
        (50707, "B", 4, (1, 1, 0, 0), True),  # DNGBackwardVersion
        (50708, "s", 0, "imgsearchd test sensor", True),  # UniqueCameraModel
        (50721, "2i", 9, matrix, True),  # ColorMatrix1
        (50778, "H", 1, 21, True),  # CalibrationIlluminant1: D65
        (50728, "2I", 3, (1, 1, 1, 1, 1, 1), True),  # AsShotNeutral: no white balance to do
        (274, "H", 1, orientation, True),
        *(extra_tags or []),
    ]
    raw_tags = [
        (33421, "H", 2, (2, 2), True),  # CFARepeatPatternDim
        (33422, "B", 4, (0, 1, 1, 2), True),  # CFAPattern: RGGB
        (50717, "I", 1, 65535, True),  # WhiteLevel
    ]
    cfa = 32803  # PhotometricInterpretation CFA
    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as tif:
        if preview is None:
            tif.write(mosaic, photometric=cfa, subfiletype=0, extratags=dng_tags + raw_tags, metadata=None)
        else:
            thumb = np.asarray(preview.convert("RGB"))
            tif.write(thumb, photometric="rgb", subfiletype=1, subifds=1, extratags=dng_tags, metadata=None)
            tif.write(mosaic, photometric=cfa, subfiletype=0, extratags=raw_tags, metadata=None)
    return buf.getvalue()


def heif_bytes(image: Image.Image, kind: str = "HEIF", quality: int = 85) -> bytes:
    """HEIC (pillow-heif's encoder, registered by imgsearchd.media.formats) or AVIF (Pillow's) bytes."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, kind, quality=quality)
    return buf.getvalue()


def solid_webp(path: Path, width: int, height: int, lossless: bool = True) -> Path:
    """A one-colour WebP of any size (16383x10860 lossless: 6.8 KB, 2 s), made in a process of
    its own: Pillow's encoder peaks at 1.8 GB for that one, which the test process would keep."""
    code = (
        "import sys; from PIL import Image\n"
        "w, h, lossless = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == '1'\n"
        "Image.new('RGB', (w, h), (40, 90, 200)).save(sys.argv[1], 'WEBP', lossless=lossless, quality=80)\n"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(path), str(width), str(height), "1" if lossless else "0"],
        check=True,
        timeout=120,
    )
    return path


def bmff_claiming_size(data: bytes, width: int, height: int) -> bytes:
    """An AVIF or HEIF file with every ``ispe`` box (image spatial extents) set to claim width x height."""
    at = data.find(b"ispe")
    assert at > 0, "no ispe box"
    while at > 0:
        data = data[: at + 8] + struct.pack(">II", width, height) + data[at + 16 :]  # after version and flags
        at = data.find(b"ispe", at + 4)
    return data
