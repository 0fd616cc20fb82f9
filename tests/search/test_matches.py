"""matches.Grading on real files: ``same`` by content or by the framing check above the copy floor
(never below it, never for text), the query's hash read from its file only when needed, an
upload's print and a hash query's pixels, and whether a later result can still reach ``min_match``."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw

from imgsearchd.media.files import content_hash
from imgsearchd.media.images import decode
from imgsearchd.media.thumbnails import ThumbnailStore
from imgsearchd.search import matches
from imgsearchd.search.framing import FRAMING_COPY, flat_copy
from imgsearchd.search.framing_prints import FramingChecker
from imgsearchd.search.match_levels import Background
from imgsearchd.search.matches import Grading, Picture
from imgsearchd.store.catalog import Catalog

FLOOR = 0.7
QUERY = np.ones(8, dtype=np.float32) / np.sqrt(8)


@pytest.fixture()
def files(tmp_path: Path, photos: dict[str, Image.Image]) -> dict[str, tuple[str, str]]:
    """(path, content hash) of a photo, its edited copy (resized, q70) and another photo."""
    folder = tmp_path / "photos"
    folder.mkdir()
    coffee = photos["coffee"].convert("RGB")
    made = {
        "coffee": coffee,
        "copy": coffee.resize((coffee.width * 3 // 4, coffee.height * 3 // 4)),
        "rocket": photos["rocket"].convert("RGB"),
    }
    out = {}
    for name, picture in made.items():
        path = folder / f"{name}.jpg"
        picture.save(path, quality=70 if name == "copy" else 90)
        out[name] = (str(path), content_hash(path.read_bytes()))
    return out


@pytest.fixture()
def checker(tmp_path: Path):
    with Catalog(tmp_path / "catalog.sqlite3") as catalog:
        yield FramingChecker(catalog)


def grading(picture: Picture | None, checker: FramingChecker | None, text: bool = False, **kw) -> Grading:
    return Grading(QUERY, "efficientnet", Background(extractor="efficientnet"), picture, text, FLOOR, checker, **kw)


def test_same_by_content_or_by_pixels_above_the_floor(files, checker) -> None:
    coffee, copy, rocket = files["coffee"], files["copy"], files["rocket"]
    found = [(*coffee, 1.0), (*copy, 0.9), (*rocket, 0.95), (*copy, 0.5)]
    mask = grading(Picture(*coffee), checker).same(found)
    assert mask.tolist() == [True, True, False, False]  # the copy below the floor is not checked
    assert checker.computed == 2  # copy and rocket: the same content needs no check
    assert grading(Picture(*coffee), None).same(found).tolist() == [True, False, False, False]  # no checker
    assert not grading(Picture(*coffee), checker, text=True).same(found).any()
    assert not grading(None, checker).same(found).any()  # a combined query: no picture
    levels = grading(Picture(*coffee), checker).levels(found)
    assert levels[:2] == ["same", "same"] and levels[2] != "same"


def test_a_query_file_that_is_not_catalogued_is_read_for_its_hash(files, checker) -> None:
    coffee, copy = files["coffee"], files["copy"]
    picture = Picture(coffee[0])  # its hash unknown: read from the file when a result needs it
    assert grading(picture, checker).same([(*coffee, 1.0), (*copy, 0.8)]).tolist() == [True, True]
    assert grading(Picture(coffee[0]), checker).same([(*copy, 0.3)]).tolist() == [False]
    Path(coffee[0]).unlink()
    gone = grading(Picture(coffee[0]), checker).same([(*coffee, 1.0), (*copy, 0.8)])
    assert gone.tolist() == [False, False]  # no bytes, no hash: nothing is known to be the same


def test_an_upload_and_a_hash_query_find_their_copies(files, checker) -> None:
    coffee, copy, rocket = files["coffee"], files["copy"], files["rocket"]
    data = Path(coffee[0]).read_bytes()
    upload = Picture("", coffee[1], data)
    assert grading(upload, checker).same([(*copy, 0.9), (*rocket, 0.9)]).tolist() == [True, False]
    # a hash query: the pixels of a result with its content
    by_hash = Picture("", coffee[1])
    assert grading(by_hash, checker).same([(*coffee, 1.0), (*copy, 0.9)]).tolist() == [True, True]
    buffer = io.BytesIO()
    Image.open(io.BytesIO(data)).save(buffer, "PNG")  # the same picture, other bytes: kept print only
    other = Picture("", content_hash(buffer.getvalue()))
    assert grading(other, checker).same([(*copy, 0.9)]).tolist() == [False]  # no pixels known for that hash


def test_whether_a_later_result_can_reach_min_match(files, checker) -> None:
    coffee = files["coffee"]
    assert grading(Picture(*coffee), checker).later_may_reach(0.0)  # no min_match: always
    assert grading(Picture(*coffee), checker, min_match="same").later_may_reach(FLOOR)  # a copy may follow
    assert not grading(Picture(*coffee), checker, min_match="same").later_may_reach(FLOOR - 0.01)
    assert not grading(None, checker, min_match="same").later_may_reach(0.99)  # a combined query: never same
    assert grading(None, checker, min_match="weak").later_may_reach(-1.0)
    strong = grading(None, checker, min_match="similar")
    assert strong.later_may_reach(0.99) and not strong.later_may_reach(0.2)  # by the prior's cuts


def test_a_search_makes_at_most_copy_checks_framing_checks(files, checker, monkeypatch) -> None:
    coffee, copy, rocket = files["coffee"], files["copy"], files["rocket"]
    found = [(*coffee, 1.0), (*rocket, 0.95), (*copy, 0.9)]
    assert grading(Picture(*coffee), checker).same(found).tolist() == [True, False, True]
    monkeypatch.setattr(matches, "COPY_CHECKS", 1)
    fresh = FramingChecker(checker.catalog)
    assert grading(Picture(*coffee), fresh).same(found).tolist() == [True, False, False]  # the content needs none
    assert fresh.computed == 1


def text_page(seed: int, size: tuple[int, int] = (600, 800)) -> Image.Image:
    """A page of black text lines on white (Pillow's font), the words drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    page = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(page)
    for line in range(40, size[1] - 60, 22):
        words = ["".join(chr(97 + c) for c in rng.integers(0, 26, rng.integers(2, 9))) for _ in range(9)]
        draw.text((50, line), " ".join(words), fill="black")
    return page


@pytest.fixture()
def stored(tmp_path: Path):
    """A catalogue and a thumbnail store, the framing checker reading both."""
    with Catalog(tmp_path / "catalog.sqlite3") as catalog:
        store = ThumbnailStore(tmp_path / "thumbnails")
        yield store, FramingChecker(catalog, thumbnails=store)
        store.close()


def indexed(store: ThumbnailStore, path: Path, picture: Image.Image, decode_side: int = 300) -> tuple[str, str]:
    """Save ``picture`` as a PNG and keep its thumbnail as the pipeline does (from the decode for
    the model, ``decode_side`` on the shorter side); its (path, content hash)."""
    picture.save(path)
    data = path.read_bytes()
    store.add_picture(content_hash(data), decode(data, decode_side))
    return str(path), content_hash(data)


def written(path: Path, picture: Image.Image, **save: Any) -> tuple[str, str]:
    picture.save(path, **save)
    return str(path), content_hash(path.read_bytes())


def test_the_same_pixels_give_the_same_print_as_the_stored_thumbnail(tmp_path, stored) -> None:
    """A text page's print from its stored 192x256 JPEG thumbnail against one from a decode of a
    lossless re-save scored 0.963 (under FRAMING_COPY) before every print came from the stored form."""
    store, checker = stored
    page = text_page(1)
    original = indexed(store, tmp_path / "page.png", page)
    resave = written(tmp_path / "resave.png", page, compress_level=1)  # other bytes, the same pixels
    q70 = written(tmp_path / "page_q70.jpg", page, quality=70)
    assert resave[1] != original[1]
    assert checker.pair_score(original, resave) == pytest.approx(1.0, abs=1e-5)  # float32 sums: not exactly 1
    assert checker.pair_score(original, q70) >= FRAMING_COPY
    upload = Picture("", resave[1], Path(resave[0]).read_bytes())
    assert grading(upload, checker).same([(*original, 0.99)]).tolist() == [True]
    # the stored form is the store's own thumbnail, pixel for pixel
    thumbnail = store.get(original[1])
    assert thumbnail is not None
    kept = np.asarray(Image.open(io.BytesIO(thumbnail.data)).convert("RGB"))
    assert np.array_equal(kept, np.asarray(checker.stored_form(decode(Path(original[0]).read_bytes(), 300))))


def test_flat_pictures_of_one_colour_are_copies_and_of_two_are_not(tmp_path, stored) -> None:
    """Flat prints scored 0 before: a white page and its crops were never ``same``."""
    store, checker = stored
    white = indexed(store, tmp_path / "white.png", Image.new("RGB", (400, 300), (250, 250, 250)))
    crop = written(tmp_path / "crop.png", Image.new("RGB", (333, 222), (250, 250, 250)))
    jpeg = written(tmp_path / "white.jpg", Image.new("RGB", (640, 480), (250, 250, 250)), quality=70)
    grey = written(tmp_path / "grey.png", Image.new("RGB", (400, 300), (240, 240, 240)))
    blue = written(tmp_path / "blue.png", Image.new("RGB", (400, 300), (250, 250, 255)))
    page = indexed(store, tmp_path / "page.png", text_page(2))
    found = [(*crop, 0.99), (*jpeg, 0.98), (*grey, 0.97), (*blue, 0.97), (*page, 0.8)]
    assert grading(Picture(*white), checker).same(found).tolist() == [True, True, False, False, False]
    assert checker.pair_score(white, crop) == 1.0 and checker.pair_score(white, grey) == 0.0
    assert flat_copy(
        (np.full((64, 64), 250, np.uint8), (250.0, 250.0, 250.0)),
        (np.full((64, 64), 250, np.uint8), (252.0, 249.0, 251.0)),
    )
