"""framing: edited copies of real photos pass the copy cut, shifted second shots do not;
flat and tiny pictures give a number, never NaN."""

from __future__ import annotations

import ast
import io
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from imgsearchd.media.images import load_image
from imgsearchd.search import framing

PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "motorcycle_left", "immunohistochemistry")


def _jpeg(picture: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    return Image.open(buffer).convert("RGB")


def _cut(picture: Image.Image, left: float, top: float, right: float, bottom: float) -> Image.Image:
    w, h = picture.size
    return picture.crop((round(w * left), round(h * top), w - round(w * right), h - round(h * bottom)))


def _window(picture: Image.Image, dx: float, dy: float, zoom: float = 0.75) -> Image.Image:
    """A window of ``zoom`` of the picture, centred, moved by (dx, dy) of its own size."""
    w, h = picture.size
    ww, wh = round(w * zoom), round(h * zoom)
    x0 = (w - ww) // 2 + round(dx * ww)
    y0 = (h - wh) // 2 + round(dy * wh)
    assert 0 <= x0 <= w - ww and 0 <= y0 <= h - wh, "the window must stay inside the picture"
    return picture.crop((x0, y0, x0 + ww, y0 + wh))


COPIES = {
    "jpeg q60": lambda p: _jpeg(p, 60),
    "resize 1/2": lambda p: p.resize((p.width // 2, p.height // 2), Image.Resampling.BICUBIC),
    "resize 2/3": lambda p: p.resize((p.width * 2 // 3, p.height * 2 // 3), Image.Resampling.LANCZOS),
    "border 4%": lambda p: _cut(p, 0.04, 0.04, 0.04, 0.04),
    "cut 5% left, 2% top": lambda p: _cut(p, 0.05, 0.02, 0.0, 0.0),
    "brightness +15%": lambda p: ImageEnhance.Brightness(p).enhance(1.15),
    "brightness -15%": lambda p: ImageEnhance.Brightness(p).enhance(0.85),
    "contrast +20%": lambda p: ImageEnhance.Contrast(p).enhance(1.2),
    "contrast -20%": lambda p: ImageEnhance.Contrast(p).enhance(0.8),
    "saturation +30%": lambda p: ImageEnhance.Color(p).enhance(1.3),
    "grey": lambda p: p.convert("L"),
    "all at once": lambda p: _jpeg(
        ImageEnhance.Brightness(_cut(p, 0.03, 0.03, 0.03, 0.03).resize((p.width * 3 // 5, p.height * 3 // 5))).enhance(
            1.1
        ),
        70,
    ),
}


@pytest.fixture(scope="module")
def scenes(photos: dict[str, Image.Image]) -> dict[str, Image.Image]:
    """A centred window of each photo, so that a shifted window has real content to show."""
    return {name: _window(photos[name].convert("RGB"), 0, 0) for name in PHOTOS}


@pytest.mark.parametrize("kind", sorted(COPIES))
def test_each_kind_of_copy_passes(scenes: dict[str, Image.Image], kind: str) -> None:
    for name, scene in scenes.items():
        score = framing.framing_score(framing.print_of(scene), framing.print_of(COPIES[kind](scene)))
        assert score >= framing.FRAMING_COPY, (name, kind, score)


def test_a_copy_saved_turned_with_an_exif_orientation_passes(scenes: dict[str, Image.Image], tmp_path: Path) -> None:
    """The pixels stored on their side with Orientation 6 (or 8): the daemon's loader turns them back."""
    for name, scene in scenes.items():
        for tag, turn in ((6, Image.Transpose.ROTATE_90), (8, Image.Transpose.ROTATE_270)):
            path = tmp_path / f"{name}-{tag}.jpg"
            exif = Image.Exif()
            exif[0x0112] = tag
            scene.transpose(turn).save(path, quality=85, exif=exif)
            loaded = load_image(str(path))
            assert loaded.size == scene.size
            score = framing.framing_score(framing.print_of(scene), framing.print_of(loaded))
            assert score >= framing.FRAMING_COPY, (name, tag, score)
            # without the turn the same pixels are no copy: the check does not ignore orientation
            raw = framing.print_of(Image.open(path).convert("RGB"))
            assert framing.framing_score(framing.print_of(scene), raw) < framing.FRAMING_COPY


@pytest.mark.parametrize("shift", [(0.12, 0.0), (-0.15, 0.0), (0.0, 0.12), (0.0, -0.15), (0.1, 0.1)])
def test_a_second_shot_moved_10_percent_or_more_fails(
    photos: dict[str, Image.Image], shift: tuple[float, float]
) -> None:
    for name in PHOTOS:
        photo = photos[name].convert("RGB")
        first, second = _window(photo, 0, 0), _window(photo, *shift)
        score = framing.framing_score(framing.print_of(first), framing.print_of(second))
        assert score < framing.FRAMING_COPY, (name, shift, score)


def test_unrelated_photos_score_far_below_the_cut(scenes: dict[str, Image.Image]) -> None:
    prints = {name: framing.print_of(scene) for name, scene in scenes.items()}
    names = sorted(prints)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert framing.framing_score(prints[a], prints[b]) < 0.7, (a, b)


def test_the_score_is_symmetric_and_one_for_the_same_print(scenes: dict[str, Image.Image]) -> None:
    a = framing.print_of(scenes["astronaut"])
    b = framing.print_of(_cut(scenes["astronaut"], 0.05, 0.0, 0.0, 0.03))
    assert framing.framing_score(a, b) == framing.framing_score(b, a)
    assert framing.framing_score(a, a) == pytest.approx(1.0, abs=1e-4)


def test_a_print_from_the_thumbnail_matches_the_print_from_the_file(photos: dict[str, Image.Image]) -> None:
    """The checker takes a stored thumbnail when there is one: 256 px on its longer side, JPEG."""
    for name in PHOTOS:
        photo = photos[name].convert("RGB")
        thumbnail = photo.copy()
        thumbnail.thumbnail((256, 256))
        score = framing.framing_score(framing.print_of(photo), framing.print_of(_jpeg(thumbnail, 80)))
        assert score >= 0.99, (name, score)


def test_a_print_is_small_grey_and_fixed() -> None:
    for size in ((4000, 3000), (3, 500), (1, 1)):
        p = framing.print_of(Image.new("RGB", size, (10, 200, 30)))
        assert p.shape == (framing.SIDE, framing.SIDE) and p.dtype == np.uint8
    with pytest.raises(ValueError, match="print is"):
        framing.framing_score(np.zeros((10, 10), np.uint8), np.zeros((10, 10), np.uint8))


def test_flat_and_tiny_pictures_give_a_number_never_nan(scenes: dict[str, Image.Image]) -> None:
    """A flat picture has no correlation: 0.0 (not a copy by its pixels), with anything."""
    black = framing.print_of(Image.new("RGB", (640, 480)))
    grey = framing.print_of(Image.new("RGB", (320, 240), (128, 128, 128)))
    photo = framing.print_of(scenes["coffee"])
    assert framing.flat(black) and framing.flat(grey) and not framing.flat(photo)
    for a, b in ((black, black), (black, grey), (black, photo), (photo, grey)):
        assert framing.framing_score(a, b) == 0.0
    # a picture flat but for one edge row: defined, finite, in [-1, 1]
    edge = Image.new("L", (100, 100), 50)
    edge.paste(200, (0, 0, 100, 3))
    tiny = Image.new("RGB", (2, 2))
    tiny.putpixel((0, 0), (255, 255, 255))
    for picture in (edge, tiny, Image.new("RGB", (1, 300), (9, 9, 9))):
        score = framing.framing_score(framing.print_of(picture), photo)
        assert math.isfinite(score) and -1.0 <= score <= 1.0


def test_the_daemon_s_blas_runs_on_one_thread_on_every_thread() -> None:
    """``use_one_blas_thread`` (called by Service.load) holds process-wide: a thread started
    later reads one thread for every BLAS numpy and the rest loaded. In a process of its own,
    so the test process keeps its own settings."""
    code = (
        "import threading, numpy\n"
        "from threadpoolctl import threadpool_info\n"
        "from imgsearchd.search.framing import use_one_blas_thread\n"
        "blas = lambda: [l['num_threads'] for l in threadpool_info() if l['user_api'] == 'blas']\n"
        "print(blas())\n"
        "use_one_blas_thread()\n"
        "seen = []\n"
        "t = threading.Thread(target=lambda: seen.append(blas())); t.start(); t.join()\n"
        "print(seen[0])\n"
    )
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True, timeout=60)
    before, after = (ast.literal_eval(line) for line in out.stdout.splitlines())
    assert before and all(n == 2 for n in before)  # not one already: the call is what changes it
    assert after == [1] * len(before)
