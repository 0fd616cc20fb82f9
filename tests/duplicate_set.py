"""Shared by tests/search/test_duplicates.py and bench/bench_duplicates.py: real pictures with planted copies.

Originals are non-overlapping tiles of real photos (scikit-image's), so no two originals
share content. Each of the first ``with_copies`` originals gets transformed copies: a JPEG
re-encode (quality 50-90), a resize to 50-80%, a crop of 5-10% per side, a small
brightness/contrast edit, a small rotation. The rest are distinct pictures with no copy.
Also planted synthetic near-duplicates for vector-only sets.

Tiers (issue 29): ``scenes`` cuts real photos into scenes; ``tier_set`` makes, per scene, an
original (a centred window), its edited copies (``COPY_KINDS``: what the copies tier must
find) and second shots of the scene (``SIMILAR_KINDS``: windows moved or zoomed, a tilt:
what it must leave to the similar tier). Each second shot is labelled by its geometry against
the original's window (``Geometry``, ``shot_class``): only a shot a clear margin away from every
crop of at most 5% a side is scored as similar; the band in between is reported, not scored.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np
from PIL import Image, ImageEnhance

TRANSFORMS = ("jpeg", "resize", "crop", "edit", "rotate")
COPY_KINDS = ("jpeg", "resize", "border", "brightness", "contrast", "colour", "exif", "combo", "combo-exif")
SIMILAR_KINDS = ("shift", "shift", "shift", "zoom-moved", "tilt", "zoom")  # three shifts a scene
# A copy is cut at most 5% a side (the contract); a second shot is scored as similar only a clear
# margin away from that: some side moved, cut or extended by >= 10% of the window, or turned >= 3
# degrees. Every side within 10% and a tilt under 3 degrees is the band between (a 5.5% cut cannot
# be told from a 5% one by any pixel check); a shot that is a <= 5% crop is a copy by geometry.
# Both are labelled (``shot_class``), reported, and scored in neither tier.
SIDE_MARGIN = 0.10
TILT_MARGIN = 3.0
COPY_CUT = 0.05
UNSCORED = ("band:", "crop:")  # label prefixes scored in neither tier


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


# -- tiers (issue 29) ---------------------------------------------------------------------


def scenes(
    photos: Iterable[Image.Image], longest: int = 800, min_std: float = 20.0, limit: int = 10**6
) -> list[Image.Image]:
    """Scenes of real photos: a large photo (shorter side >= 700) gives its 2 x 2 quarters, a
    small one itself; each shrunk to at most ``longest`` px; flat ones (sky) left out; at most
    ``limit`` (the photos after that are not loaded)."""
    out: list[Image.Image] = []
    for photo in photos:
        if len(out) >= limit:
            break
        rgb = photo.convert("RGB")
        w, h = rgb.size
        s = 2 if min(w, h) >= 700 else 1
        for gy in range(s):
            for gx in range(s):
                scene = rgb.crop((gx * w // s, gy * h // s, (gx + 1) * w // s, (gy + 1) * h // s))
                scene.thumbnail((longest, longest), Image.Resampling.LANCZOS)
                if float(np.asarray(scene.convert("L"), dtype=np.float32).std()) >= min_std:
                    out.append(scene)
    return out[:limit]


def window_box(
    size: tuple[int, int], dx: float = 0.0, dy: float = 0.0, zoom: float = 0.75
) -> tuple[int, int, int, int]:
    """The box of a ``zoom`` window of a picture of ``size``, centred, moved by (dx, dy) of its
    own size (kept inside)."""
    w, h = size
    ww, wh = round(w * zoom), round(h * zoom)
    x0 = min(max(0, (w - ww) // 2 + round(dx * ww)), w - ww)
    y0 = min(max(0, (h - wh) // 2 + round(dy * wh)), h - wh)
    return x0, y0, x0 + ww, y0 + wh


def window(scene: Image.Image, dx: float = 0.0, dy: float = 0.0, zoom: float = 0.75) -> Image.Image:
    """A ``zoom`` window of ``scene``, centred, moved by (dx, dy) of its own size (kept inside)."""
    return scene.crop(window_box(scene.size, dx, dy, zoom))


@dataclass(frozen=True)
class Geometry:
    """A second shot against the original's window: each side's move (left, top, right, bottom)
    as a share of the window's width or height, > 0 cut inside, < 0 extended past it (the
    larger of a side's two corners), and the tilt in degrees."""

    sides: tuple[float, float, float, float]
    tilt: float = 0.0


