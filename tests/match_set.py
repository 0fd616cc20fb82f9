"""Shared by bench/bench_match.py and tests/search/test_match_levels.py: a library to calibrate match levels on.

Real photos cut into scenes (``duplicate_set.scenes``). The library holds, per scene, its
original (the centred window) and its second shots (``duplicate_set.SIMILAR_KINDS``: moved,
zoomed, tilted): a scene is a *category* (the pictures of one place and subject, the closest
this machine has to photos grouped by subject), and a scene's pictures are ``similar`` to each
other. The edited copies of each original (``duplicate_set.COPY_KINDS``) are the queries that
must find their original first as ``same``. Unrelated pictures of other kinds (``UNRELATED_KINDS``:
drawings, text, screenshots, charts, flat colour, noise), made here with Pillow and numpy,
are in the library (each kind its own category) and, drawn from other seeds, are queries that
must find no ``same``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from duplicate_set import COPY_KINDS, SIMILAR_KINDS, edited, second_shot, shot_class, window

UNRELATED_KINDS = ("drawing", "text", "screenshot", "chart", "flat", "noise")
_TEXT = (
    "the quick brown fox jumps over a lazy dog while invoices totals march april report draft meeting notes "
    "budget server error line file open save cancel settings user name address"
)
WORDS = tuple(_TEXT.split())


@dataclass
class MatchSet:
    """The library (pictures, category of each, how each was made) and the queries."""

    library: list[Image.Image] = field(default_factory=list)
    category: list[str] = field(default_factory=list)  # "scene:N" or "kind:KIND"
    made: list[str] = field(default_factory=list)  # "original", "similar:shift", "band:zoom", "unrelated:noise"
    photo: list[int] = field(default_factory=list)  # the source photo of a scene picture, -1 for the rest
    copies: list[Image.Image] = field(default_factory=list)  # queries: edited copies
    copy_of: list[int] = field(default_factory=list)  # the library position of each copy's original
    copy_kind: list[str] = field(default_factory=list)
    strangers: list[Image.Image] = field(default_factory=list)  # queries: unrelated pictures, other seeds
    stranger_kind: list[str] = field(default_factory=list)


def _size(rng: np.random.Generator) -> tuple[int, int]:
    return int(rng.integers(240, 481)), int(rng.integers(200, 401))


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    r, g, b = (int(v) for v in rng.integers(0, 256, size=3))
    return r, g, b


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def drawing(rng: np.random.Generator) -> Image.Image:
    """Shapes and strokes on paper: a child's drawing or clip art."""
    w, h = _size(rng)
    picture = Image.new("RGB", (w, h), (250, 250, 245) if rng.random() < 0.7 else _colour(rng))
    pen = ImageDraw.Draw(picture)
    for _ in range(int(rng.integers(4, 14))):
        x0, x1 = sorted(int(v) for v in rng.integers(0, w, size=2))
        y0, y1 = sorted(int(v) for v in rng.integers(0, h, size=2))
        shape = int(rng.integers(0, 4))
        if shape == 0:
            pen.ellipse(
                (x0, y0, x1, y1), fill=_colour(rng) if rng.random() < 0.5 else None, outline=_colour(rng), width=3
            )
        elif shape == 1:
            pen.rectangle(
                (x0, y0, x1, y1), fill=_colour(rng) if rng.random() < 0.5 else None, outline=_colour(rng), width=3
            )
        elif shape == 2:
            points = [(int(rng.integers(0, w)), int(rng.integers(0, h))) for _ in range(int(rng.integers(3, 7)))]
            pen.polygon(points, fill=_colour(rng), outline=(0, 0, 0))
        else:
            points = [(int(rng.integers(0, w)), int(rng.integers(0, h))) for _ in range(int(rng.integers(2, 8)))]
            pen.line(points, fill=_colour(rng), width=int(rng.integers(2, 8)))
    return picture


def text_page(rng: np.random.Generator) -> Image.Image:
    """Lines of words on a page: a scanned letter or a photo of a document."""
    w, h = _size(rng)
    picture = Image.new("RGB", (w, h), (255, 255, 255) if rng.random() < 0.8 else (255, 250, 230))
    pen = ImageDraw.Draw(picture)
    size = int(rng.integers(12, 22))
    font = _font(size)
    for y in range(10, h - size, int(size * 1.5)):
        line = " ".join(str(rng.choice(WORDS)) for _ in range(int(rng.integers(3, 12))))
        pen.text((10, y), line, fill=(20, 20, 20), font=font)
    return picture


