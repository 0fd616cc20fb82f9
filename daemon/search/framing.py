"""The framing check: is one picture the other, up to a small crop, scale and tone?

Cosine similarity cannot tell an edited copy (re-encoded, resized, cropped a little, toned)
from a second shot of the scene (bench/bench_duplicates.py, BENCHMARKS.md "Duplicate tiers
(issue 29)"): a copy's median cosine is 0.90-1.00 by the edit, a second shot's 0.93-0.96.
The pixels can tell them apart. A ``Print`` is the picture in grey,
squashed to ``SIDE`` x ``SIDE``; ``framing_score`` is the best normalised correlation of one
print against crops of the other (up to ``MAX_CUT`` of each side cut, each side on its own),
both resized to ``GRID`` x ``GRID``, the larger of the two directions; the correlation is
that of the grey levels and of their gradients, averaged. A copy keeps every pixel of the
part it shows: near 1 (brightness and contrast do not change a correlation).
A second shot shows something the other lacks at an edge, which no crop of the other explains.

Fast: each crop's resize is a product of two small filter matrices (Pillow's bilinear
filter, widened when shrinking), so all crops of one side come from two matrix products;
a coarse grid of cuts first, then a finer one around its best.
"""

from __future__ import annotations

import itertools
from functools import lru_cache

import numpy as np
from PIL import Image
from threadpoolctl import threadpool_limits

Print = np.ndarray  # uint8 grey, SIDE x SIDE: the picture squashed (a print from a thumbnail matches one from the file)

SIDE = 64  # the print's side
GRID = 32  # the side both pictures are compared at
MAX_CUT = 0.05  # the most cut off each side (a fraction): copies cut <= 5% a side; second shots move >= 10%
COARSE = 0.02  # the coarse grid's step (a fraction of the side); then FINE around the best
FINE = 0.01
# The score averages the correlation of the grey levels (robust to clipped highlights: the
# worst +15% brightness copy scored 0.96 on grey, 0.68 on gradients alone) and of their
# gradients (sharp against a second shot: a 12% shift's median 0.66 on grey, 0.37 averaged), measured
# on 117 real scenes (BENCHMARKS.md, "Duplicate tiers (issue 29)": the variants compared).
WEIGHTS = (0.5, 0.5)
# Then, at the best crop, the worst of BLOCKS x BLOCKS blocks caps the score: a second shot
# differs most at the edge where it shows something new (117 scenes: a 12% shift's p95 fell
# from 0.91 to 0.89, the copies' p5 stayed at 0.97; 4 x 4 blocks cut some copies to 0.81).
BLOCKS = 2
FLAT_STD = 2.0  # grey levels: a print flatter than this has no structure to compare
# Two flat prints are copies when their mean colours (0-255 a channel) are no further apart
# than this in any channel: a white page and its crops, re-saves and JPEG copies (within 1
# level here), never white and a light grey (10 levels apart).
FLAT_COLOUR = 3.0
FRAMING_COPY = 0.97  # the copy cut: measured, bench/bench_duplicates.py (BENCHMARKS.md, issue 29)


def print_of(image: Image.Image) -> Print:
    """The print of a decoded (EXIF-transposed) picture or its thumbnail: SIDE x SIDE grey."""
    picture = image
    if max(picture.size) > 4 * SIDE:  # a cheap first shrink for a full-size decode
        picture = picture.copy()
        picture.thumbnail((4 * SIDE, 4 * SIDE), Image.Resampling.BOX)
    grey = picture.convert("L").resize((SIDE, SIDE), Image.Resampling.BOX)
    return np.asarray(grey, dtype=np.uint8).copy()


Colour = tuple[float, float, float]  # a picture's mean red, green and blue


def colour_of(image: Image.Image) -> Colour:
    """The mean colour of a (thumbnail-sized) picture."""
    means = np.asarray(image.convert("RGB"), dtype=np.float32).reshape(-1, 3).mean(axis=0)
    return (float(means[0]), float(means[1]), float(means[2]))


def flat_copy(a: tuple[Print, Colour], b: tuple[Print, Colour]) -> bool:
    """True when both prints are flat and of one colour (within FLAT_COLOUR): nothing but their
    colour to compare, and that is the same."""
    if not (flat(a[0]) and flat(b[0])):
        return False
    return max(abs(x - y) for x, y in zip(a[1], b[1], strict=True)) <= FLAT_COLOUR


def flat(p: Print) -> bool:
    """True when the print is (nearly) one grey: its correlation with anything is undefined."""
    return float(np.asarray(p, dtype=np.float32).std()) < FLAT_STD


def framing_score(a: Print, b: Print) -> float:
    """How well one print is a crop of the other, in [-1, 1]: the larger of both directions.

    A flat print (``flat``) has no framing to compare: 0.0, never NaN (the pair is then not a
    copy by its pixels)."""
    ga, gb = _grey(a), _grey(b)
    if flat(a) or flat(b):
        return 0.0
    return max(_contained(ga, gb), _contained(gb, ga))


def use_one_blas_thread() -> None:
    """Put numpy's BLAS on one thread for the whole process (the daemon calls it at start).

    The framing check's products are 32-64 wide: BLAS threads only wait for each other, and
    on a busy machine they spin. A check took 1.2 ms on one thread against 92 ms on two while
    two other processes kept both cores busy (the daemon embeds on every core while it
    indexes), and 2.2 against 3.2 ms idle (2-core Zen 4). The other numpy product of the
    daemon, the exact index's (below 10,000 vectors), costs 3.2 instead of 1.75 ms at 10,000
    x 1280 on an idle machine. (A limit set and restored around each check did not hold: in
    the test suite, checks on other threads still read two threads.)
    """
    threadpool_limits(limits=1, user_api="blas")


