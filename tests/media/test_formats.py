"""HEIC/HEIF, AVIF and camera RAW behind the one image loader: real files made here, a real daemon.

HEIC files are written by pillow-heif's encoder, AVIF by Pillow's, DNG by tifffile (a real
Bayer mosaic with the DNG tags LibRaw needs; LibRaw reads them: rawpy cannot write).
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, TiffImagePlugin

from imgsearchd.ingest.folders import retry_due
from imgsearchd.ingest.pipeline import Pipeline
from imgsearchd.media import files, formats, images, memory
from imgsearchd.media.failures import ImageError, Reason
from imgsearchd.media.limits import ImageLimits
from imgsearchd.store.catalog import Catalog
from imgsearchd.store.rows import FailedFile

import image_factory as make
from helpers import REPO, free_port, live_server, server_config, wait_for
from image_factory import dng_bytes, heif_bytes, jpeg_bytes
from served import serve

pytestmark = pytest.mark.skipif(
    not (formats.HEIF_AVAILABLE and formats.AVIF_AVAILABLE and formats.RAW_AVAILABLE),
    reason=f"an optional decoder is missing here: {formats.available()}",
)

NAMES = ("chelsea", "coffee", "astronaut", "rocket")
KINDS = ("heic", "avif", "jpg", "png", "dng")


def write_copies(folder: Path, photos) -> dict[str, list[Path]]:
    """Every photo as HEIC, AVIF, JPEG, PNG and DNG (every other DNG with a camera preview)."""
    folder.mkdir(parents=True, exist_ok=True)
    copies: dict[str, list[Path]] = {}
    for i, name in enumerate(NAMES):
        photo = photos[name].convert("RGB")
        preview = photo if i % 2 == 0 else None
        data = {
            "heic": heif_bytes(photo, "HEIF"),
            "avif": heif_bytes(photo, "AVIF"),
            "jpg": jpeg_bytes(photo),
            "png": _png(photo),
            "dng": dng_bytes(photo, preview=preview),
        }
        copies[name] = []
        for kind, content in data.items():
            path = folder / f"{name}.{kind}"
            path.write_bytes(content)
            copies[name].append(path)
    return copies


def _png(photo: Image.Image) -> bytes:
    buf = io.BytesIO()
    photo.save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def library(tmp_path_factory, photos):
    root = tmp_path_factory.mktemp("formats")
    copies = write_copies(root / "photos", photos)
    with live_server(server_config(root, server={"allowed_roots": [str(root)]})) as live:
        status, body = live.get("/add", image=str(root / "photos"))
        assert status == 202, body
        job = live.wait_job(body["job"])
        assert job["state"] == "done", job
        live.paths = {path.name: path for paths in copies.values() for path in paths}
        live.root = root
        yield live


def test_every_format_is_indexed_and_finds_its_siblings_first(library):
    status, stats = library.get("/stats")
    assert status == 200
    assert stats["failed"]["by_reason"] == {}, stats["failed"]
    assert stats["decoders"] == {"heif": True, "avif": True, "raw": True}
    assert stats["images"] == stats["files"] == len(NAMES) * len(KINDS), stats
    for path in library.paths.values():
        siblings = {str(p) for p in library.paths.values() if p.stem == path.stem}
        assert len(siblings) == len(KINDS)
        status, body = library.get("/search", image=str(path), limit=len(KINDS))
        assert status == 200, body
        top = {r["image"] for r in body["results"]}
        assert top == siblings, (path.name, [(Path(r["image"]).name, r["distance"]) for r in body["results"]])


def test_a_heic_query_uploaded_over_http(library, photos):
    data = heif_bytes(photos["coffee"].resize((300, 200)), "HEIF")  # not a file in the library
    assert formats.sniff(data) == "HEIC"
    status, body = library.post("/search", data, "application/octet-stream", limit=len(KINDS))
    assert status == 200, body
    assert {Path(r["image"]).stem for r in body["results"]} == {"coffee"}


def test_originals_are_sent_with_their_own_content_type(library):
    expected = {"heic": "image/heic", "avif": "image/avif", "dng": "image/x-adobe-dng", "jpg": "image/jpeg"}
    for path in (p for p in library.paths.values() if p.stem == "chelsea"):
        kind = path.suffix[1:]
        if kind not in expected:
            continue
        query = urllib.parse.urlencode({"image": str(path)})
        with urllib.request.urlopen(f"{library.base}/original?{query}", timeout=30) as answer:
            assert answer.headers["Content-Type"] == expected[kind]
            assert answer.read() == path.read_bytes()


@pytest.mark.process
def test_a_daemon_without_pillow_heif_and_rawpy_starts_and_indexes_the_rest(tmp_path, photos):
    """``imgsearchd serve`` where importing pillow_heif and rawpy really fails (stand-in modules
    that raise ImportError come first on its PYTHONPATH)."""
    blockers = tmp_path / "blockers"
    blockers.mkdir()
    for module in ("pillow_heif", "rawpy"):
        (blockers / f"{module}.py").write_text(f"raise ImportError('{module}: not installed (blocked by the test)')\n")
    watched = tmp_path / "watched"
    watched.mkdir()
    photo = photos["motorcycle_right"]
    (watched / "phone.heic").write_bytes(heif_bytes(photo, "HEIF"))
    (watched / "camera.dng").write_bytes(dng_bytes(photo))
    (watched / "phone.avif").write_bytes(heif_bytes(photo, "AVIF"))
    (watched / "plain.jpg").write_bytes(jpeg_bytes(photo))
    path = os.pathsep.join([str(blockers), str(REPO / "build" / "pp"), os.environ.get("PYTHONPATH", "")])
    port = free_port()
    config = server_config(tmp_path, server={"port": port}, watch={"directories": [str(watched)]})
    with serve(config, port, prefix=("env", f"PYTHONPATH={path}")) as served:
        stats = wait_for(
            lambda: (s := served.get("/stats")[1])["images"] == 2 and s["failed"]["total"] == 2 and s,
            60,
            "the JPEG and AVIF to be indexed and the HEIC and DNG to fail",
        )
        assert stats["failed"]["by_reason"] == {"missing_library": 2}, stats["failed"]
        assert stats["decoders"] == {"heif": False, "avif": True, "raw": False}
        details = {Path(f["path"]).name: f["detail"] for f in stats["failed"]["recent"]}
        assert "pip install pillow-heif" in details["phone.heic"], details
        assert "imgsearchd[raw]" in details["camera.dng"], details
        status, body = served.request("POST", "/search", (watched / "phone.heic").read_bytes(), "image/heic")
        assert status == 415 and "pillow-heif" in body["error"], body
    assert served.proc.returncode == 0, served.log_tail()
    log = served.log.read_text()
    assert "HEIC files will fail with reason missing_library" in log
    assert "RAW files will fail with reason missing_library: camera RAW needs rawpy" in log


def test_missing_library_is_tried_again_after_a_restart_not_on_a_timer(tmp_path, photos, efficientnet, monkeypatch):
    """A process cannot gain a decoder while it runs: its own missing_library failures are not
    read again (a RAW library would be re-read daily); an earlier process's are, once the decoder is here."""
    path = tmp_path / "camera.dng"
    path.write_bytes(dng_bytes(photos["chelsea"]))
    monkeypatch.setattr(formats, "RAW_AVAILABLE", False)
    with (
        Catalog(tmp_path / "catalog.sqlite3") as catalog,
        Pipeline(catalog, {"efficientnet": efficientnet}) as pipeline,
    ):
        assert pipeline.process([str(path)])["failed"] == {"missing_library": 1}
        (failed,) = catalog.failed_everywhere()
        assert not retry_due(failed, time.time() + 1e6)  # not even a week later
        assert not pipeline.needs_work(str(path))  # nor on a file-system event (a chmod)
        monkeypatch.setattr(formats, "STARTED_AT", time.time() + 1)  # a later process...
        assert not retry_due(failed, time.time())  # ...still without rawpy: nothing to gain
        monkeypatch.setattr(formats, "RAW_AVAILABLE", True)  # ...with rawpy installed
        assert retry_due(failed, time.time()) and pipeline.needs_work(str(path))
        assert pipeline.process([str(path)])["failed"] == {}
        assert catalog.get(str(path)).state == "indexed"
    # the name decides only which decoder to wait for: a HEIC named .jpg is tried when any process restarts
    assert retry_due(FailedFile("/p/phone.jpg", "missing_library", 3, 0.0), time.time())
    monkeypatch.setattr(formats, "HEIF_AVAILABLE", False)
    assert not retry_due(FailedFile("/p/phone.HEIC", "missing_library", 3, 0.0), time.time())


