"""images: every format, every tricky file, every failure as a typed reason."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgsearchd.media import files, images, memory
from imgsearchd.media import rgb as media_rgb
from imgsearchd.media.failures import ImageError, Reason
from imgsearchd.media.limits import ImageLimits

import image_factory as make
from helpers import without_file_permissions_bypass


def reason_of(path: Path, limits: ImageLimits = ImageLimits(), min_side: int = 224) -> str:
    with pytest.raises(ImageError) as caught:
        images.load_image(str(path), min_side, limits)
    return caught.value.reason


def test_zero_bytes_is_empty(tmp_path):
    assert reason_of(make.zero_bytes(tmp_path / "empty.jpg")) == Reason.EMPTY


def test_truncated_jpeg(tmp_path, photos):
    assert reason_of(make.truncated_jpeg(tmp_path / "cut.jpg", photos["chelsea"])) == Reason.TRUNCATED


def test_text_named_jpg_is_not_an_image(tmp_path):
    assert reason_of(make.text_as_jpeg(tmp_path / "notes.jpg")) == Reason.NOT_AN_IMAGE


def test_png_header_claiming_30000_squared_is_refused_before_decoding(tmp_path):
    path = make.png_claiming_size(tmp_path / "bomb.png")
    started = time.monotonic()
    with pytest.raises(ImageError) as caught:
        images.load_image(str(path), 224)
    assert caught.value.reason == Reason.TOO_LARGE
    assert "30000x30000" in caught.value.detail
    assert time.monotonic() - started < 1.0  # refused from the header, nothing allocated


def test_pixel_cap_is_configurable(tmp_path, photos):
    path = make.large_jpeg(tmp_path / "big.jpg", photos["coffee"], 400, 300)
    assert reason_of(path, ImageLimits(max_pixels=100_000)) == Reason.TOO_LARGE
    assert images.load_image(str(path), 224, ImageLimits(max_pixels=120_000)).mode == "RGB"


def test_file_size_cap(tmp_path, photos):
    path = make.large_jpeg(tmp_path / "big.jpg", photos["coffee"], 400, 300)
    assert reason_of(path, ImageLimits(max_file_bytes=1000)) == Reason.TOO_LARGE


def test_missing_file_and_folder(tmp_path):
    assert reason_of(tmp_path / "nope.jpg") == Reason.MISSING
    (tmp_path / "dir.jpg").mkdir()
    assert reason_of(tmp_path / "dir.jpg") == Reason.NOT_A_FILE


def test_unreadable_file_is_reported_as_unreadable(tmp_path, photos):
    path = make.large_jpeg(tmp_path / "secret.jpg", photos["chelsea"], 64, 64)
    path.chmod(0)
    code = (
        "import sys; from imgsearchd.media import failures, files\n"
        "try:\n    files.read_file(sys.argv[1])\nexcept failures.ImageError as e:\n    print(e.reason)\n"
    )
    out = subprocess.run(
        [*without_file_permissions_bypass(), sys.executable, "-c", code, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.stdout.strip() == Reason.UNREADABLE, out.stderr


def test_cmyk_jpeg_keeps_its_colours(tmp_path, photos):
    path = make.cmyk_jpeg(tmp_path / "cmyk.jpg", photos["coffee"])
    assert Image.open(path).mode == "CMYK"
    picture = images.load_image(str(path))
    assert picture.mode == "RGB" and picture.size == photos["coffee"].size
    diff = np.abs(np.asarray(picture, dtype=float) - np.asarray(photos["coffee"], dtype=float)).mean()
    assert diff < 12, diff


def test_16bit_png_keeps_its_tonal_range(tmp_path):
    path = make.png_16bit(tmp_path / "deep.png")
    assert Image.open(path).mode.startswith("I")
    grey = np.asarray(images.load_image(str(path)))[..., 0]
    assert grey[0, 0] <= 2 and grey[0, -1] >= 250
    # a smooth ramp, not clipped to white: the middle is mid-grey
    assert 100 < grey[0, grey.shape[1] // 2] < 156


def test_palette_png_transparency_flattened_onto_white(tmp_path):
    picture = images.load_image(str(make.palette_png_with_transparency(tmp_path / "pal.png")))
    assert picture.mode == "RGB"
    assert picture.getpixel((5, 5)) == (255, 255, 255)
    assert picture.getpixel((60, 5)) == make.RED


def test_rgba_transparency_flattened_onto_white(tmp_path):
    picture = images.load_image(str(make.rgba_png_half_transparent(tmp_path / "rgba.png")))
    assert picture.getpixel((5, 5)) == (255, 255, 255)
    assert picture.getpixel((60, 5)) == make.BLUE


def test_exif_orientation_applied(tmp_path):
    picture = images.load_image(str(make.exif_rotated_jpeg(tmp_path / "rotated.jpg")))
    assert picture.size == (100, 200)  # shown portrait
    top = np.asarray(picture)[20, 50]
    bottom = np.asarray(picture)[180, 50]
    assert top[0] > 200 and top[2] < 60, top  # red on top
    assert bottom[2] > 200 and bottom[0] < 60, bottom


def test_animated_gif_gives_first_frame(tmp_path):
    picture = images.load_image(str(make.animated_gif(tmp_path / "anim.gif")))
    assert picture.mode == "RGB"
    assert picture.getpixel((10, 10)) == make.RED


@pytest.mark.parametrize(
    "fmt,suffix", [("WEBP", ".webp"), ("BMP", ".bmp"), ("TIFF", ".tif"), ("PNG", ".png"), ("GIF", ".gif")]
)
def test_every_supported_format_decodes(tmp_path, photos, fmt, suffix):
    path = tmp_path / f"photo{suffix}"
    photos["astronaut"].save(path, fmt)
    picture = images.load_image(str(path), 224)
    assert picture.mode == "RGB" and min(picture.size) >= 224


def test_unsupported_format_is_not_an_image(tmp_path, photos):
    path = tmp_path / "photo.jpg"
    photos["chelsea"].save(path, "PPM")  # Pillow reads PPM, but we do not accept it
    assert reason_of(path) == Reason.NOT_AN_IMAGE


def test_large_jpeg_is_decoded_at_reduced_size(tmp_path, photos):
    path = make.large_jpeg(tmp_path / "24mp.jpg", photos["chelsea"], 6000, 4000)
    picture = images.load_image(str(path), 224)
    assert 224 <= min(picture.size) < 448, picture.size
    assert picture.size[0] * 2 == picture.size[1] * 3  # aspect kept
    with Image.open(path) as probe:
        probe.draft("RGB", (224, 224))
        assert probe.size[0] < 6000  # Pillow's draft mode did the reducing at decode time


def test_min_side_zero_keeps_full_size(tmp_path, photos):
    path = make.large_jpeg(tmp_path / "mid.jpg", photos["chelsea"], 1200, 800)
    assert images.load_image(str(path), 0).size == (1200, 800)


def test_content_hash_changes_with_content_only(tmp_path, photos):
    a = make.large_jpeg(tmp_path / "a.jpg", photos["chelsea"], 64, 64)
    b = tmp_path / "b.jpg"
    b.write_bytes(a.read_bytes())
    c = make.large_jpeg(tmp_path / "c.jpg", photos["coffee"], 64, 64)
    ha, hb, hc = (files.read_file(str(p)).content_hash for p in (a, b, c))
    assert ha == hb != hc


def test_read_file_stat_matches_content(tmp_path, photos):
    path = make.large_jpeg(tmp_path / "a.jpg", photos["chelsea"], 64, 64)
    file = files.read_file(str(path))
    st = os.stat(path)
    assert (file.size, file.mtime_ns) == (st.st_size, st.st_mtime_ns)


def test_exif_orientation_applied_after_shrinking(tmp_path):
    """The turn is read from the full picture's EXIF and applied to the shrunk one."""
    picture = images.load_image(str(make.exif_rotated_jpeg(tmp_path / "rotated.jpg", 2400, 1200)), 224)
    assert picture.width < picture.height and min(picture.size) >= 224  # portrait, shrunk
    assert np.asarray(picture)[10, picture.width // 2][0] > 200  # red on top


@pytest.mark.parametrize("mode", ["L", "RGB"])
def test_shrinking_before_the_rgb_conversion_changes_no_colour(tmp_path, photos, mode):
    """Grey and RGB pictures are shrunk before to_rgb; the result is what converting first
    gave, to the bit."""
    path = tmp_path / "big.png"
    photos["astronaut"].convert(mode).resize((1500, 1500)).save(path)
    expected = media_rgb.to_rgb(Image.open(path)).reduce(6)
    picture = images.load_image(str(path), 224)
    assert picture.size == expected.size == (250, 250)
    assert np.array_equal(np.asarray(picture), np.asarray(expected))


def _mode_picture(photo: Image.Image, mode: str) -> Image.Image:
    """The photo in ``mode``, with alpha that varies where the mode has it."""
    rgb = photo.convert("RGB").resize((1500, 1000))
    if mode in ("RGBA", "LA"):
        alpha = Image.linear_gradient("L").resize(rgb.size)
        return _with_alpha(rgb.convert(mode[:-1]), alpha)
    if mode == "P":
        palette = rgb.quantize(64)
        palette.info["transparency"] = 3
        return palette
    if mode == "I;16":
        return Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.uint16) * 257)
    return rgb.convert(mode)


