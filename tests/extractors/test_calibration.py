"""The shipped calibration photos (issue 32): they load, and the crops are deterministic and in bounds."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgsearchd.extractors import calibration

COUNT = 10  # the JPEGs listed in calibration/LICENSES.md


def test_photos_load_as_small_rgb() -> None:
    pictures = calibration.photos()
    assert len(pictures) == COUNT
    for picture in pictures:
        assert picture.mode == "RGB"
        assert max(picture.size) <= 320


def test_every_photo_has_a_licence_line() -> None:
    licences = (calibration.PHOTOS / "LICENSES.md").read_text(encoding="utf-8")
    for path in calibration.PHOTOS.glob("*.jpg"):
        assert f"`{path.name}`" in licences


def pixels(images: list[Image.Image]) -> list[bytes]:
    """Each picture's size and bytes, to compare two lists of crops."""
    return [repr(image.size).encode() + image.tobytes() for image in images]


def test_crops_are_deterministic_per_seed() -> None:
    first, again = calibration.crops(25, seed=7), calibration.crops(25, seed=7)
    assert len(first) == 25
    assert pixels(first) == pixels(again)
    assert pixels(calibration.crops(25, seed=8)) != pixels(first)


def test_crops_keep_40_to_90_percent_of_each_side() -> None:
    pictures = calibration.photos()
    for index, crop in enumerate(calibration.crops(60, seed=3)):
        source = pictures[index % len(pictures)]  # round-robin
        assert crop.mode == "RGB"
        for side, full in zip(crop.size, source.size, strict=True):
            assert 0.4 * full <= side <= 0.9 * full


def test_crops_come_from_their_photo() -> None:
    pictures = calibration.photos()
    crop = calibration.crops(1, seed=0)[0]
    rng = np.random.default_rng(0)
    box = calibration.crop_box(pictures[0].width, pictures[0].height, rng)
    assert crop.tobytes() == pictures[0].crop(box).tobytes()


def test_missing_photos_name_the_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(calibration, "PHOTOS", tmp_path)
    with pytest.raises(RuntimeError, match=re.escape(str(tmp_path))):
        calibration.photos()
    monkeypatch.setattr(calibration, "PHOTOS", tmp_path / "gone")
    with pytest.raises(RuntimeError, match="gone"):
        calibration.crops(4, seed=0)
