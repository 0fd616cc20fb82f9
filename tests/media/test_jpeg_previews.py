"""A camera JPEG's MPF large thumbnail or EXIF thumbnail decoded instead of its primary (issue 31)."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageOps

from camera_photos import grainy
from imgsearchd.ingest.pipeline import Pipeline
from imgsearchd.media import jpeg_previews, previews
from imgsearchd.media.images import ImageError, Reason, decode
from imgsearchd.media.limits import ImageLimits
from imgsearchd.store.catalog import Catalog
from jpeg_files import MP_DISPARITY, MP_UNDEFINED, camera_jpeg

SIDE = 160  # PREVIEW's 320 is twice it: "faithful" mode (the default) takes it
SIZE = (1200, 800)  # a small primary where size is not the point
PREVIEW = (480, 320)  # the same 3:2, as a camera's large thumbnail


@pytest.fixture(autouse=True)
def fresh_counts() -> Iterator[None]:
    previews.counts.clear()
    yield
    previews.counts.clear()


@pytest.fixture(scope="module")
def picture(photos: dict[str, Image.Image]) -> Image.Image:
    return grainy(np.asarray(photos["chelsea"].convert("RGB")), SIZE, seed=1)


@pytest.fixture(scope="module")
def plain(picture: Image.Image) -> bytes:
    """The picture as a camera JPEG with a 480x320 MPF preview (made once: several tests read it)."""
    return camera_jpeg(picture, mpf_preview=PREVIEW)


def _used() -> dict[str, int]:
    return {k: v for k, v in previews.counts.snapshot().items() if k.startswith("used")}


def _difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute RGB difference of two pictures shrunk to 64 pixels wide (same aspect)."""
    size = (64, round(64 * a.height / a.width))
    x = np.asarray(a.resize(size, Image.Resampling.BOX), dtype=np.float32)
    y = np.asarray(b.resize(size, Image.Resampling.BOX), dtype=np.float32)
    return float(np.abs(x - y).mean())


def _full(data: bytes) -> Image.Image:
    return decode(data, SIDE, use_previews=False)


def test_mpf_preview_is_decoded_instead_of_the_primary(picture: Image.Image, plain: bytes) -> None:
    data = plain
    got = decode(data, SIDE)
    assert previews.counts.snapshot() == {"used: JPEG MPF preview": 1}
    assert SIDE <= min(got.size) < 2 * SIDE
    full = _full(data)
    assert got.width / got.height == pytest.approx(full.width / full.height, rel=0.01)
    assert _difference(got, full) < 3.0
    previews.counts.clear()
    decode(camera_jpeg(picture), SIDE)  # no preview at all: nothing counted
    assert previews.counts.snapshot() == {}


def test_previews_false_in_the_settings_decodes_the_primary(plain: bytes, tmp_path: Path) -> None:
    """``[images] previews = false``: every vector from the full picture, nothing looked at."""
    from imgsearchd.config import load_config

    (tmp_path / "imgsearchd.toml").write_text("[images]\npreviews = false\n")  # as written before the modes
    limits = ImageLimits.from_config(load_config(tmp_path / "imgsearchd.toml").images)
    assert limits.previews == "off" and limits.use_previews is False and ImageLimits().previews == "faithful"
    got = decode(plain, SIDE, limits)
    assert previews.counts.snapshot() == {}
    assert got.tobytes() == _full(plain).tobytes()


