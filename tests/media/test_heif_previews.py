"""A phone HEIC's thumbnail item decoded instead of its grid (``media.heif_previews``), and when not."""

from __future__ import annotations

import functools
import io
from collections.abc import Iterator
from typing import Any

import numpy as np
import pillow_heif  # a hard dependency (pyproject.toml): no skip
import pytest
from PIL import Image, ImageOps

from heif_files import phone_heic
from imgsearchd.ingest.pipeline import Pipeline
from imgsearchd.media import formats, heif_previews, images, memory, previews
from imgsearchd.media.limits import ImageLimits, budget_pixels
from imgsearchd.store.catalog import Catalog

from helpers import skimage_photos

USED = {"used: HEIF thumbnail": 1}
# A phone's 320x240 thumbnail covers a 224 side but is under twice it: only "fast" mode takes it
# ("faithful", the default, decodes the grid); the checks below are those of either mode.
FAST = ImageLimits(previews="fast")
# The photos the pipeline test indexes (scikit-image's, real photos; the five-photo cosine is
# the bench's and test_jpeg_previews' job): chelsea is the orientation test's file, made once.
PHOTOS = ("chelsea", "coffee", "astronaut")


@pytest.fixture(autouse=True)
def fresh_counts() -> Iterator[None]:
    previews.counts.clear()
    yield
    previews.counts.clear()


def _picture(photos: dict[str, Image.Image], name: str = "chelsea", size: tuple[int, int] = (480, 360)) -> Image.Image:
    """A real photo cut to a phone's 4:3 (a 320-pixel thumbnail of it is 320x240: it covers 224)
    at a size where 256-pixel tiles make a grid."""
    return ImageOps.fit(photos[name].convert("RGB"), size, Image.Resampling.LANCZOS)


@functools.cache
def _photos() -> dict[str, Image.Image]:
    return skimage_photos()


@functools.cache
def _heic(name: str = "chelsea", **options: Any) -> bytes:
    """A photo as a phone HEIC with 256-pixel tiles (an x265 encode costs 0.3-0.5 s: each made once)."""
    return phone_heic(_picture(_photos(), name), tile=256, **options)


def _plain_heic() -> bytes:
    """Chelsea as a phone HEIC with a 320x240 thumbnail."""
    return _heic()


def _correlation(a: Image.Image, b: Image.Image) -> float:
    """Pixel correlation of two pictures, ``b`` resized to ``a``'s size."""
    x = np.asarray(a, np.float64).ravel()
    y = np.asarray(b.resize(a.size, Image.Resampling.BOX), np.float64).ravel()
    return float(np.corrcoef(x, y)[0, 1])


def _decodes(
    data: bytes, min_side: int = 224, limits: ImageLimits = FAST
) -> tuple[Image.Image, dict[str, int], Image.Image]:
    """(the picture as decoded for a model in ``limits``' mode, what ``previews.counts`` says of it,
    the primary's picture)."""
    previews.counts.clear()
    picture = images.decode(data, min_side, limits)
    said = previews.counts.snapshot()
    return picture, said, images.decode(data, min_side, use_previews=False)


def test_phone_heics_carry_a_filtered_thumbnail(photos):
    """``phone_heic`` shrinks the thumbnail as a phone does, not by libheif's nearest pixel:
    the thumbnail is the Lanczos-shrunk picture, to within the encoder's loss."""
    picture = _picture(photos)
    shrunk = np.asarray(picture.resize((320, 240), Image.Resampling.LANCZOS), np.float64)
    differences = []
    for nearest in (False, True):
        heif = pillow_heif.open_heif(io.BytesIO(_heic(nearest_thumbnail=nearest)))
        assert heif.info.get("tiling", {}).get("tile_width") == 256
        thumbnail = heif[heif.primary_index].get_thumbnail(0).to_pillow().convert("RGB")
        differences.append(float(np.abs(np.asarray(thumbnail, np.float64) - shrunk).mean()))
    assert differences[0] < 2.5 < differences[1], differences


def test_the_thumbnail_is_decoded_instead_of_the_grid(photos):
    """A 320x240 thumbnail covers a 224-pixel model: its own pixels, and the same picture as the primary."""
    data = _plain_heic()
    picture, said, full = _decodes(data)
    assert said == USED
    heif = pillow_heif.open_heif(io.BytesIO(data))
    thumbnail = heif[heif.primary_index].get_thumbnail(0).to_pillow().convert("RGB")
    assert picture.size == thumbnail.size == (320, 240)
    assert np.array_equal(np.asarray(picture), np.asarray(thumbnail))
    assert _correlation(picture, full) > 0.97