# -- RAW: preview or demosaic ---------------------------------------------------------------------


def _mean_difference(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, np.int16) - np.asarray(b.resize(a.size), np.int16)).mean())


def test_raw_uses_the_preview_when_big_enough_else_a_demosaic(photos):
    """The preview here is another photo, so the picture says which path made it."""
    cat, coffee = photos["chelsea"].convert("RGB"), photos["coffee"].convert("RGB")
    data = dng_bytes(cat, preview=coffee.resize((240, 160)))
    from_preview = images.decode(data, 150)
    assert _mean_difference(from_preview, coffee) < 5 < _mean_difference(from_preview, cat)
    from_raw = images.decode(data, 200)  # the preview's 160 px are too few: LibRaw develops the mosaic
    assert min(from_raw.size) >= 200
    # LibRaw's development brightens (auto-brightness, BT.709 curve): about 24 levels off the cat, 70 off the coffee
    assert _mean_difference(from_raw, cat) < 30 and _mean_difference(from_raw, coffee) > 2 * 30
    # "off" ([images] previews): the mosaic even when the preview is big enough
    developed = images.decode(data, 150, ImageLimits(previews="off"))
    assert _mean_difference(developed, cat) < 30 and _mean_difference(developed, coffee) > 2 * 30


def test_raw_half_size_demosaic_and_orientation(photos):
    cat = photos["chelsea"].convert("RGB")  # 451x300: the mosaic is 450x300
    data = dng_bytes(cat, orientation=6)  # shown turned 90° clockwise: 300 wide, 450 tall
    half = images.decode(data, 100)
    assert half.size == (150, 225)  # half size, upright
    upright = cat.crop((0, 0, 450, 300)).transpose(Image.Transpose.ROTATE_270)
    right, wrong = (
        _mean_difference(half, upright),
        _mean_difference(half, upright.transpose(Image.Transpose.ROTATE_180)),
    )
    assert right < 30 and wrong > 1.5 * right, (right, wrong)
    assert images.decode(data, 200).size == (300, 450)  # half (150) too small: full size
    with_preview = dng_bytes(cat, preview=cat, orientation=6)
    assert images.decode(with_preview, 100).size == (100, 151)  # the 451x300 preview, reduced 3x and turned
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"imgsearchd-test-{os.getpid()}.dng"
    try:
        path.write_bytes(data)
        assert files.header_size(str(path)) == (300, 450)
    finally:
        path.unlink()


