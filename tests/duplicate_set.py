"""Shared by tests/search/test_duplicates.py and bench/bench_duplicates.py: real pictures with planted copies.

Originals are non-overlapping tiles of real photos (scikit-image's), so no two originals
share content. Each of the first ``with_copies`` originals gets transformed copies: a JPEG
re-encode (quality 50-90), a resize to 50-80%, a crop of 5-10% per side, a small
brightness/contrast edit, a small rotation. The rest are distinct pictures with no copy.
Also planted synthetic near-duplicates for vector-only sets.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from itertools import combinations

import numpy as np
from PIL import Image, ImageEnhance

TRANSFORMS = ("jpeg", "resize", "crop", "edit", "rotate")


def tiles(photos: Iterable[Image.Image], grid: int = 2, min_side: int = 96, min_std: float = 20.0) -> list[Image.Image]:
    """Each photo cut into ``grid`` x ``grid`` non-overlapping tiles, RGB; flat tiles (a patch of
    sky or wall: grey-level spread under ``min_std``) are left out, as two of them are alike."""
    out = []
    for photo in photos:
        rgb = photo.convert("RGB")
        w, h = rgb.size
        tw, th = w // grid, h // grid
        if min(tw, th) < min_side:
            continue
        for gy in range(grid):
            for gx in range(grid):
                tile = rgb.crop((gx * tw, gy * th, (gx + 1) * tw, (gy + 1) * th))
                if float(np.asarray(tile.convert("L"), dtype=np.float32).std()) >= min_std:
                    out.append(tile)
    return out


def _jpeg(picture: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def transform(picture: Image.Image, kind: str, rng: np.random.Generator) -> Image.Image:
    """One copy of ``picture`` made the way ``kind`` says (seeded by ``rng``)."""
    w, h = picture.size
    if kind == "jpeg":
        return _jpeg(picture, int(rng.integers(50, 91)))
    if kind == "resize":
        f = float(rng.uniform(0.5, 0.8))
        return picture.resize((max(1, round(w * f)), max(1, round(h * f))), Image.Resampling.BICUBIC)
    if kind == "crop":
        fx, fy = rng.uniform(0.05, 0.10, size=2)
        left, top = int(w * fx * rng.uniform(0, 1)), int(h * fy * rng.uniform(0, 1))
        return picture.crop((left, top, left + round(w * (1 - fx)), top + round(h * (1 - fy))))
    if kind == "edit":
        bright = ImageEnhance.Brightness(picture).enhance(float(rng.uniform(0.88, 1.12)))
        return ImageEnhance.Contrast(bright).enhance(float(rng.uniform(0.88, 1.12)))
    if kind == "rotate":
        return picture.rotate(float(rng.uniform(-4, 4)), resample=Image.Resampling.BILINEAR, expand=False)
    raise ValueError(kind)


def copy_set(
    originals: list[Image.Image], with_copies: int, seed: int = 0
) -> tuple[list[Image.Image], list[int], list[str]]:
    """Pictures, the family of each (its original's number; -1-k for a distinct picture k), and
    how each was made. The first ``with_copies`` originals get one copy per transform."""
    rng = np.random.default_rng(seed)
    pictures: list[Image.Image] = []
    family: list[int] = []
    made: list[str] = []
    for n, original in enumerate(originals):
        pictures.append(original)
        family.append(n if n < with_copies else -1 - n)
        made.append("original")
        if n < with_copies:
            for kind in TRANSFORMS:
                pictures.append(transform(original, kind, rng))
                family.append(n)
                made.append(kind)
    return pictures, family, made


def true_pairs(family: list[int]) -> set[tuple[int, int]]:
    """Every pair of pictures (positions) of one planted family."""
    members: dict[int, list[int]] = {}
    for position, f in enumerate(family):
        if f >= 0:
            members.setdefault(f, []).append(position)
    return {pair for group in members.values() for pair in combinations(sorted(group), 2)}


def found_pairs(groups: Iterable[Iterable[int]]) -> set[tuple[int, int]]:
    """Every pair of members of each found group."""
    return {pair for group in groups for pair in combinations(sorted(group), 2)}


def precision_recall(found: set[tuple[int, int]], truth: set[tuple[int, int]]) -> tuple[float, float]:
    hit = len(found & truth)
    return (hit / len(found) if found else 1.0), (hit / len(truth) if truth else 1.0)


def planted(
    background: np.ndarray, pairs: int, noise: float = 0.25, seed: int = 1
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """``background`` plus a near copy of each of its first ``pairs`` rows (cosine about
    1/sqrt(1 + noise^2): 0.97 at 0.25), appended; returns the vectors and the planted pairs."""
    rng = np.random.default_rng(seed)
    n, dim = background.shape
    copies = background[:pairs] + noise * rng.standard_normal((pairs, dim)).astype(np.float32) / np.sqrt(dim)
    copies /= np.linalg.norm(copies, axis=1, keepdims=True)
    return np.concatenate([background, copies]), [(i, n + i) for i in range(pairs)]