def _with_alpha(image: Image.Image, alpha: Image.Image) -> Image.Image:
    image.putalpha(alpha)
    return image


@pytest.mark.parametrize(
    "mode,suffix", [("RGBA", ".png"), ("LA", ".png"), ("P", ".png"), ("I;16", ".png"), ("CMYK", ".tif")]
)
def test_conversion_in_bands_gives_the_whole_picture_conversion(tmp_path, photos, monkeypatch, mode, suffix):
    """Modes that convert before shrinking do it a band of rows at a time: same pixels."""
    path = tmp_path / f"big{suffix}"
    picture = _mode_picture(photos["astronaut"], mode)
    picture.save(path, transparency=3) if mode == "P" else picture.save(path)
    expected = media_rgb.to_rgb(Image.open(path)).reduce(4)
    monkeypatch.setattr(images, "_BAND_PIXELS", 100_000)  # 16 bands of 64 rows
    shrunk = images.load_image(str(path), 224)
    assert shrunk.size == expected.size == (375, 250)
    assert np.array_equal(np.asarray(shrunk), np.asarray(expected))


def test_a_fifo_in_place_of_a_file_is_refused_without_blocking(tmp_path):
    """Swapped in between the stat and the open, a FIFO would block the loader for ever."""
    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)
    started = time.monotonic()
    with pytest.raises(ImageError) as caught:
        files.open_regular(str(fifo))
    assert caught.value.reason == "not_a_file" and time.monotonic() - started < 2