def geometry(size: tuple[int, int], box: tuple[int, int, int, int], tilt: float = 0.0) -> Geometry:
    """The geometry of the shot ``box`` (of the scene turned ``tilt`` degrees about its centre
    as ``Image.rotate`` does) against the original's window of a scene of ``size``."""
    ox0, oy0, ox1, oy1 = window_box(size)
    cx, cy = size[0] / 2, size[1] / 2
    c, s = math.cos(math.radians(tilt)), math.sin(math.radians(tilt))

    def scene_point(x: float, y: float) -> tuple[float, float]:  # the turned picture's (x, y) in the scene
        return cx + (x - cx) * c - (y - cy) * s, cy + (x - cx) * s + (y - cy) * c

    x0, y0, x1, y1 = box
    tl, tr, bl, br = (scene_point(x, y) for x, y in ((x0, y0), (x1, y0), (x0, y1), (x1, y1)))
    ow, oh = ox1 - ox0, oy1 - oy0

    def larger(a: float, b: float) -> float:
        return a if abs(a) >= abs(b) else b

    sides = (
        larger(tl[0] - ox0, bl[0] - ox0) / ow,
        larger(tl[1] - oy0, tr[1] - oy0) / oh,
        larger(ox1 - tr[0], ox1 - br[0]) / ow,
        larger(oy1 - bl[1], oy1 - br[1]) / oh,
    )
    return Geometry(sides, abs(tilt))


def shot_class(g: Geometry) -> str:
    """ "similar" (some side moved >= ``SIDE_MARGIN`` or a tilt >= ``TILT_MARGIN``), "crop" (no
    tilt, every side cut 0 to ``COPY_CUT``: a copy by geometry) or "band" (the rest)."""
    if g.tilt >= TILT_MARGIN or max(abs(v) for v in g.sides) >= SIDE_MARGIN:
        return "similar"
    if g.tilt == 0.0 and all(-1e-9 <= v <= COPY_CUT + 1e-9 for v in g.sides):
        return "crop"
    return "band"


def scored(made: str) -> bool:
    """Whether a picture's pairs count in the precision/recall (not a band or crop shot)."""
    return not made.startswith(UNSCORED)


def exif_turned(picture: Image.Image, quality: int = 90) -> bytes:
    """A JPEG of ``picture`` stored on its side with the EXIF Orientation that turns it back."""
    tag, turn = (6, Image.Transpose.ROTATE_90) if picture.width % 2 else (8, Image.Transpose.ROTATE_270)
    exif = Image.Exif()
    exif[0x0112] = tag
    buffer = io.BytesIO()
    picture.transpose(turn).save(buffer, format="JPEG", quality=quality, exif=exif)
    return buffer.getvalue()


def edited(
    original: Image.Image, kind: str, rng: np.random.Generator, read: Callable[[bytes], Image.Image]
) -> Image.Image:
    """One edited copy of ``original`` (``COPY_KINDS``); ``read`` decodes a file's bytes as the
    daemon does (EXIF orientation applied)."""
    w, h = original.size
    if kind == "jpeg":
        return _jpeg(original, int(rng.integers(60, 81)))
    if kind == "resize":
        f = float(rng.choice([1 / 2, 2 / 3, 3 / 4]))
        return original.resize((round(w * f), round(h * f)), Image.Resampling.BICUBIC)
    if kind == "border":  # 2-5% off each side, each side its own
        c = rng.uniform(0.02, 0.05, size=4)
        return original.crop((round(w * c[0]), round(h * c[1]), w - round(w * c[2]), h - round(h * c[3])))
    if kind == "brightness":
        return ImageEnhance.Brightness(original).enhance(float(rng.choice([0.85, 1.15])))
    if kind == "contrast":
        return ImageEnhance.Contrast(original).enhance(float(rng.choice([0.8, 1.2])))
    if kind == "colour":
        return ImageEnhance.Color(original).enhance(float(rng.choice([0.7, 1.3])))
    if kind == "exif":
        return read(exif_turned(original))
    if kind in ("combo", "combo-exif"):  # a border cut, resized, toned, re-encoded
        side = float(rng.uniform(0.02, 0.04))
        cut = original.crop((round(w * side), round(h * side), w - round(w * side), h - round(h * side)))
        f = float(rng.choice([1 / 2, 2 / 3, 3 / 4]))
        small = cut.resize((round(cut.width * f), round(cut.height * f)), Image.Resampling.BICUBIC)
        toned = ImageEnhance.Contrast(ImageEnhance.Brightness(small).enhance(float(rng.uniform(0.9, 1.1))))
        out = toned.enhance(float(rng.uniform(0.85, 1.15)))
        return read(exif_turned(out, 75)) if kind == "combo-exif" else _jpeg(out, int(rng.integers(65, 81)))
    raise ValueError(kind)


