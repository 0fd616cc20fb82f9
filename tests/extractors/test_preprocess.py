"""Preprocessing (issue 12): letterbox, squash and crop on made pictures, the setting, the model id.

Geometry is checked on the tensors the models get, de-normalised back to colours: a picture
with coloured borders shows them under letterbox and squash and loses them under crop.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from imgsearchd.config import PREPROCESS, ConfigError, load_config
from imgsearchd.extractors import create, framing
from imgsearchd.extractors.efficientnet import MEAN, STD
from imgsearchd.ingest.pipeline import Pipeline
from imgsearchd.media import images
from imgsearchd.store.catalog import Catalog

from helpers import write_config

RED, GREEN, BLUE, GREY = (230, 20, 20), (20, 200, 20), (20, 20, 230), (128, 128, 128)


def bordered(width: int, height: int) -> Image.Image:
    """Grey, with a red band on the left/top tenth, a blue one on the right/bottom tenth, a green disc."""
    picture = Image.new("RGB", (width, height), GREY)
    draw = ImageDraw.Draw(picture)
    if width >= height:
        band = width // 10
        draw.rectangle((0, 0, band - 1, height), fill=RED)
        draw.rectangle((width - band, 0, width, height), fill=BLUE)
    else:
        band = height // 10
        draw.rectangle((0, 0, width, band - 1), fill=RED)
        draw.rectangle((0, height - band, width, height), fill=BLUE)
    r = min(width, height) // 4
    draw.ellipse((width // 2 - r, height // 2 - r, width // 2 + r, height // 2 + r), fill=GREEN)
    return picture


def colours(tensor: torch.Tensor) -> np.ndarray:
    """EfficientNet's normalised (3, H, W) tensor back to (H, W, 3) pixel values."""
    mean, std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
    return ((tensor * std + mean) * 255).permute(1, 2, 0).numpy()


def near(pixels: np.ndarray, rgb: tuple[int, int, int], tolerance: float = 20) -> np.ndarray:
    return np.asarray(np.abs(pixels - np.array(rgb)).max(axis=-1) <= tolerance)


def efficientnet_transform(mode: str) -> Any:
    return framing.transform(mode, 224, 256, Image.Resampling.BICUBIC, MEAN, STD)


@pytest.mark.parametrize("size", [(600, 300), (300, 600), (1200, 300)], ids=["2:1", "1:2", "4:1"])
def test_borders_reach_the_model_under_letterbox_and_squash_not_crop(size):
    picture = bordered(*size)
    for mode in framing.MODES:
        pixels = colours(efficientnet_transform(mode)(picture))
        assert pixels.shape == (224, 224, 3)
        red, blue = int(near(pixels, RED).sum()), int(near(pixels, BLUE).sum())
        if mode == "crop":
            assert red == blue == 0, (mode, red, blue)
        else:
            # a tenth of the picture each; after scaling at least a few rows or columns of 224
            assert red > 224 and blue > 224, (mode, red, blue)


def test_letterbox_keeps_the_aspect_ratio_and_squash_does_not():
    picture = bordered(600, 300)  # a disc of diameter 150 in a 2:1 picture
    boxed = colours(efficientnet_transform("letterbox")(picture))
    squashed = colours(efficientnet_transform("squash")(picture))

    def extent(pixels: np.ndarray) -> tuple[int, int]:
        rows, cols = np.nonzero(near(pixels, GREEN, 40))
        return int(cols.max() - cols.min() + 1), int(rows.max() - rows.min() + 1)

    width, height = extent(boxed)
    assert abs(width - height) <= 2 and abs(width - 56) <= 3, (width, height)  # 150 px at 224/600
    width, height = extent(squashed)
    assert abs(width / height - 0.5) < 0.05, (width, height)  # the disc squashed to half its width


def test_letterbox_padding_is_the_mean_colour_exactly_zero():
    tensor = efficientnet_transform("letterbox")(bordered(600, 300))  # 224 x 112 picture, centred
    assert torch.equal(tensor[:, :56], torch.zeros(3, 56, 224))
    assert torch.equal(tensor[:, 168:], torch.zeros(3, 56, 224))
    assert bool((tensor[:, 56:168] != 0).any(dim=0).all())  # the picture: grey 128 is not the mean 127
    black = framing.LetterboxTensor(224, Image.Resampling.BICUBIC, MEAN, STD, fill=(0, 0, 0))(bordered(600, 300))
    expected = (-torch.tensor(MEAN) / torch.tensor(STD)).view(3, 1, 1).expand(3, 56, 224)
    assert torch.allclose(black[:, :56], expected) and torch.equal(black[:, 56:168], tensor[:, 56:168])