def test_a_link_out_of_the_roots_is_refused_on_the_open_file(tmp_path):
    inside, outside = tmp_path / "inside", tmp_path / "outside"
    inside.mkdir()
    outside.mkdir()
    Image.new("RGB", (8, 8)).save(outside / "secret.png")
    (inside / "x.png").symlink_to(outside / "secret.png")
    with pytest.raises(ImageError) as caught:
        files.read_file(str(inside / "x.png"), roots=[str(inside)])
    assert caught.value.reason == "outside_roots" and "secret.png" in caught.value.detail
    assert files.read_file(str(inside / "x.png"), roots=[str(tmp_path)]).size > 0


# The decode budget counts what each decoder allocates (issue 26): a lossless WebP of 16383x10860
# is 6.8 KB on disk and took 2.7 GiB to decode, counted as 4 bytes a pixel.


@pytest.fixture(scope="module")
def webps(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("webp")
    return {
        "huge": make.solid_webp(root / "huge.webp", 16383, 10860),  # the issue's: 178 MP, under the pixel cap
        "wide": make.solid_webp(root / "wide.webp", 16383, 5400),  # 88 MP: 1.4 GB each
    }


@pytest.fixture
def budget(monkeypatch) -> memory.PixelBudget:
    """A fresh process budget, to see what the decodes held."""
    fresh = memory.PixelBudget()
    monkeypatch.setattr(memory, "DECODES", fresh)
    return fresh


def _webp_bytes(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (40, 90, 200)).save(buf, "WEBP", lossless=True)
    return buf.getvalue()


def test_a_webp_that_needs_more_than_the_whole_budget_is_refused_before_decoding(webps, budget, monkeypatch):
    monkeypatch.setattr(images, "_open", lambda *args: pytest.fail("refused after Pillow opened it"))
    started = time.monotonic()
    with pytest.raises(ImageError) as caught:
        images.load_image(str(webps["huge"]), 224)
    assert time.monotonic() - started < 0.5  # measured 0.1 ms: the size is read from the first 30 bytes
    assert caught.value.reason == Reason.TOO_LARGE
    assert caught.value.detail == (
        "16383x10860 WebP needs about 2.9 GB to decode, more than the decode budget "
        "(images.decode_budget_megapixels = 256: 1.0 GB)"
    )
    assert budget.peak == 0  # nothing held: nothing decoded


def test_a_webp_is_counted_at_what_its_decoder_allocates(budget):
    """libwebp and Pillow hold 16 bytes a pixel (bench/bench_decode_memory.py): a budget of one
    picture's 4-byte pixels no longer lets it in, one of its real cost does."""
    data = _webp_bytes(1000, 750)
    cost = memory.budget_pixels(750_000, memory.bytes_per_pixel("WEBP", "RGB"))
    assert cost >= 750_000 * 16 // 4
    assert images.decode(data, 224, ImageLimits(decode_budget_pixels=cost)).size == (334, 250)
    assert budget.peak == cost
    with pytest.raises(ImageError) as caught:
        images.decode(data, 224, ImageLimits(decode_budget_pixels=cost - 1))
    assert caught.value.reason == Reason.TOO_LARGE and "1000x750 WebP needs" in caught.value.detail
    assert images.decode(data, 224).size == (334, 250)  # the default budget: decoded


def test_four_88_mp_webps_at_once_are_all_refused_and_nothing_is_held(webps, budget):
    """D9: four 16383x5400 WebPs posted at once peaked at +2.7 GB, one after the other."""
    data = webps["wide"].read_bytes()

    def reason(_: int) -> str:
        with pytest.raises(ImageError) as caught:
            images.decode(data, 224)
        return caught.value.reason

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(reason, range(4))) == [Reason.TOO_LARGE] * 4
    assert budget.peak == 0


