"""Pictures made upright and 8-bit RGB: the EXIF or LibRaw turn, and every Pillow mode to RGB.

``to_rgb`` flattens transparency onto white and brings 16-bit, 32-bit and float greyscale
down to 8 bits keeping the tonal range; ``orientation`` and ``raw_turn`` name the turn that
undoes a camera's orientation.
"""

from __future__ import annotations

import numpy as np
from PIL import ExifTags, Image

from . import formats

_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
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
# The turns that swap width and height.
TURNED = (Image.Transpose.TRANSPOSE, Image.Transpose.ROTATE_270, Image.Transpose.TRANSVERSE, Image.Transpose.ROTATE_90)


def orientation(image: Image.Image) -> Image.Transpose | None:
    """The turn that makes the picture upright, read from its EXIF orientation tag."""
    try:
        value = image.getexif().get(ExifTags.Base.Orientation, 1)
    except Exception:  # a malformed EXIF block must not cost the picture
        return None
    return _ORIENTATIONS.get(value) if isinstance(value, int) else None


def raw_turn(flip: int) -> Image.Transpose | None:
    """LibRaw's ``flip`` as the turn that makes the picture upright."""
    name = formats.RAW_FLIPS.get(flip)
    return Image.Transpose[name] if name else None


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow mode to 8-bit RGB, transparency flattened onto white."""
    mode = image.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        image = high_depth_to_l(image)
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


def high_depth_to_l(image: Image.Image) -> Image.Image:
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