def test_clip_frames_as_open_clips_own_resize_modes(clip_random, photos):
    """squash is open_clip's "squash" (rebuilt on the bounded resize: 2 levels at most); letterbox
    is its "longest" inside the picture, the padding at the mean colour instead of black."""
    from open_clip import image_transform

    cfg = clip_random.model.visual.preprocess_cfg
    mean, std = cfg["mean"], cfg["std"]

    def theirs(mode: str) -> Any:
        return image_transform(224, is_train=False, mean=mean, std=std, resize_mode=mode)

    letterbox = framing.transform("letterbox", 224, 224, Image.Resampling.BICUBIC, mean, std)
    black = (-torch.tensor(mean) / torch.tensor(std)).view(3, 1)  # open_clip's fill_color 0
    for name in ("astronaut", "motorcycle_left", "hubble"):
        photo = photos[name].convert("RGB")
        for picture in (photo, photo.crop((0, 0, photo.width, photo.height // 3))):
            a, b = clip_random.preprocess(picture), theirs("squash")(picture)
            level = 1 / 255 / min(std)
            assert float((a - b).abs().max()) <= 2.01 * level and float((a - b).abs().mean()) < 0.05 * level
            a, b = letterbox(picture), theirs("longest")(picture)
            padded = (a == 0).all(dim=0)
            assert torch.allclose(a[:, ~padded], b[:, ~padded], atol=1e-6), name
            assert torch.allclose(b[:, padded], black.expand(3, int(padded.sum())), atol=1e-6), name


def test_a_tiny_strip_still_fills_one_row():
    tensor = efficientnet_transform("letterbox")(Image.new("RGB", (100000, 1), RED))
    rows = np.nonzero(near(colours(tensor), RED).all(axis=1))[0]
    assert list(rows) == [111]


@pytest.mark.parametrize("size", [(4000, 1000), (1000, 3000)], ids=["panorama", "portrait"])
def test_the_draft_decode_gives_enough_pixels_for_the_full_frame(efficientnet, size):
    """images.decode shrinks to ``decode_side`` on the shorter side: the full frame still has it all."""
    assert efficientnet.preprocess_mode == "squash" and efficientnet.decode_side == 224
    assert framing.decode_side("letterbox", 224, 256) == 224 and framing.decode_side("crop", 224, 256) == 256
    picture = bordered(*size)
    buf = io.BytesIO()
    picture.save(buf, "JPEG", quality=92)
    decoded = images.decode(buf.getvalue(), efficientnet.decode_side)
    assert min(decoded.size) >= efficientnet.decode_side and max(decoded.size) < max(size)  # drafted
    full = images.decode(buf.getvalue(), 0)
    for frame in (efficientnet.preprocess, efficientnet_transform("letterbox")):
        small, big = frame(decoded), frame(full)
        assert float((small - big).abs().mean()) < 0.02  # the same picture, to resampling noise
        vectors = efficientnet.embed(torch.stack([small, big]))
        assert float(vectors[0] @ vectors[1]) > 0.995


def test_each_extractor_defaults_to_squash_and_says_so_in_its_model_id(efficientnet, clip_random, resnet_random):
    assert framing.DEFAULT_MODE == "squash"
    for extractor in (efficientnet, clip_random, resnet_random):
        assert extractor.preprocess_mode == "squash" and extractor.decode_side == 224
        assert extractor.model_id.endswith(":squash"), extractor.model_id


def test_the_model_id_differs_per_preprocess_and_crop_keeps_the_old_one(efficientnet, efficientnet_crop):
    letterbox = create(
        "efficientnet", {"device": "cpu", "precision": "fp32", "engine": "torch", "preprocess": "letterbox"}
    )
    ids = {e.preprocess_mode: e.model_id for e in (efficientnet, efficientnet_crop, letterbox)}
    assert ids == {
        "crop": "efficientnet_lite0:lite0-57934424",  # the id before issue 12: such a catalogue stays valid
        "squash": "efficientnet_lite0:lite0-57934424:squash",
        "letterbox": "efficientnet_lite0:lite0-57934424:letterbox",
    }
    with pytest.raises(ConfigError, match=r"extractor settings: extractors.efficientnet.preprocess must be one of"):
        create("efficientnet", {"device": "cpu", "preprocess": "zoom"})


def test_config_takes_every_mode_and_names_the_key_and_file_of_a_bad_one(tmp_path):
    assert ("auto", *framing.MODES) == PREPROCESS
    good = write_config(tmp_path / "good.toml", {"extractors.resnet": {"preprocess": "squash"}})
    config = load_config(good)
    assert config.extractor("resnet").preprocess == "squash"
    assert config.extractors.clip.preprocess == config.extractors.efficientnet.preprocess == "auto"
    bad = write_config(tmp_path / "bad.toml", {"extractors.clip": {"preprocess": "pad"}})
    with pytest.raises(ConfigError) as caught:
        load_config(bad)
    message = str(caught.value)
    assert "extractors.clip.preprocess" in message and str(bad) in message and "letterbox" in message


def test_a_changed_preprocess_re_embeds_through_the_indexer(tmp_path, photos, efficientnet, efficientnet_crop):
    folder = tmp_path / "photos"
    folder.mkdir()
    paths = []
    for name in ("chelsea", "coffee"):
        photos[name].save(folder / f"{name}.jpg")
        paths.append(str(folder / f"{name}.jpg"))
    with Catalog(tmp_path / "catalog.sqlite3") as catalog:
        with Pipeline(catalog, {"efficientnet": efficientnet_crop}) as pipeline:
            assert pipeline.process(paths)["embedded"] == 2
        with Pipeline(catalog, {"efficientnet": efficientnet}) as pipeline:
            summary = pipeline.process(paths)
        assert summary["embedded"] == 2  # the same files, the same content: embedded again
        # the old model's vectors stay beside the new ones (a model change serves them until it
        # switches), then go with the switch's prune
        assert catalog.all_vectors("efficientnet", efficientnet_crop.model_id, 1280)[1].size == 2
        assert catalog.all_vectors("efficientnet", efficientnet.model_id, 1280)[1].size == 2
        assert catalog.prune_other_models("efficientnet", keep=(efficientnet.model_id,)) == 2
        assert catalog.all_vectors("efficientnet", efficientnet_crop.model_id, 1280)[1].size == 0
        for path in paths:  # the stored vector is the squashed picture's
            found = catalog.vector_for_path(path, "efficientnet", efficientnet.model_id)
            assert found is not None
            expected = efficientnet.embed_images([images.load_image(path, efficientnet.decode_side)])[0]
            assert float(found[1] @ expected) > 0.9999