def screenshot(rng: np.random.Generator) -> Image.Image:
    """A window: a title bar, a side bar, buttons and lines of text."""
    w, h = _size(rng)
    picture = Image.new("RGB", (w, h), (236, 236, 236))
    pen = ImageDraw.Draw(picture)
    pen.rectangle((0, 0, w, 24), fill=_colour(rng))
    side = int(rng.integers(50, 110))
    pen.rectangle((0, 24, side, h), fill=(210, 214, 220))
    font = _font(12)
    for y in range(34, h - 20, 22):
        pen.text((6, y), str(rng.choice(WORDS)), fill=(40, 40, 40), font=font)
        pen.text((side + 10, y), " ".join(str(rng.choice(WORDS)) for _ in range(4)), fill=(30, 30, 30), font=font)
    for _ in range(int(rng.integers(1, 4))):
        x, y = int(rng.integers(side + 10, max(side + 11, w - 80))), int(rng.integers(30, max(31, h - 30)))
        pen.rounded_rectangle((x, y, x + 70, y + 22), 4, fill=_colour(rng), outline=(90, 90, 90))
    return picture


def chart(rng: np.random.Generator) -> Image.Image:
    """A bar or line chart with axes."""
    w, h = _size(rng)
    picture = Image.new("RGB", (w, h), (255, 255, 255))
    pen = ImageDraw.Draw(picture)
    left, bottom = 30, h - 25
    pen.line((left, 10, left, bottom, w - 10, bottom), fill=(0, 0, 0), width=2)
    n = int(rng.integers(4, 12))
    values = rng.uniform(0.1, 1.0, size=n)
    step = (w - left - 20) / n
    if rng.random() < 0.5:
        colour = _colour(rng)
        for i, v in enumerate(values):
            x = left + 5 + i * step
            pen.rectangle((x, bottom - v * (bottom - 20), x + step * 0.7, bottom), fill=colour)
    else:
        for _ in range(int(rng.integers(1, 4))):
            ys = rng.uniform(0.1, 1.0, size=n)
            points = [(left + 5 + i * step, bottom - y * (bottom - 20)) for i, y in enumerate(ys)]
            pen.line(points, fill=_colour(rng), width=3)
    for y in range(bottom, 10, -40):
        pen.line((left - 4, y, left, y), fill=(0, 0, 0))
    return picture


def flat(rng: np.random.Generator) -> Image.Image:
    """One colour, or a gentle gradient between two."""
    w, h = _size(rng)
    a, b = np.array(_colour(rng), dtype=np.float32), np.array(_colour(rng), dtype=np.float32)
    if rng.random() < 0.5:
        b = a
    t = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :, None]
    pixels = np.broadcast_to(a * (1 - t) + b * t, (h, w, 3))
    return Image.fromarray(pixels.astype(np.uint8))


def noise(rng: np.random.Generator) -> Image.Image:
    """Random pixels: white noise, or blotches (noise blown up)."""
    w, h = _size(rng)
    if rng.random() < 0.5:
        return Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8))
    small = Image.fromarray(rng.integers(0, 256, size=(h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8))
    return small.resize((w, h), Image.Resampling.BICUBIC)


MAKERS: dict[str, Callable[[np.random.Generator], Image.Image]] = {
    "drawing": drawing,
    "text": text_page,
    "screenshot": screenshot,
    "chart": chart,
    "flat": flat,
    "noise": noise,
}


def unrelated(kind: str, rng: np.random.Generator) -> Image.Image:
    """One picture of ``kind`` (``UNRELATED_KINDS``)."""
    return MAKERS[kind](rng)


def match_set(
    scene_list: Sequence[Image.Image],
    photo_of: Sequence[int],
    seed: int,
    read: Callable[[bytes], Image.Image],
    per_kind: int = 20,
    copy_kinds: Sequence[str] = COPY_KINDS,
) -> MatchSet:
    """The library and the queries from ``scene_list`` (each scene's source photo in ``photo_of``),
    every edit and unrelated picture drawn from ``seed``; ``per_kind`` unrelated pictures of each
    kind in the library and as many again as queries."""
    rng = np.random.default_rng(seed)
    out = MatchSet()
    for n, scene in enumerate(scene_list):
        original = window(scene)
        at = len(out.library)
        out.library.append(original)
        out.category.append(f"scene:{n}")
        out.made.append("original")
        out.photo.append(photo_of[n])
        for kind in SIMILAR_KINDS:
            shot, g = second_shot(scene, kind, rng)
            out.library.append(shot)
            out.category.append(f"scene:{n}")
            out.made.append(f"{shot_class(g)}:{kind}")
            out.photo.append(photo_of[n])
        for kind in copy_kinds:
            out.copies.append(edited(original, kind, rng, read))
            out.copy_of.append(at)
            out.copy_kind.append(kind)
    for kind in UNRELATED_KINDS:
        for _ in range(per_kind):
            out.library.append(unrelated(kind, rng))
            out.category.append(f"kind:{kind}")
            out.made.append(f"unrelated:{kind}")
            out.photo.append(-1)
        for _ in range(per_kind):
            out.strangers.append(unrelated(kind, rng))
            out.stranger_kind.append(kind)
    return out
