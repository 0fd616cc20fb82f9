"""Bounded preprocessing and decoding: the crop's box against the full resize, extreme
aspect ratios through every extractor, and the process-wide decode budget."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms
from torchvision.transforms import InterpolationMode

from imgsearchd.extractors.crop import ResizeCrop
from imgsearchd.media import images, memory
from imgsearchd.media.limits import ImageLimits

import image_factory as make

# The models' transforms before crop.py: (shorter side, torchvision interpolation), crop 224.
FULL_RESIZE = {
    "efficientnet": (256, InterpolationMode.BICUBIC),
    "clip_random": (224, InterpolationMode.BICUBIC),
    "resnet_random": (232, InterpolationMode.BILINEAR),
}
EXTRACTORS = list(FULL_RESIZE)
# Nothing preprocessing or decoding makes may be bigger than this: 4 x 256 x 256 pixels.
SMALL = 4 * 256 * 256


def full_resize_crop(picture: Image.Image, resize: int, mode: InterpolationMode) -> Image.Image:
    resized: Image.Image = transforms.Resize(resize, interpolation=mode)(picture)
    cropped: Image.Image = transforms.CenterCrop(224)(resized)
    return cropped


def shapes(photos: dict[str, Image.Image]) -> Iterator[tuple[str, Image.Image]]:
    """The photos, and 3:1 and 1:4 strips cut from them (the strips are upscaled: both orders
    of Pillow's two passes occur)."""
    for name, photo in photos.items():
        photo = photo.convert("RGB")
        yield name, photo
        yield f"{name}-wide", photo.crop((0, 0, photo.width, photo.height // 3))
        yield f"{name}-tall", photo.crop((0, 0, photo.width // 4, photo.height))


@pytest.mark.parametrize("fixture", EXTRACTORS)
def test_resize_crop_matches_the_full_resize(photos, fixture):
    resize, mode = FULL_RESIZE[fixture]
    bounded = ResizeCrop(resize, 224, Image.Resampling(transforms.functional.pil_modes_mapping[mode]))
    for name, picture in shapes(photos):
        old = np.asarray(full_resize_crop(picture, resize, mode), dtype=np.int16)
        new = np.asarray(bounded(picture), dtype=np.int16)
        diff = np.abs(old - new)
        # Only rounding (Pillow takes the box as float32): 1 level in up to 2 % of the values,
        # 2 at most; a shift by a pixel would move edges by tens of levels.
        assert diff.max() <= 2 and diff.mean() < 0.03, (name, diff.max(), diff.mean())


def test_bounded_preprocess_keeps_the_real_vectors(photos, efficientnet_crop):
    """EfficientNet-Lite0's real weights see the same pictures: the model id may stay."""
    full = transforms.Compose(
        [
            transforms.Resize(256, interpolation=InterpolationMode.BICUBIC),
            transforms.CenterCrop(224),
            transforms.ToTensor(),
            transforms.Normalize((0.498,) * 3, (0.502,) * 3),
        ]
    )
    some = {name: photos[name] for name in ("chelsea", "astronaut", "hubble", "motorcycle_left")}
    pictures = [picture for _, picture in shapes(some)]
    old = efficientnet_crop.embed(torch.stack([full(p) for p in pictures]))
    new = efficientnet_crop.embed(torch.stack([efficientnet_crop.preprocess(p) for p in pictures]))
    cosines = (old * new).sum(axis=1)
    assert cosines.min() >= 0.99999, cosines.min()  # measured 0.9999985 on all nine photos' shapes


@pytest.fixture
def size_guard(monkeypatch) -> dict[str, int]:
    """Fail any Pillow resize, crop or new picture bigger than SMALL pixels, before it allocates."""
    seen = {"largest": 0}

    def check(width: int, height: int, what: str) -> None:
        seen["largest"] = max(seen["largest"], width * height)
        assert width * height <= SMALL, f"{what} of {width}x{height} pixels"

    real_resize, real_crop, real_new = Image.Image.resize, Image.Image.crop, Image.new

    def resize(self: Image.Image, size: Any, *args: Any, **kwargs: Any) -> Image.Image:
        check(int(size[0]), int(size[1]), "resize")
        return real_resize(self, size, *args, **kwargs)

    def crop(self: Image.Image, box: Any = None) -> Image.Image:
        if box is not None:
            check(int(box[2] - box[0]), int(box[3] - box[1]), "crop")
        return real_crop(self, box)

    def new(mode: str, size: Any, *args: Any, **kwargs: Any) -> Image.Image:
        check(int(size[0]), int(size[1]), "Image.new")
        return real_new(mode, size, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "resize", resize)
    monkeypatch.setattr(Image.Image, "crop", crop)
    monkeypatch.setattr(Image, "new", new)
    return seen


@pytest.mark.parametrize("size", [(100000, 1), (1, 100000), (65000, 3), (1, 1)])
@pytest.mark.parametrize("fixture", [*EXTRACTORS, "efficientnet_crop"])  # the fixtures letterbox (the default)
def test_extreme_aspect_ratios_make_nothing_big(request, tmp_path, size_guard, fixture, size):
    extractor = request.getfixturevalue(fixture)
    data = make.solid_png(tmp_path / "strip.png", *size).read_bytes()
    started = time.monotonic()
    picture = images.decode(data, extractor.decode_side)
    tensor = extractor.preprocess(picture)
    elapsed = time.monotonic() - started
    assert tuple(tensor.shape) == (3, 224, 224) and bool(torch.isfinite(tensor).all())
    assert elapsed < 2.0, elapsed  # measured 2-5 ms; the full resize of 100000x1 took minutes and 22 GB
    assert size_guard["largest"] <= SMALL


def test_a_degenerate_strip_gives_its_centre_stretched_over_the_crop(size_guard, efficientnet_crop):
    """Decision: the model's own definition, continued: shorter side to 256 and the centre
    224 kept, so a 100000x1 strip shows the ~1 pixel at its centre, not a squashed strip."""
    strip = Image.fromarray(np.tile(np.array([[[220, 20, 20]]], dtype=np.uint8), (1, 100000, 1)))
    strip.paste((20, 200, 20), (49990, 0, 50010, 1))  # green only around the centre
    buf = io.BytesIO()
    strip.save(buf, "PNG")
    tensor = efficientnet_crop.preprocess(images.decode(buf.getvalue(), efficientnet_crop.decode_side))
    rgb = (tensor * 0.502 + 0.498).mean(dim=(1, 2)) * 255
    assert rgb[1] > 190 and rgb[0] < 30, rgb


def test_the_budget_lets_decodes_in_only_while_they_fit():
    budget = memory.PixelBudget()
    inside: list[str] = []
    release = {name: threading.Event() for name in ("a", "b", "big")}

    def hold(name: str, pixels: int) -> None:
        with budget.hold(pixels, capacity=100):
            inside.append(name)
            release[name].wait(10)
        inside.append(f"{name} out")

    def start(name: str, pixels: int) -> threading.Thread:
        thread = threading.Thread(target=hold, args=(name, pixels))
        thread.start()
        time.sleep(0.1)
        return thread

    threads = [start("a", 60), start("b", 60), start("big", 500)]
    assert inside == ["a"]  # b would not fit beside a; big waits behind b
    release["a"].set()
    threads[0].join(5)
    time.sleep(0.1)
    assert inside == ["a", "a out", "b"]  # big (over the capacity) waits to run alone
    release["b"].set()
    threads[1].join(5)
    time.sleep(0.1)
    assert inside[-1] == "big" and budget.in_use == 500
    release["big"].set()
    threads[2].join(5)
    assert budget.in_use == 0 and budget.peak == 500


def test_concurrent_decodes_go_through_the_budget(tmp_path, monkeypatch):
    budget = memory.PixelBudget()
    monkeypatch.setattr(memory, "DECODES", budget)
    data = make.solid_png(tmp_path / "big.png", 3000, 3000).read_bytes()
    limits = ImageLimits(decode_budget_pixels=9_000_000)
    pictures: list[Image.Image] = []
    threads = [threading.Thread(target=lambda: pictures.append(images.decode(data, 224, limits))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert [p.size for p in pictures] == [(231, 231)] * 4  # reduced by 13
    assert budget.peak == 9_000_000  # each decode counted, never two at once
