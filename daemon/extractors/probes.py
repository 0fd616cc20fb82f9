"""Built-in pictures and texts a model is checked on at load: made here, the same on every run.

They are what the precision check embeds twice (fp32 and the faster precision) and
compares, and what the speed check times. They cover what photos have: smooth colour
fields, hard edges, fine texture and grain, flat regions, high and low contrast.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

SIDE = 256
SEED = 20261126

TEXTS = (
    "a photo of a cat",
    "a red car parked on a street",
    "a mountain lake at sunset",
    "a plate of food on a table",
    "people walking on a beach",
    "a scanned page of printed text",
)


def _smooth_field(rng: np.random.Generator, cells: int) -> np.ndarray:
    """Random colours on a coarse grid, upscaled smoothly: like out-of-focus backgrounds."""
    coarse = rng.integers(0, 256, size=(cells, cells, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((SIDE, SIDE), Image.Resampling.BICUBIC))


def images() -> list[Image.Image]:
    """Eight RGB pictures, 256x256."""
    rng = np.random.default_rng(SEED)
    y, x = np.mgrid[0:SIDE, 0:SIDE].astype(np.float32) / (SIDE - 1)
    pictures = []
    # A bare gradient gives a nearly featureless vector whose reduced-precision error is
    # large relative to it (cosine 0.977 in bf16 against >= 0.998 for real photos): grain
    # and a horizon make it a picture.
    gradient = np.stack([x * 255, y * 255, (1 - x) * 200 + 30], axis=-1) * np.where(y > 0.6, 0.55, 1.0)[..., None]
    pictures.append(gradient + rng.normal(0, 10, size=(SIDE, SIDE, 3)))
    radius = np.hypot(x - 0.4, y - 0.55)
    pictures.append(np.stack([255 * (radius < 0.3), 180 * np.clip(1 - radius, 0, 1), 60 + 120 * (radius > 0.45)], -1))
    checks = ((np.floor(x * 16) + np.floor(y * 16)) % 2) * 255
    pictures.append(np.stack([checks, checks * 0.8, 255 - checks], -1))
    pictures.append(_smooth_field(rng, 6).astype(np.float32))
    grainy = _smooth_field(rng, 12).astype(np.float32) + rng.normal(0, 18, size=(SIDE, SIDE, 3))
    pictures.append(grainy)
    stripes = 127.5 + 127.5 * np.sin((x * 0.8 + y * 0.6) * 40)
    pictures.append(np.stack([stripes, 255 - stripes, np.full_like(stripes, 90)], -1))
    pictures.append(128 + rng.normal(0, 40, size=(SIDE, SIDE, 3)))
    out = [Image.fromarray(np.clip(p, 0, 255).astype(np.uint8), "RGB") for p in pictures]
    blocks = Image.new("RGB", (SIDE, SIDE), (240, 235, 220))
    draw = ImageDraw.Draw(blocks)
    for _ in range(14):
        x0, y0 = (int(v) for v in rng.integers(0, SIDE - 40, size=2))
        w, h = (int(v) for v in rng.integers(20, 120, size=2))
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        if rng.random() < 0.5:
            draw.rectangle((x0, y0, x0 + w, y0 + h), fill=colour)
        else:
            draw.ellipse((x0, y0, x0 + w, y0 + h), fill=colour)
    out.append(blocks)
    return out