def test_the_picture_comes_from_the_preview(picture: Image.Image, photos: dict[str, Image.Image]) -> None:
    """A preview that differs only below the checked top rows shows: the picture is the preview's."""
    marked = picture.copy()
    marked.paste((255, 0, 0), (0, SIZE[1] // 2, SIZE[0], SIZE[1]))  # the lower half red
    got = decode(camera_jpeg(picture, mpf_preview=PREVIEW, preview_picture=marked), SIDE)
    assert _used() == {"used: JPEG MPF preview": 1}
    red = np.asarray(got)[-10:]
    assert red[..., 0].mean() > 200 and red[..., 1].mean() < 60


def test_samsung_exif_thumbnail_is_used_and_the_smallest_that_covers_wins(picture: Image.Image) -> None:
    four_three = picture.crop((100, 0, 1167, 800))  # 1067x800: 4:3 as a phone's
    data = camera_jpeg(four_three, exif_thumbnail=(512, 384), mpf_preview=(960, 720))
    got = decode(data, SIDE)
    assert _used() == {"used: EXIF thumbnail": 1}
    assert _difference(got, _full(data)) < 3.0
    decode(data, 200)  # the 512x384 is no longer twice 200 (faithful mode): the MPF preview is
    assert _used() == {"used: EXIF thumbnail": 1, "used: JPEG MPF preview": 1}


def test_a_preview_smaller_than_the_need_is_not_used(plain: bytes) -> None:
    data = plain
    got = decode(data, 400)
    assert previews.counts.snapshot() == {"declined: too small": 1}
    assert np.array_equal(np.asarray(got), np.asarray(decode(data, 400, use_previews=False)))


def test_a_letterboxed_exif_thumbnail_is_declined(picture: Image.Image) -> None:
    data = camera_jpeg(picture, exif_thumbnail=(160, 120))  # a 3:2 photo in 4:3 with black bars
    got = decode(data, 100)
    assert previews.counts.snapshot() == {"declined: aspect differs": 1}
    assert np.array_equal(np.asarray(got), np.asarray(decode(data, 100, use_previews=False)))


def test_a_preview_of_another_crop_is_declined(picture: Image.Image) -> None:
    wide = picture.crop((0, 100, 1200, 775))  # 16:9 from the 3:2 frame
    data = camera_jpeg(picture, mpf_preview=(480, 270), preview_picture=wide)
    decode(data, SIDE)
    assert previews.counts.snapshot() == {"declined: aspect differs": 1}


def _stale(picture: Image.Image, photos: dict[str, Image.Image], edit: str) -> Image.Image:
    if edit == "another photo":
        return grainy(np.asarray(photos["coffee"].convert("RGB")), SIZE, seed=2)
    if edit == "mirrored":
        return ImageOps.mirror(picture)
    if edit == "brightened":
        return Image.fromarray(np.clip(np.asarray(picture, dtype=np.float32) * 1.15, 0, 255).astype(np.uint8))
    w, h = picture.size
    return picture.crop((w * 0.05, h * 0.05, w * 0.95, h * 0.95)).resize(picture.size)


@pytest.mark.parametrize("edit", ["another photo", "mirrored", "brightened", "cropped 10%"])
def test_a_stale_preview_is_caught_by_the_primary_top_rows(
    picture: Image.Image, photos: dict[str, Image.Image], edit: str
) -> None:
    """An editor changed the primary and kept the camera's preview (same size and aspect)."""
    edited = _stale(picture, photos, edit)
    data = camera_jpeg(edited, mpf_preview=PREVIEW, preview_picture=picture)
    got = decode(data, SIDE)
    assert previews.counts.snapshot() == {"declined: content differs": 1}
    assert np.array_equal(np.asarray(got), np.asarray(_full(data)))


@pytest.mark.parametrize("mp_type", [MP_UNDEFINED, MP_DISPARITY], ids=["gain map", "disparity"])
def test_an_mpf_image_of_another_type_is_never_used(picture: Image.Image, plain: bytes, mp_type: int) -> None:
    data = camera_jpeg(picture, mpf_preview=PREVIEW, mpf_type=mp_type)
    got = decode(data, SIDE)
    assert previews.counts.snapshot() == {}
    assert np.array_equal(np.asarray(got), np.asarray(_full(data)))
    decode(plain, SIDE)  # the same image typed large thumbnail is
    assert previews.counts.snapshot() == {"used: JPEG MPF preview": 1}


def test_damaged_preview_bytes_fall_back_to_the_full_decode(plain: bytes) -> None:
    data = bytearray(plain)
    preview_at = bytes(data).rindex(b"\xff\xd8\xff")
    data[preview_at + 700 :] = b"\x00" * (len(data) - preview_at - 700)  # its scan zeroed
    got = decode(bytes(data), SIDE)
    assert _used() == {}
    assert previews.counts.snapshot()  # turned down, one way or another
    assert np.array_equal(np.asarray(got), np.asarray(_full(bytes(data))))


def test_a_cut_short_preview_falls_back(plain: bytes) -> None:
    data = plain
    cut = data[: len(data) - 3000]  # the file ends inside the preview: the primary is whole
    got = decode(cut, SIDE)
    assert _used() == {}
    assert np.array_equal(np.asarray(got), np.asarray(_full(cut)))
    decode(data, SIDE)  # whole, the same file's preview is used
    assert _used() == {"used: JPEG MPF preview": 1}


@pytest.mark.parametrize("tag", [6, 8])
def test_the_preview_is_turned_as_the_primary_is(picture: Image.Image, tag: int) -> None:
    data = camera_jpeg(picture, mpf_preview=PREVIEW, orientation=tag)
    got = decode(data, SIDE)
    assert _used() == {"used: JPEG MPF preview": 1}
    full = _full(data)
    assert full.height > full.width and got.height > got.width  # stored 3:2 landscape, shown portrait
    assert _difference(got, full) < 3.0
    assert _difference(got.transpose(Image.Transpose.ROTATE_180), full) > 10  # the way up matters


def test_a_progressive_primary_is_checked_and_its_preview_used(picture: Image.Image) -> None:
    data = camera_jpeg(picture, mpf_preview=PREVIEW, progressive=True)
    got = decode(data, SIDE)
    assert _used() == {"used: JPEG MPF preview": 1}
    assert _difference(got, _full(data)) < 3.0


@pytest.mark.parametrize("preview", [(810, 540), (672, 448)])
def test_vectors_from_the_preview_agree_with_the_full_decode(
    photos: dict[str, Image.Image], efficientnet: Any, preview: tuple[int, int]
) -> None:
    """Real photos as a camera writes them (2400x1600 with a large thumbnail): EfficientNet-Lite0
    at fp32, cosine to the full decode's vector >= 0.99 each. 448 is exactly twice the decode
    side: reduced to 224 it reached the model unresampled while the full decode (600x400) was
    resampled by it (real photos: 0.96-0.98; these grainy ones stay over 0.99 either way, so
    ``test_the_preview_is_sized_as_the_primarys_own_decode`` pins the size)."""
    names = ["chelsea", "coffee", "astronaut", "rocket", "motorcycle_left"]
    files = [
        camera_jpeg(grainy(np.asarray(photos[n].convert("RGB")), (2400, 1600), seed=i), mpf_preview=preview)
        for i, n in enumerate(names)
    ]
    side = efficientnet.decode_side
    reduced = efficientnet.embed_images([decode(f, side) for f in files])
    assert _used() == {"used: JPEG MPF preview": len(files)}
    full = efficientnet.embed_images([decode(f, side, use_previews=False) for f in files])
    cosines = np.sum(reduced * full, axis=1) / (np.linalg.norm(reduced, axis=1) * np.linalg.norm(full, axis=1))
    assert cosines.min() >= 0.99, dict(zip(names, cosines.round(4)))


def test_the_pipeline_indexes_camera_jpegs_from_their_previews(
    tmp_path: Path, picture: Image.Image, plain: bytes, efficientnet: Any
) -> None:
    """Through the real pipeline: a camera JPEG from its preview, one whose preview is damaged
    from its primary, both indexed."""
    good, broken = tmp_path / "good.jpg", tmp_path / "broken.jpg"
    good.write_bytes(camera_jpeg(picture, mpf_preview=(810, 540), orientation=8))  # over twice EfficientNet's 224
    damaged = bytearray(plain)
    preview_at = bytes(damaged).rindex(b"\xff\xd8\xff")
    damaged[preview_at + 700 :] = b"\x00" * (len(damaged) - preview_at - 700)
    broken.write_bytes(bytes(damaged))
    with (
        Catalog(tmp_path / "catalog.sqlite3") as catalog,
        Pipeline(catalog, {"efficientnet": efficientnet}) as pipeline,
    ):
        done = pipeline.process([str(good), str(broken)])
        assert done["failed"] == {}
        ids, _ = catalog.vectors_under(str(tmp_path), efficientnet.name, efficientnet.model_id, efficientnet.dim)
    assert len(ids) == 2
    assert _used() == {"used: JPEG MPF preview": 1}


def test_a_top_denser_than_the_bytes_read_for_it_falls_back(picture: Image.Image) -> None:
    """The check reads a quarter of a sequential file for the top sixteenth of its rows: a top
    all detail over a flat rest runs out of bytes, and the primary is decoded whole."""
    noisy = np.full((SIZE[1], SIZE[0], 3), 128, dtype=np.uint8)
    noisy[:160] = np.random.default_rng(3).integers(0, 256, (160, SIZE[0], 3), dtype=np.uint8)
    odd = Image.fromarray(noisy)
    data = camera_jpeg(odd, mpf_preview=PREVIEW)
    got = decode(data, SIDE)
    assert previews.counts.snapshot() == {"declined: top rows unreadable": 1}
    assert np.array_equal(np.asarray(got), np.asarray(_full(data)))
    decode(camera_jpeg(odd, mpf_preview=PREVIEW, progressive=True), SIDE)  # progressive: read whole
    assert _used() == {"used: JPEG MPF preview": 1}


def _neutral_top(picture: Image.Image) -> Image.Image:
    """The picture under a grey overcast sky (its top 150 rows near-neutral, with grain)."""
    pixels = np.asarray(picture).copy()
    sky = np.linspace(170, 210, SIZE[0])[None, :, None] + np.random.default_rng(0).normal(0, 3, (150, SIZE[0], 1))
    pixels[:150] = np.clip(sky, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def test_a_black_and_white_primary_is_not_decoded_from_its_colour_preview(picture: Image.Image) -> None:
    """An editor's black-and-white conversion kept the camera's colour preview; the grey sky
    on top passes the top-row check, the component count does not."""
    colour = _neutral_top(picture)
    data = camera_jpeg(colour.convert("L"), mpf_preview=PREVIEW, preview_picture=colour)
    got = decode(data, SIDE)
    assert previews.counts.snapshot() == {"declined: mode differs": 1}
    assert np.array_equal(np.asarray(got), np.asarray(_full(data)))
    pixels = np.asarray(got, dtype=np.int16)
    assert (pixels.max(2) - pixels.min(2)).max() == 0  # grey, as the primary
    decode(camera_jpeg(colour, mpf_preview=PREVIEW), SIDE)  # the colour original's preview is used
    assert _used() == {"used: JPEG MPF preview": 1}


def test_many_entries_of_one_stale_preview_cost_one_decode(
    picture: Image.Image, photos: dict[str, Image.Image], monkeypatch: pytest.MonkeyPatch
) -> None:
    """64 MPF entries naming one stale preview: decoded and compared once, not 64 times."""
    decoded = []
    original = jpeg_previews._decode

    def counted(*args: Any) -> Image.Image:
        decoded.append(args)
        return original(*args)

    monkeypatch.setattr(jpeg_previews, "_decode", counted)
    stale = _stale(picture, photos, "another photo")
    data = camera_jpeg(picture, mpf_preview=PREVIEW, preview_picture=stale, mpf_copies=64)
    got = decode(data, SIDE)
    assert previews.counts.snapshot() == {"declined: content differs": 1}
    assert len(decoded) == 1
    assert np.array_equal(np.asarray(got), np.asarray(_full(data)))


def test_an_unreadable_exif_thumbnail_leaves_the_mpf_preview_usable(picture: Image.Image) -> None:
    """Each source is read on its own: garbage for the EXIF thumbnail, or an IFD1 pointer past
    its APP1, and the file's good MPF preview is still used."""
    data = camera_jpeg(picture, mpf_preview=PREVIEW, exif_thumbnail=(150, 100))
    thumbnail_at = data.index(b"\xff\xd8\xff", 4)
    garbage = data[: thumbnail_at + 3] + bytes(200) + data[thumbnail_at + 203 :]
    ifd1_pointer = data.index(b"II*\0") + 8 + 2 + 12
    astray = data[:ifd1_pointer] + struct.pack("<I", 60000) + data[ifd1_pointer + 4 :]
    for damaged in (garbage, astray):
        previews.counts.clear()
        decode(damaged, SIDE)
        assert previews.counts.snapshot() == {"used: JPEG MPF preview": 1}
    previews.counts.clear()
    exif_only = camera_jpeg(picture, exif_thumbnail=(150, 100))  # its APP1 laid out as above
    decode(exif_only[:ifd1_pointer] + struct.pack("<I", 60000) + exif_only[ifd1_pointer + 4 :], 100)
    assert previews.counts.snapshot() == {"declined: EXIF unreadable": 1}


def test_a_primary_over_the_pixel_cap_is_refused_as_the_full_decode_refuses_it(plain: bytes) -> None:
    limits = ImageLimits(max_pixels=900_000)  # under the 1200x800 primary, over its 480x320 preview
    with pytest.raises(ImageError, match="cap") as with_previews:
        decode(plain, SIDE, limits)
    with pytest.raises(ImageError) as without:
        decode(plain, SIDE, limits, use_previews=False)
    assert (with_previews.value.reason, str(with_previews.value)) == (without.value.reason, str(without.value))
    assert with_previews.value.reason == Reason.TOO_LARGE
    assert _used() == {}


def test_a_preview_as_large_as_the_primary_is_not_used(picture: Image.Image) -> None:
    data = camera_jpeg(picture, mpf_preview=SIZE)
    decode(data, SIDE)
    assert previews.counts.snapshot() == {"declined: not smaller": 1}


def test_the_mode_says_which_previews_stand_in(plain: bytes) -> None:
    """The 480x320 preview for a 224 side: under twice it, "faithful" (the default) declines it,
    "fast" takes it, "off" looks at none; at 160 "faithful" takes it too."""
    full = _full(plain)
    for limits, said in [
        (ImageLimits(), {"declined: under 2x the decode side": 1}),
        (ImageLimits(previews="fast"), {"used: JPEG MPF preview": 1}),
        (ImageLimits(previews="off"), {}),
    ]:
        previews.counts.clear()
        got = decode(plain, 224, limits)
        assert previews.counts.snapshot() == said, limits.previews
        assert np.array_equal(np.asarray(got), np.asarray(decode(plain, 224, use_previews=False))) == (not _used())
    previews.counts.clear()
    assert _difference(decode(plain, SIDE, ImageLimits()), full) < 3.0
    assert previews.counts.snapshot() == {"used: JPEG MPF preview": 1}
    with pytest.raises(ValueError, match="previews mode 'quick'"):  # made in code, past config.py's check
        ImageLimits(previews="quick")


@pytest.mark.parametrize(
    ("written", "mode"), [("true", "faithful"), ("false", "off"), ('"fast"', "fast"), ('"faithful"', "faithful")]
)
def test_the_previews_setting_reads_modes_and_the_old_booleans(tmp_path: Path, written: str, mode: str) -> None:
    from imgsearchd.config import load_config

    (tmp_path / "imgsearchd.toml").write_text(f"[images]\npreviews = {written}\n")
    assert ImageLimits.from_config(load_config(tmp_path / "imgsearchd.toml").images).previews == mode


@pytest.mark.parametrize("written", ['"quick"', "1", '"Fast"'])
def test_a_bad_previews_mode_names_the_key_and_the_file(tmp_path: Path, written: str) -> None:
    from imgsearchd.config import ConfigError, load_config

    path = tmp_path / "imgsearchd.toml"
    path.write_text(f"[images]\npreviews = {written}\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(path) in str(error.value) and "images.previews" in str(error.value)


def test_a_reload_changes_the_mode_live(tmp_path: Path, picture: Image.Image, efficientnet: Any) -> None:
    """SIGHUP's ``apply_live`` hands the running pipeline the new mode: the next file is decoded by it."""
    from imgsearchd.config import load_config
    from imgsearchd.service.reload import apply_live

    settings = tmp_path / "imgsearchd.toml"
    settings.write_text('[images]\npreviews = "fast"\n')
    config = load_config(settings)
    first, second = tmp_path / "first.jpg", tmp_path / "second.jpg"
    first.write_bytes(camera_jpeg(picture, mpf_preview=PREVIEW))  # 320: covers EfficientNet's 224, under twice it
    second.write_bytes(camera_jpeg(picture.transpose(Image.Transpose.FLIP_LEFT_RIGHT), mpf_preview=PREVIEW))
    with (
        Catalog(tmp_path / "catalog.sqlite3") as catalog,
        Pipeline(catalog, {"efficientnet": efficientnet}, ImageLimits.from_config(config.images)) as pipeline,
    ):
        pipeline.process([str(first)])
        assert previews.counts.snapshot() == {"used: JPEG MPF preview": 1}
        settings.write_text('[images]\npreviews = "faithful"\n')
        new = config.reload()
        apply_live(new, ImageLimits.from_config(new.images), pipeline, None, [])
        previews.counts.clear()
        pipeline.process([str(second)])
        assert previews.counts.snapshot() == {"declined: under 2x the decode side": 1}


def test_faithful_mode_declines_a_coarsely_coded_preview(picture: Image.Image) -> None:
    """Large enough but at JPEG quality 75 (as phones' EXIF thumbnails): "faithful" decodes the
    primary (q75 previews twice the side: cosine 0.984 mean, 0.89 min on real photos), "fast"
    takes it; the same size at quality 90 is taken."""
    coarse = camera_jpeg(picture, mpf_preview=PREVIEW, preview_quality=75)
    got = decode(coarse, SIDE)
    assert previews.counts.snapshot() == {"declined: quality under 90": 1}
    assert np.array_equal(np.asarray(got), np.asarray(_full(coarse)))
    previews.counts.clear()
    decode(coarse, SIDE, ImageLimits(previews="fast"))
    decode(camera_jpeg(picture, mpf_preview=PREVIEW, preview_quality=90), SIDE)
    assert previews.counts.snapshot() == {"used: JPEG MPF preview": 2}


def test_the_preview_is_sized_as_the_primarys_own_decode(picture: Image.Image) -> None:
    """The 480x320 preview becomes the 300x200 that the 1200x800 primary's draft (1/4) gives for
    160, not 240x160 (halved): the model resamples both pictures alike; turned, it is 200x300."""
    assert decode(camera_jpeg(picture, mpf_preview=PREVIEW), SIDE).size == (300, 200)
    turned = camera_jpeg(picture, mpf_preview=PREVIEW, orientation=8)
    assert decode(turned, SIDE).size == _full(turned).size == (200, 300)
    assert _used() == {"used: JPEG MPF preview": 2}


def test_a_preview_smaller_than_the_primarys_decode_is_not_enlarged(picture: Image.Image) -> None:
    """ "fast" mode takes a 240x160 preview for 160 as it is: the primary's decode (300x200) is larger."""
    data = camera_jpeg(picture, mpf_preview=(240, 160))
    assert decode(data, SIDE, ImageLimits(previews="fast")).size == (240, 160)
    assert _used() == {"used: JPEG MPF preview": 1}


def test_a_coarse_exif_thumbnail_hands_on_to_a_good_mpf_preview(picture: Image.Image) -> None:
    """A q50 EXIF thumbnail large enough for "faithful" is declined for its quality, and the
    larger MPF preview after it (q95) is still tried and used."""
    data = camera_jpeg(picture, exif_thumbnail=PREVIEW, exif_quality=50, mpf_preview=(600, 400), preview_quality=95)
    decode(data, SIDE)
    assert previews.counts.snapshot() == {"used: JPEG MPF preview": 1}
    previews.counts.clear()
    decode(camera_jpeg(picture, exif_thumbnail=PREVIEW, exif_quality=50), SIDE)
    assert previews.counts.snapshot() == {"declined: quality under 90": 1}  # it was declined for its quality


def _retabled(data: bytes, table: int, renumber: bool) -> bytes:
    """The file with its last JPEG's (the preview's) first component reading quantisation table
    ``table``; ``renumber``: that JPEG's table 0 is stored under that id too (a valid file)."""
    out = bytearray(data)
    at = bytes(out).rindex(b"\xff\xd8\xff") + 2
    while out[at + 1] != 0xDA:
        (length,) = struct.unpack_from(">H", out, at + 2)
        if out[at + 1] == 0xDB and renumber:
            entry = at + 4
            while entry < at + 2 + length:
                precision = out[entry] >> 4
                if out[entry] & 15 == 0:
                    out[entry] = precision << 4 | table
                entry += 1 + 64 * (precision + 1)
        elif out[at + 1] in (0xC0, 0xC1, 0xC2):
            out[at + 12] = table  # the first component's table id (after P, Y, X, Nf, its id and sampling)
        at += 2 + length
    return bytes(out)


def test_the_quality_is_read_off_the_luminance_components_own_table(picture: Image.Image) -> None:
    """A preview whose luminance table is stored as id 2 reads as its quality (95: used); one whose
    luminance component names a table the file lacks is declined as unreadable, not as coarse."""
    data = camera_jpeg(picture, mpf_preview=PREVIEW, preview_quality=95)
    got = decode(_retabled(data, 2, renumber=True), SIDE)
    assert previews.counts.snapshot() == {"used: JPEG MPF preview": 1}
    assert _difference(got, _full(data)) < 3.0
    previews.counts.clear()
    decode(_retabled(data, 3, renumber=False), SIDE)
    assert previews.counts.snapshot() == {"declined: quality unreadable": 1}
