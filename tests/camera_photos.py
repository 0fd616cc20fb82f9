"""Pictures like real cameras': real photos at a camera's size, with sensor-like grain.

A flat or smoothly upscaled synthetic picture compresses and decodes unrealistically fast
(issue 31); a real photo resized to a sensor's size with a little noise on every pixel gives a
file whose size and decode time look like a camera's, and every seed gives distinct bytes, so
content-hash reuse skips nothing. Formats live elsewhere (``heif_files.phone_heic``,
``jpeg_files.camera_jpeg``): this only makes the picture.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# Sizes cameras write (landscape; pass size[::-1] for portrait).
PHONE_12MP = (4032, 3024)  # every iPhone since the XS, most Android phones' default
CAMERA_24MP = (6000, 4000)  # Sony a7 III, Nikon Z6, Fujifilm X-T3 ...
SMALL_05MP = (816, 612)  # the 12-MP picture shrunk to 0.5 MP (issue 31's "against")

# Large real photos from Debian wallpaper packages (lomiri-wallpapers, mate-backgrounds), when
# installed: sharper detail at 12-24 MP than scikit-image's 512-pixel samples. Never required.
BACKGROUNDS = Path("/usr/share/backgrounds")


def sample_photos() -> list[np.ndarray]:
    """scikit-image's colour sample photos (shipped in the package: no download), RGB uint8."""
    import skimage.data as data

    photos = []
    for name in ("chelsea", "coffee", "astronaut", "rocket", "immunohistochemistry"):
        try:
            picture = getattr(data, name)()
        except Exception:  # a sample that needs a download: skip it
            continue
        if picture.ndim == 3 and picture.shape[2] == 3:
            photos.append(np.ascontiguousarray(picture))
    return photos


def background_photos(limit: int = 8, min_side: int = 1500) -> list[np.ndarray]:
    """Up to ``limit`` large JPEG photos from /usr/share/backgrounds (none where it is missing)."""
    if not BACKGROUNDS.is_dir():
        return []
    photos = []
    for path in sorted(BACKGROUNDS.rglob("*.jpg")):
        if "mate/desktop" in str(path):  # flat drawn wallpapers, not photos
            continue
        try:
            with Image.open(path) as image:
                if min(image.size) < min_side:
                    continue
                photos.append(np.asarray(image.convert("RGB")))
        except (OSError, ValueError):
            continue
        if len(photos) >= limit:
            break
    return photos


def grainy(photo: np.ndarray, size: tuple[int, int], seed: int, grain: float = 6.0) -> Image.Image:
    """``photo`` cropped to ``size``'s aspect, resized to ``size`` (width, height), with grain.

    The crop (80-100% of the photo, at a spot drawn from ``seed``) and the grain (Gaussian, sigma
    ``grain`` levels per channel, as a sensor's read noise at base ISO) make every seed's picture
    distinct, as ``bench/bench_indexing.make_image`` does.
    """
    rng = np.random.default_rng(seed)
    h, w = photo.shape[:2]
    width, height = size
    aspect = width / height
    crop_h = max(1, int(min(h, w / aspect) * rng.uniform(0.8, 1.0)))
    crop_w = max(1, min(w, round(crop_h * aspect)))
    y = int(rng.integers(0, h - crop_h + 1))
    x = int(rng.integers(0, w - crop_w + 1))
    picture = Image.fromarray(photo[y : y + crop_h, x : x + crop_w]).resize(size, Image.Resampling.BICUBIC)
    array = np.asarray(picture, dtype=np.float32)
    # float32 noise: 12-MP pictures make 36M samples, int16/float64 would double the memory.
    array += rng.normal(0.0, grain, size=array.shape).astype(np.float32)
    np.clip(array, 0, 255, out=array)
    return Image.fromarray(array.astype(np.uint8), "RGB")
