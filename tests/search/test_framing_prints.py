"""framing_prints: the framing check on real files in a real catalogue: prints from the
thumbnail store or the file (EXIF turned), cached per content and per pair; unreadable -> None."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from imgsearchd.media.files import content_hash
from imgsearchd.media.thumbnails import ThumbnailStore
from imgsearchd.search import framing
from imgsearchd.search.framing_prints import FramingChecker
from imgsearchd.store.catalog import Catalog
from imgsearchd.store.rows import FileResult


def _window(picture: Image.Image, dx: float) -> Image.Image:
    w, h = picture.size
    ww, wh = w * 3 // 4, h * 3 // 4
    x0 = (w - ww) // 2 + round(dx * ww)
    return picture.crop((x0, (h - wh) // 2, x0 + ww, (h - wh) // 2 + wh))


@pytest.fixture()
def library(tmp_path: Path, photos: dict[str, Image.Image]) -> dict[str, Path]:
    """Real files: a scene, its edited copy, the copy saved on its side with an EXIF turn,
    a second shot moved by 15%, another photo, and a file that is no picture."""
    scene = _window(photos["astronaut"].convert("RGB"), 0)
    folder = tmp_path / "photos"
    folder.mkdir()
    made = {
        "scene": scene,
        "copy": ImageEnhance.Contrast(scene.resize((scene.width * 2 // 3, scene.height * 2 // 3))).enhance(1.2),
        "shifted": _window(photos["astronaut"].convert("RGB"), 0.15),
        "other": _window(photos["coffee"].convert("RGB"), 0),
    }
    paths = {}
    for name, picture in made.items():
        paths[name] = folder / f"{name}.jpg"
        picture.save(paths[name], quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned a quarter clockwise: the pixels are stored a quarter anticlockwise
    paths["turned"] = folder / "turned.jpg"
    scene.transpose(Image.Transpose.ROTATE_90).save(paths["turned"], quality=85, exif=exif)
    paths["broken"] = folder / "broken.jpg"
    paths["broken"].write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG" * 10)
    return paths


def _catalogue(catalog: Catalog, paths: dict[str, Path]) -> dict[str, int]:
    catalog.record_batch(
        FileResult(str(p), p.stat().st_size, p.stat().st_mtime_ns, content_hash(p.read_bytes())) for p in paths.values()
    )
    ids = {v: k for k, v in catalog.paths_for(range(1, 100)).items()}
    return {name: ids[str(p)] for name, p in paths.items()}


def _pair(ids: dict[str, int], a: str, b: str) -> tuple[int, int]:
    return (min(ids[a], ids[b]), max(ids[a], ids[b]))


def _counter() -> tuple[list[int], Callable[[int], None]]:
    seen: list[int] = []
    return seen, seen.append


def test_copies_pass_second_shots_fail_unreadable_is_none(tmp_path: Path, library: dict[str, Path]) -> None:
    with Catalog(tmp_path / "catalog.sqlite3") as catalog:
        ids = _catalogue(catalog, library)
        checker = FramingChecker(catalog, roots=[str(tmp_path)])
        pairs = [_pair(ids, "scene", x) for x in ("copy", "turned", "shifted", "other", "broken")]
        seen, progress = _counter()
        got = checker.scores(pairs, progress)
        assert seen == [1] * len(pairs)  # once per pair
        score = {name: got[_pair(ids, "scene", name)] for name in ("copy", "turned", "shifted", "other", "broken")}
        assert score["copy"] is not None and score["copy"] >= framing.FRAMING_COPY
        assert score["turned"] is not None and score["turned"] >= framing.FRAMING_COPY  # the loader turned it
        assert score["shifted"] is not None and score["shifted"] < framing.FRAMING_COPY
        assert score["other"] is not None and score["other"] < 0.7
        assert score["broken"] is None


def test_each_content_is_read_once_and_a_new_join_checks_only_new_pairs(
    tmp_path: Path, library: dict[str, Path], photos: dict[str, Image.Image]
) -> None:
    with Catalog(tmp_path / "catalog.sqlite3") as catalog:
        ids = _catalogue(catalog, library)
        checker = FramingChecker(catalog)
        pairs = [_pair(ids, a, b) for a, b in (("scene", "copy"), ("scene", "shifted"), ("copy", "shifted"))]
        first = checker.scores(pairs, lambda n: None)
        assert (checker.reads, checker.computed) == (3, 3)
        assert checker.scores(pairs, lambda n: None) == first
        assert (checker.reads, checker.computed) == (3, 3)  # nothing read or computed again
        # one new file: only its pairs are computed, only it is read
        new = tmp_path / "photos" / "new.png"
        ImageEnhance.Brightness(_window(photos["astronaut"].convert("RGB"), 0)).enhance(1.15).save(new)
        ids.update(_catalogue(catalog, {"new": new}))
        again = checker.scores([*pairs, _pair(ids, "scene", "new"), _pair(ids, "copy", "new")], lambda n: None)
        assert (checker.reads, checker.computed) == (4, 5)
        assert all(again[p] == first[p] for p in pairs)
        # a byte copy of a checked file at another path: same contents, nothing to compute
        twin = tmp_path / "photos" / "twin.jpg"
        twin.write_bytes(library["shifted"].read_bytes())
        ids.update(_catalogue(catalog, {"twin": twin}))
        assert checker.scores([_pair(ids, "scene", "twin")], lambda n: None) == {
            _pair(ids, "scene", "twin"): first[_pair(ids, "scene", "shifted")]
        }
        assert (checker.reads, checker.computed) == (4, 5)


def test_prints_come_from_the_thumbnail_store_and_decodes_fill_it(tmp_path: Path, library: dict[str, Path]) -> None:
    store = ThumbnailStore(tmp_path / "thumbnails", size=256, max_bytes=10**8)
    try:
        with Catalog(tmp_path / "catalog.sqlite3") as catalog:
            ids = _catalogue(catalog, library)
            checker = FramingChecker(catalog, thumbnails=store)
            pair = _pair(ids, "scene", "copy")
            first = checker.scores([pair], lambda n: None)[pair]
            # the decodes stored the thumbnails on the way
            hashes = catalog.content_hashes([str(library["scene"]), str(library["copy"])])
            assert all(store.has(h) for h in hashes.values())
            # a fresh checker, the files gone: the prints come from the stored thumbnails
            for name in ("scene", "copy"):
                os.remove(library[name])
            again = FramingChecker(catalog, thumbnails=store).scores([pair], lambda n: None)[pair]
            assert again is not None and first is not None
            assert again >= framing.FRAMING_COPY and abs(again - first) < 0.02
            # without the store the same pair cannot be read
            assert FramingChecker(catalog).scores([pair], lambda n: None)[pair] is None
    finally:
        store.close()


def test_a_changed_or_outside_file_is_none_and_tried_again_later(tmp_path: Path, library: dict[str, Path]) -> None:
    with Catalog(tmp_path / "catalog.sqlite3") as catalog:
        ids = _catalogue(catalog, library)
        pair = _pair(ids, "scene", "copy")
        outside = FramingChecker(catalog, roots=[str(tmp_path / "elsewhere")])
        assert outside.scores([pair], lambda n: None)[pair] is None
        checker = FramingChecker(catalog)
        saved = library["copy"].read_bytes()
        library["copy"].write_bytes(library["other"].read_bytes())  # changed since it was indexed
        assert checker.scores([pair], lambda n: None)[pair] is None
        library["copy"].write_bytes(saved)  # back: the None was not cached
        score = checker.scores([pair], lambda n: None)[pair]
        assert score is not None and score >= framing.FRAMING_COPY
        # a pair with a file no longer indexed
        catalog.remove_paths([str(library["other"])])
        gone = _pair(ids, "scene", "other")
        assert checker.scores([gone], lambda n: None) == {gone: None}


def test_the_caches_are_bounded_and_progress_may_stop_the_check(tmp_path: Path, library: dict[str, Path]) -> None:
    with Catalog(tmp_path / "catalog.sqlite3") as catalog:
        ids = _catalogue(catalog, library)
        checker = FramingChecker(catalog, max_prints=2, max_scores=2)
        names = ("scene", "copy", "shifted", "other")
        pairs = [_pair(ids, a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
        got = checker.scores(pairs, lambda n: None)
        assert all(isinstance(v, float) and np.isfinite(v) for v in got.values())
        assert checker.stats()["prints"] == 2 and checker.stats()["scores"] == 2

        class Stop(Exception):
            pass

        def stop(n: int) -> None:
            raise Stop

        with pytest.raises(Stop):
            FramingChecker(catalog).scores(pairs, stop)