def _grey(p: Print) -> np.ndarray:
    if p.shape != (SIDE, SIDE):
        raise ValueError(f"a print is {SIDE}x{SIDE}, got {p.shape}")
    return np.asarray(p, dtype=np.float32)


def _contained(big: np.ndarray, small: np.ndarray) -> float:
    """The best correlation of a crop of ``big`` with the whole of ``small``."""
    whole = _full() @ small @ _full().T
    target = _Target.of(whole)
    if target is None:
        return 0.0
    coarse = tuple(round(float(c), 4) for c in np.arange(0.0, MAX_CUT + 1e-9, COARSE))
    best, cut = _best(big, target, (coarse, coarse, coarse, coarse))
    around = [tuple(round(c, 4) for c in (x - FINE, x, x + FINE) if -1e-9 <= c <= MAX_CUT + 1e-9) for x in cut]
    finer, fine_cut = _best(big, target, (around[0], around[1], around[2], around[3]))
    score, cut = (best, cut) if best >= finer else (finer, fine_cut)
    return min(score, _worst_block(big, whole, cut)) if BLOCKS else score


def _worst_block(big: np.ndarray, whole: np.ndarray, cut: tuple[float, float, float, float]) -> float:
    """At the best crop: 1 - half the mean squared difference of the standardised grey levels
    in the worst of BLOCKS x BLOCKS blocks (the global correlation where the difference is even)."""
    le, t, r, b = cut
    crop = _filter(t, b) @ big @ _filter(le, r).T
    x = (crop - crop.mean()) / max(float(crop.std()), 1e-6)
    y = (whole - whole.mean()) / max(float(whole.std()), 1e-6)
    d = ((x - y) ** 2).reshape(BLOCKS, GRID // BLOCKS, BLOCKS, GRID // BLOCKS).mean(axis=(1, 3))
    return float(max(-1.0, 1.0 - d.max() / 2.0))


class _Target:
    """The whole picture compared against: its centred grey levels and gradients, unit length."""

    def __init__(self, grey: np.ndarray, dx: np.ndarray, dy: np.ndarray):
        self.grey, self.dx, self.dy = grey, dx, dy

    @classmethod
    def of(cls, whole: np.ndarray) -> _Target | None:
        grey = whole - whole.mean()
        dx, dy = np.diff(whole, axis=1), np.diff(whole, axis=0)
        norm, gradient = float(np.linalg.norm(grey)), float(np.sqrt((dx * dx).sum() + (dy * dy).sum()))
        if norm < 1e-6 or gradient < 1e-6:
            return None
        return cls(grey / norm, dx / gradient, dy / gradient)


Cuts = tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...], tuple[float, ...]]


def _best(big: np.ndarray, target: _Target, cuts: Cuts) -> tuple[float, tuple[float, float, float, float]]:
    """The best score over every crop with cuts (left, top, right, bottom) from ``cuts``."""
    lefts, tops, rights, bottoms = cuts
    rows = list(itertools.product(tops, bottoms))
    cols = list(itertools.product(lefts, rights))
    down = np.stack([_filter(t, b) for t, b in rows])  # (R, GRID, SIDE)
    across = np.concatenate([_filter(le, r) for le, r in cols])  # (C * GRID, SIDE)
    crops = (down.reshape(-1, SIDE) @ big) @ across.T  # (R * GRID, C * GRID): two plain matrix products
    crops = crops.reshape(len(rows), GRID, len(cols), GRID).transpose(0, 2, 1, 3)  # (R, C, GRID, GRID)
    grey = _correlation(crops, target.grey, crops.sum(axis=(2, 3)) / (GRID * GRID))
    dx, dy = np.diff(crops, axis=3), np.diff(crops, axis=2)
    dots = np.einsum("rcij,ij->rc", dx, target.dx) + np.einsum("rcij,ij->rc", dy, target.dy)
    lengths = np.sqrt(np.einsum("rcij,rcij->rc", dx, dx) + np.einsum("rcij,rcij->rc", dy, dy))
    with np.errstate(divide="ignore", invalid="ignore"):
        gradient = np.where(lengths > 1e-6, dots / lengths, -1.0)
    total = (WEIGHTS[0] * grey + WEIGHTS[1] * gradient).reshape(-1)
    k = int(np.argmax(total))
    (t, b), (le, r) = rows[k // len(cols)], cols[k % len(cols)]
    return float(min(1.0, max(-1.0, total[k]))), (le, t, r, b)


def _correlation(crops: np.ndarray, target: np.ndarray, means: np.ndarray) -> np.ndarray:
    """Each crop's normalised correlation with ``target`` (centred, unit length)."""
    dots = np.einsum("rcij,ij->rc", crops, target)  # the target has mean 0: no centring needed here
    spread = np.maximum(np.einsum("rcij,rcij->rc", crops, crops) - means * means * (GRID * GRID), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(spread > 1e-6, dots / np.sqrt(spread), -1.0)


@lru_cache(maxsize=512)
def _filter(lo: float, hi: float) -> np.ndarray:
    """The GRID x SIDE matrix resizing [lo * SIDE, SIDE - hi * SIDE) to GRID samples.

    Pillow's bilinear filter: a triangle as wide as the scale when shrinking."""
    start, stop = lo * SIDE, SIDE - hi * SIDE
    scale = (stop - start) / GRID
    support = max(scale, 1.0)
    centres = start + (np.arange(GRID) + 0.5) * scale
    x = np.arange(SIDE) + 0.5
    weights = np.maximum(0.0, 1.0 - np.abs(x[None, :] - centres[:, None]) / support)
    weights /= weights.sum(axis=1, keepdims=True)
    out = weights.astype(np.float32)
    out.setflags(write=False)
    return out


def _full() -> np.ndarray:
    return _filter(0.0, 0.0)