def test_raw_and_heif_keep_the_caps_and_typed_reasons(photos):
    cat = photos["chelsea"].convert("RGB")
    tight = ImageLimits(max_pixels=100_000)  # 450x300 = 135,000 pixels
    for data in (dng_bytes(cat), heif_bytes(cat, "HEIF"), heif_bytes(cat, "AVIF")):
        with pytest.raises(ImageError) as refused:
            images.decode(data, 64, tight)
        assert refused.value.reason == Reason.TOO_LARGE
    for data in (dng_bytes(cat), heif_bytes(cat, "HEIF"), heif_bytes(cat, "AVIF")):
        with pytest.raises(ImageError) as broken:
            images.decode(data[: len(data) // 3], 64)
        assert broken.value.reason in (Reason.TRUNCATED, Reason.CORRUPT)
    with pytest.raises(ImageError) as over:  # a demosaic that needs more than the whole decode budget
        images.decode(dng_bytes(cat), 64, ImageLimits(decode_budget_pixels=100_000))
    assert over.value.reason == Reason.TOO_LARGE and "camera RAW needs about" in over.value.detail


def _reason(data: bytes) -> tuple[str, str]:
    with pytest.raises(ImageError) as caught:
        images.decode(data, 224)
    return caught.value.reason, caught.value.detail


@pytest.mark.parametrize("kind", ["AVIF", "HEIF"])
def test_a_cut_or_damaged_avif_or_heif_is_truncated_or_corrupt_not_some_other_format(photos, kind):
    """D3: Pillow cannot even open these, and called them "not_an_image"; their ftyp box says what they are."""
    data = heif_bytes(photos["chelsea"], kind)
    for end in (len(data) * 9 // 10, len(data) // 2, 300, 100):  # cut in the picture, in the boxes that describe it
        assert _reason(data[:end])[0] == Reason.TRUNCATED, end
    renamed = data.replace(b"meta", b"mXta", 1)  # every box whole, the one that describes the picture unknown
    assert _reason(renamed)[0] == Reason.CORRUPT


def test_a_grid_heic_whose_tile_lost_its_size_box_is_corrupt_not_a_crash(photos):
    """libheif raises a bare RuntimeError ("Invalid image size: zero width or height") for a grid
    tile without an ``ispe`` box (found by flipping bytes of a phone HEIC's boxes, issue 31)."""
    from heif_files import phone_heic

    data = phone_heic(photos["chelsea"].convert("RGB").resize((480, 360)), tile=256, thumbnail=None)
    sizes = [i for i in range(len(data)) if data.startswith(b"ispe", i)]
    assert len(sizes) >= 2, "a grid HEIC has a size box for the grid and one for its tiles"
    damaged = data[: sizes[1]] + b"ispH" + data[sizes[1] + 4 :]
    assert _reason(damaged)[0] == Reason.CORRUPT


@pytest.mark.parametrize("kind", ["AVIF", "HEIF"])
def test_an_avif_or_heif_declaring_60000_squared_is_too_large_from_its_header(photos, kind):
    """libavif refuses a picture that big while opening it, which read as "not_an_image"."""
    data = make.bmff_claiming_size(heif_bytes(photos["chelsea"], kind), 60000, 60000)
    header = formats.bmff_header(data)
    assert (header.width, header.height) == (60000, 60000)
    reason, detail = _reason(data)
    assert reason == Reason.TOO_LARGE and "60000x60000" in detail


def _heif_10bit(width: int, height: int) -> bytes:
    import pillow_heif

    ramp = np.tile(np.linspace(0, 65535, width, dtype=np.uint16)[None, :, None], (height, 1, 3))
    buf = io.BytesIO()
    pillow_heif.from_bytes(mode="RGB;16", size=(width, height), data=ramp.tobytes()).save(buf, quality=80)
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["AVIF", "HEIF", "HEIF 10-bit", "AVIF 4:4:4"])
def test_avif_and_heif_are_counted_at_what_their_decoders_allocate(photos, kind, monkeypatch):
    """Their YUV planes cost 7 to 17 bytes a pixel beside Pillow's RGB (bench/bench_decode_memory.py):
    the budget holds the figure for the file's format, bit depth and chroma."""
    picture = photos["chelsea"].convert("RGB").resize((450, 300))  # even: HEVC codes 451 as 452 (and crops it)
    if kind == "HEIF 10-bit":
        data = _heif_10bit(*picture.size)
    elif kind == "AVIF 4:4:4":
        buf = io.BytesIO()
        picture.save(buf, "AVIF", subsampling="4:4:4")
        data = buf.getvalue()
    else:
        data = heif_bytes(picture, kind)
    header = formats.bmff_header(data)
    assert (header.width, header.height) == picture.size and not header.truncated
    assert (header.bits, header.subsampled) == ((10, True) if "10-bit" in kind else (8, "4:4:4" not in kind))
    budget = memory.PixelBudget()
    monkeypatch.setattr(memory, "DECODES", budget)
    images.decode(data, 64)
    pixels = picture.width * picture.height
    expected = memory.bytes_per_pixel(kind[:4], "RGB", header.bits, header.subsampled)
    assert budget.peak == memory.budget_pixels(pixels, expected) > pixels * 7 / 4
    with pytest.raises(ImageError) as caught:
        images.decode(data, 64, ImageLimits(decode_budget_pixels=budget.peak - 1))
    assert caught.value.reason == Reason.TOO_LARGE and f"450x300 {kind[:4]} needs" in caught.value.detail


@pytest.mark.parametrize("kind", ["HEIF", "AVIF"])
def test_heif_and_avif_orientation_is_applied_once(kind):
    """pillow-heif applies the turn itself (and resets EXIF's tag to 1); Pillow's AVIF leaves it to EXIF."""
    wide = Image.new("RGB", (200, 100), (255, 0, 0))
    wide.paste((0, 0, 255), (0, 0, 100, 100))  # blue on the left: after a clockwise turn, on top
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    wide.save(buf, kind, exif=exif.tobytes(), quality=90)
    upright = images.decode(buf.getvalue())
    assert upright.size == (100, 200)
    pixels = np.asarray(upright).astype(int)
    top, bottom = pixels[40, 50], pixels[160, 50]
    assert top[2] > 200 > top[0] and bottom[0] > 200 > bottom[2], (top, bottom)


def test_sniffing_cut_headers_never_raises(photos):
    """Any prefix of a RAW, HEIC or AVIF file, or bytes with broken offsets, is a kind or None."""
    cat = photos["chelsea"].convert("RGB").resize((64, 48))
    for data in (dng_bytes(cat), dng_bytes(cat, preview=cat), heif_bytes(cat, "HEIF"), heif_bytes(cat, "AVIF")):
        for end in range(0, 400):
            formats.sniff(data[:end])
            formats.bmff_header(data[:end])
            formats.webp_size(data[:end])
    assert formats.sniff(b"II*\x00\xff\xff\xff\x7f" + bytes(100)) is None  # first directory far past the end
    # a maker's name far past the end, with SubIFDs: a RAW by its structure, of no known maker
    entries = struct.pack(">HHII", 271, 2, 40, 0x7FFFFFFF) + struct.pack(">HHII", 330, 4, 1, 64)
    assert formats.sniff(b"MM\x00*" + struct.pack(">IH", 8, 2) + entries) == "RAW"


def test_plain_tiffs_are_not_taken_for_raw(photos):
    """A TIFF with a maker's name but no RAW structure stays Pillow's TIFF."""
    buf = io.BytesIO()
    exif = Image.Exif()
    exif[271] = "NIKON CORPORATION"
    photos["coffee"].convert("RGB").save(buf, "TIFF", exif=exif)
    assert formats.sniff(buf.getvalue()) is None
    assert images.decode(buf.getvalue(), 64).size[1] >= 64
    # one with a maker's name and a reduced-size first page looks like a NEF; LibRaw refuses it, Pillow reads it
    tags = TiffImagePlugin.ImageFileDirectory_v2()
    tags[271], tags[254] = "NIKON CORPORATION", 1
    buf = io.BytesIO()
    photos["coffee"].convert("RGB").save(buf, "TIFF", tiffinfo=tags)
    assert formats.sniff(buf.getvalue()) == "NEF"
    assert _mean_difference(images.decode(buf.getvalue(), 64), photos["coffee"].convert("RGB")) < 5


def test_the_cli_does_not_load_the_decoders():
    """The CLI reads the API's bounds from ``api.bounds``, not the spec: when it imported the
    spec, ``formats`` there brought rawpy, pillow-heif and numpy into every CLI command
    (75 -> 300+ ms; hence ``format_types``); the model loader at the top of a CLI module
    brought torch (0.26 -> 4.2 s)."""
    code = "import sys, imgsearchd.cli; print(sorted({'numpy', 'rawpy', 'pillow_heif', 'torch', 'ray', 'pyarrow'} & set(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": str(REPO / "build" / "pp")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_the_page_file_picker_offers_every_new_extension():
    """Browsers whose MIME registry lacks HEIC or RAW types hide such files from ``accept="image/*"``."""
    from imgsearchd.config import AVIF_EXTENSIONS, HEIF_EXTENSIONS, RAW_EXTENSIONS

    html = (REPO / "daemon" / "api" / "web" / "index.html").read_text(encoding="utf-8")
    accept = html.split('id="file" type="file" accept="', 1)[1].split('"', 1)[0].split(",")
    assert "image/*" in accept and set(HEIF_EXTENSIONS + AVIF_EXTENSIONS + RAW_EXTENSIONS) <= set(accept), accept