def second_shot(scene: Image.Image, kind: str, rng: np.random.Generator) -> tuple[Image.Image, Geometry]:
    """Another shot of the scene the original (``window(scene)``) shows (``SIMILAR_KINDS``), and
    its geometry: moved 10-25% along one axis (and up to 3% along the other); zoomed in 5-15% and
    moved 3-6%; tilted 2-5 degrees and moved 3-6%; zoomed in 10-15% on the centre."""
    if kind == "shift":
        d = float(rng.uniform(0.10, 0.25)) * float(rng.choice([-1, 1]))
        e = float(rng.uniform(-0.03, 0.03))
        box = window_box(scene.size, d, e) if rng.random() < 0.5 else window_box(scene.size, e, d)
        return scene.crop(box), geometry(scene.size, box)
    if kind == "zoom":  # centred, 10-15%
        box = window_box(scene.size, 0.0, 0.0, 0.75 * (1 - float(rng.uniform(0.10, 0.15))))
        return scene.crop(box), geometry(scene.size, box)
    dx, dy = _drift(rng)
    if kind == "zoom-moved":  # zoomed in 5-15%, the frame moved 3-6% (a hand-held second shot)
        box = window_box(scene.size, dx, dy, 0.75 * (1 - float(rng.uniform(0.05, 0.15))))
        return scene.crop(box), geometry(scene.size, box)
    if kind == "tilt":  # turned 2-5 degrees, the frame moved 3-6%
        angle = float(rng.uniform(2, 5)) * float(rng.choice([-1, 1]))
        turned = scene.rotate(angle, resample=Image.Resampling.BICUBIC)
        box = window_box(turned.size, dx, dy, 0.68)
        return turned.crop(box), geometry(scene.size, box, angle)
    raise ValueError(kind)


def _drift(rng: np.random.Generator) -> tuple[float, float]:
    """A move of 3-6% of the frame in a random direction."""
    angle, size = float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0.03, 0.06))
    return size * float(np.cos(angle)), size * float(np.sin(angle))


def tier_set(
    scene_list: Sequence[Image.Image], seed: int, read: Callable[[bytes], Image.Image]
) -> tuple[list[Image.Image], list[int], list[str]]:
    """Pictures, the scene of each, and what each is ("original", a copy kind, or a second shot's
    kind after its ``shot_class``: "similar:", "band:" or "crop:"). Every edit drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    pictures: list[Image.Image] = []
    scene_of: list[int] = []
    made: list[str] = []
    for n, scene in enumerate(scene_list):
        original = window(scene)
        shots = [(k, edited(original, k, rng, read)) for k in COPY_KINDS]
        for k in SIMILAR_KINDS:
            shot, g = second_shot(scene, k, rng)
            shots.append((f"{shot_class(g)}:{k}", shot))
        for kind, picture in [("original", original), *shots]:
            pictures.append(picture)
            scene_of.append(n)
            made.append(kind)
    return pictures, scene_of, made


def tier_truth(scene_of: Sequence[int], made: Sequence[str]) -> tuple[set[tuple[int, int]], set[tuple[int, int]]]:
    """The true copy pairs (an original and its copies, and the copies among themselves) and
    the true similar pairs (the rest of one scene's pairs), positions a < b; pairs with a band
    or crop shot (not ``scored``) are in neither."""
    copies: set[tuple[int, int]] = set()
    similar: set[tuple[int, int]] = set()
    members: dict[int, list[int]] = {}
    for position, scene in enumerate(scene_of):
        members.setdefault(scene, []).append(position)
    for group in members.values():
        for a, b in combinations(sorted(group), 2):
            if not scored(made[a]) or not scored(made[b]):
                continue
            both_copies = not made[a].startswith("similar:") and not made[b].startswith("similar:")
            (copies if both_copies else similar).add((a, b))
    return copies, similar
