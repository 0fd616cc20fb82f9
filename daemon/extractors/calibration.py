"""Real photos shipped with the package: int8 calibration and the engines' check at load.

The ten JPEGs in ``calibration_photos/`` come from scikit-image's sample data, each public domain or
CC0 (``calibration_photos/LICENSES.md`` gives source, author and licence), scaled to 320 px on the
longest side. Real photos rather than noise: int8 ranges set on random pixels do not match
what the models see, and a check at load wants answers that mean something.
"""

from __future__ import annotations

import functools
import hashlib
import math
from pathlib import Path

import numpy as np
from PIL import Image

PHOTOS: Path = Path(__file__).resolve().parent / "calibration_photos"

# Share of each side a crop keeps: big enough to hold an object, small enough to differ.
LOW, HIGH = 0.4, 0.9


def photos() -> list[Image.Image]:
    """The shipped photos as RGB, sorted by file name; a missing or empty folder is a broken install."""
    paths = sorted(PHOTOS.glob("*.jpg")) if PHOTOS.is_dir() else []
    if not paths:
        raise RuntimeError(f"no calibration photos in {PHOTOS}: the imgsearchd install is broken, reinstall it")
    loaded = []
    for path in paths:
        with Image.open(path) as image:
            loaded.append(image.convert("RGB"))
    return loaded


def crop_box(width: int, height: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A random (left, top, right, bottom) box whose sides are 40-90% of the picture's."""
    sides = []
    for full in (width, height):
        low, high = max(1, math.ceil(LOW * full)), max(1, math.floor(HIGH * full))
        size = int(rng.integers(low, max(low, high) + 1))
        start = int(rng.integers(0, full - size + 1))
        sides.append((start, start + size))
    (left, right), (top, bottom) = sides
    return left, top, right, bottom


def crops(count: int, seed: int) -> list[Image.Image]:
    """``count`` deterministic crops, round-robin over the photos, each at its own size."""
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    rng = np.random.default_rng(seed)
    pictures = photos()
    out = []
    for index in range(count):
        picture = pictures[index % len(pictures)]
        out.append(picture.crop(crop_box(picture.width, picture.height, rng)))
    return out


@functools.cache  # package data: read once a process (check_id and every int8 key ask for it)
def fingerprint() -> str:
    """A digest of the photos' names and bytes: part of a cached int8 model's key (openvino_ir.py)."""
    digest = hashlib.blake2b(digest_size=8)
    for path in sorted(PHOTOS.glob("*.jpg")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()