def test_a_thumbnail_too_small_or_none_decodes_the_primary(photos):
    """Nothing is upscaled: a thumbnail whose shorter side is under ``min_side`` is passed over."""
    picture, said, full = _decodes(_plain_heic(), 256)  # 320x240 covers 224, not a crop model's 256
    assert said == {"declined: too small": 1} and min(picture.size) >= 256
    assert np.array_equal(np.asarray(picture), np.asarray(full))
    picture, said, full = _decodes(_heic(thumbnail=None))
    assert said == {} and np.array_equal(np.asarray(picture), np.asarray(full))


def test_a_thumbnail_of_another_crop_or_in_bars_is_declined(photos):
    """Another aspect ratio (a square crop of a 4:3 photo) or a letterboxed thumbnail: the primary is decoded."""
    photo = _picture(photos)
    square = photo.crop((100, 0, 100 + photo.height, photo.height))
    picture, said, full = _decodes(phone_heic(photo, tile=256, thumbnail_picture=square))
    assert said == {"declined: aspect differs": 1}
    assert np.array_equal(np.asarray(picture), np.asarray(full))
    # the photo shrunk into black bars of the primary's own frame
    boxed = Image.new("RGB", photo.size)
    boxed.paste(photo.resize((photo.width * 3 // 4, photo.height)), (photo.width // 8, 0))
    picture, said, full = _decodes(phone_heic(photo, tile=256, thumbnail_picture=boxed))
    assert said == {"declined: letterboxed": 1}
    assert np.array_equal(np.asarray(picture), np.asarray(full))


@pytest.mark.parametrize("orientation", [3, 6, 8])
def test_the_thumbnail_comes_out_as_upright_as_the_full_decode(photos, orientation):
    """libheif turns the thumbnail by its own ``irot``, as the primary by its own: the same shape
    and way up as the full decode (a turn the other way correlates far less)."""
    picture, said, full = _decodes(_heic(orientation=orientation))
    assert said == USED
    assert picture.size == ((240, 320) if orientation in (6, 8) else (320, 240))
    assert picture.width / picture.height == pytest.approx(full.width / full.height, rel=0.01)
    assert _correlation(picture, full) > 0.97
    assert _correlation(picture.transpose(Image.Transpose.ROTATE_180), full) < 0.8


def test_a_thumbnail_turned_otherwise_than_the_primary_is_declined(photos):
    """A thumbnail whose transforms differ from the primary's (a writer's bug): 180 degrees keeps the aspect."""
    picture, said, full = _decodes(_heic(orientation=3, thumbnail_orientation=1))
    assert said == {"declined: orientation differs": 1}
    assert np.array_equal(np.asarray(picture), np.asarray(full))


def test_the_primary_thumbnail_only(photos):
    """A HEIC of several top-level images: the primary's thumbnail, not another image's."""

    other = _picture(photos, "coffee")
    heif = pillow_heif.from_pillow(other)  # no thumbnail of its own
    heif.add_from_pillow(_picture(photos))
    buf = io.BytesIO()
    heif.save(buf, primary_index=1, thumbnails=[320], quality=80)
    picture, said, full = _decodes(buf.getvalue())
    assert said == USED
    assert _correlation(picture, full) > 0.97 > 0.5 > _correlation(picture, other)


def _item_extents(data: bytes, item_id: int) -> list[tuple[int, int]]:
    """(offset, length) of an item's data, read from the ``iloc`` box (versions 0-2)."""
    boxes = formats._bmff_boxes
    meta = next((start, end) for kind, start, end in boxes(data, 0, len(data)) if kind == b"meta")
    start, _ = next((start, end) for kind, start, end in boxes(data, meta[0] + 12, meta[1]) if kind == b"iloc")
    at = start + 8
    version = data[at]
    at += 4
    offset_size, length_size, base_size, index_size = data[at] >> 4, data[at] & 15, data[at + 1] >> 4, data[at + 1] & 15
    at += 2

    def read(size: int) -> int:
        nonlocal at
        at += size
        return int.from_bytes(data[at - size : at], "big")

    for _ in range(read(2 if version < 2 else 4)):
        found = read(2 if version < 2 else 4)
        read(2 if version else 0)  # construction method
        read(2)  # data reference index
        base = read(base_size)
        extents = []
        for _ in range(read(2)):
            read(index_size if version else 0)
            extents.append((base + read(offset_size), read(length_size)))
        if found == item_id:
            return extents
    raise KeyError(item_id)


def _damaged_thumbnail(data: bytes) -> bytes:
    """The file with its thumbnail's coded data zeroed at the start (its slice headers gone)."""

    heif = pillow_heif.open_heif(io.BytesIO(data))
    item = heif[heif.primary_index].get_thumbnail(0)._c_image.item_id
    ((offset, _),) = _item_extents(data, item)
    return data[:offset] + bytes(64) + data[offset + 64 :]


def test_a_damaged_thumbnail_falls_back_to_the_primary(photos):
    damaged = _damaged_thumbnail(_plain_heic())
    picture, said, full = _decodes(damaged)
    assert said == {"declined: unreadable": 1}
    assert np.array_equal(np.asarray(picture), np.asarray(full))


def test_the_pipeline_indexes_phone_heics_from_their_thumbnails(tmp_path, photos, efficientnet):
    """Real photos as phone HEICs: indexed from their thumbnails (a damaged one from its grid),
    with vectors (EfficientNet-Lite0's real weights, fp32) at cosine >= 0.99 to the full decode's."""
    paths = []
    for name in PHOTOS:
        paths.append(tmp_path / f"{name}.heic")
        paths[-1].write_bytes(_heic(name, orientation=6))
    broken = tmp_path / "broken.heic"
    broken.write_bytes(_damaged_thumbnail(_plain_heic()))
    with (
        Catalog(tmp_path / "catalog.sqlite3") as catalog,
        Pipeline(catalog, {"efficientnet": efficientnet}, FAST) as pipeline,
    ):
        done = pipeline.process([str(path) for path in [*paths, broken]])
        assert done["failed"] == {}
        assert previews.counts.snapshot() == {"used: HEIF thumbnail": len(PHOTOS), "declined: unreadable": 1}
        ids, vectors = catalog.vectors_under(str(tmp_path), efficientnet.name, efficientnet.model_id, efficientnet.dim)
        by_path = {catalog.path_and_size([int(i)])[int(i)][0]: vector for i, vector in zip(ids, vectors, strict=True)}
    assert len(by_path) == len(PHOTOS) + 1
    full = [images.decode(path.read_bytes(), efficientnet.decode_side, use_previews=False) for path in paths]
    expected = efficientnet.embed_images(full)
    cosines = [_cosine(by_path[str(path)], vector) for path, vector in zip(paths, expected, strict=True)]
    assert min(cosines) >= 0.99, cosines


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))


def test_a_black_and_white_primary_is_not_decoded_from_its_colour_thumbnail(photos):
    """A monochrome primary (an editor's conversion) with the colour thumbnail it had: the mode differs."""
    photo = _picture(photos)
    picture, said, full = _decodes(phone_heic(photo.convert("L"), tile=256, thumbnail_picture=photo))
    assert said == {"declined: mode differs": 1}
    assert np.array_equal(np.asarray(picture), np.asarray(full))


def test_the_thumbnail_is_costed_as_the_full_decode_costs_the_file(monkeypatch):
    """Its hold in the decode budget counts the file's HEIF pixels (bit depth, chroma), not a
    flat 5 bytes: a thumbnail is bounded only by the primary's area."""
    held = []
    hold = memory.DECODES.hold

    def recorded(pixels, capacity):
        held.append(pixels)
        return hold(pixels, capacity)

    monkeypatch.setattr(memory.DECODES, "hold", recorded)
    data = _plain_heic()
    images.decode(data, 224, FAST)
    assert previews.counts.snapshot() == USED
    header = formats.bmff_header(data)
    each = memory.bytes_per_pixel("HEIF", "RGB", header.bits, header.subsampled)
    assert held[0] == budget_pixels(320, 240, "HEIF", each, ImageLimits()) > 320 * 240 * 5 // 4
    assert heif_previews._letterboxed(Image.new("RGB", (320, 240))) is True  # flat everywhere: bars


def test_the_mode_says_which_thumbnails_stand_in(photos):
    """``[images] previews``: "faithful" (the default) declines a phone's 320x240 for 224 (under
    twice it: vectors 0.90-0.95 of the full picture's on real iPhones) and takes a 600x450; "fast"
    takes the 320x240; "off" looks at none."""
    phone = _plain_heic()
    picture, said, full = _decodes(phone, 224, ImageLimits())
    assert said == {"declined: under 2x the decode side": 1}
    assert np.array_equal(np.asarray(picture), np.asarray(full))
    assert _decodes(phone, 224, FAST)[1] == USED
    picture, said, full = _decodes(phone, 224, ImageLimits(previews="off"))
    assert said == {} and np.array_equal(np.asarray(picture), np.asarray(full))
    large = phone_heic(_picture(photos, size=(960, 720)), tile=512, thumbnail=600)
    picture, said, full = _decodes(large, 224, ImageLimits())
    # the 600x450 resized to what the primary's own decode gives (960x720 reduced by 3), not
    # halved to 300x225: the model then resamples both alike
    assert said == USED and picture.size == full.size == (320, 240)
    assert _correlation(picture, full) > 0.97