def test_webps_that_fit_two_at_a_time_run_two_at_a_time_within_the_budget(budget, monkeypatch):
    data = _webp_bytes(1000, 1000)
    cost = memory.budget_pixels(1_000_000, memory.bytes_per_pixel("WEBP", "RGB"))
    assert cost >= 1_000_000 * 16 // 4  # measured: 16 bytes a pixel
    limits = ImageLimits(decode_budget_pixels=cost * 5 // 2)  # two fit, not three
    two_inside = threading.Barrier(2, timeout=20)  # each decode waits inside the budget for a second one
    fit = images._fit
    monkeypatch.setattr(images, "_fit", lambda *args: (two_inside.wait(), fit(*args))[1])
    with ThreadPoolExecutor(4) as pool:
        sizes = list(pool.map(lambda _: images.decode(data, 224, limits).size, range(4)))
    assert sizes == [(250, 250)] * 4
    assert budget.peak == 2 * cost <= limits.decode_budget_pixels


def test_the_default_budget_decodes_photos_at_the_pixel_cap_and_refuses_big_webps():
    """Decision (the default of images.decode_budget_megapixels, 256): a picture at the pixel cap
    decodes in the formats photos are kept in; WebP, AVIF and HEIF are refused well below it."""
    limits = ImageLimits()

    def fits(fmt: str, mode: str, megapixels: float, bits: int = 8, subsampled: bool = True) -> bool:
        cost = memory.budget_pixels(int(megapixels * 1e6), memory.bytes_per_pixel(fmt, mode, bits, subsampled))
        return cost <= limits.decode_budget_pixels

    cap = limits.max_pixels / 1e6
    for fmt, mode in [("PNG", "RGB"), ("PNG", "RGBA"), ("TIFF", "RGB"), ("TIFF", "RGBA"), ("TIFF", "CMYK")]:
        assert fits(fmt, mode, cap), (fmt, mode)
    assert fits("JPEG", "RGB", cap) and fits("JPEG", "CMYK", cap)  # before draft mode shrinks them
    assert fits("WEBP", "RGB", 60) and not fits("WEBP", "RGB", 66)
    assert fits("AVIF", "RGB", 90) and not fits("AVIF", "RGB", 120)
    assert fits("HEIF", "RGB", 48, bits=10) and fits("HEIF", "RGB", 130) and not fits("HEIF", "RGB", 150)
