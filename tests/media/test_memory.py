"""The daemon's memory on hostile pictures, measured on a real `imgsearchd serve` process.

One daemon and one set of pictures for the module (making and decoding 13000x13000 takes
seconds). The daemon runs under an 8 GiB address-space cap (it maps about 4.7 GiB at
start) so that a regression fails with MemoryError here instead of waking the OOM killer.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import quote

import pytest

import image_factory as make
from helpers import free_port, server_config
from served import Served, serve

pytestmark = pytest.mark.fault  # memory capped, huge pictures on purpose

STRIP_PEAK_MIB = 1536  # measured 798 (the idle daemon is 744); the old code reached 4015 and failed
HUGE_PEAK_MIB = 2048  # measured 1494-1534 (1451 for four RGB); the old code reached 3853 with four RGB
GIVEN_BACK_MIB = 256  # idle after the huge ones: measured +24 over before; the old code kept +2597
REFUSED_GROWTH_MIB = 1200  # the WebP that needs 2.9 GB: measured +0, refused from its header; the old code about +2700


@pytest.fixture(scope="module")
def pictures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hostile")
    return {
        "wide": make.solid_png(root / "wide.png", 100000, 1),
        "tall": make.solid_png(root / "tall.png", 1, 100000),
        "huge": make.solid_png(root / "huge.png", 13000, 13000),  # 0.5 MB, 676 MB decoded
        "huge_alpha": make.solid_png(root / "huge_alpha.png", 13000, 13000, (40, 90, 200, 128)),  # RGBA
        "huge_webp": make.solid_webp(root / "huge.webp", 16383, 10860),  # 6.8 KB lossless, 2.9 GB to decode
    }


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, pictures: dict[str, Path]) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("daemon")
    port = free_port()
    config = server_config(
        root,
        server={"port": port, "max_upload_mb": 32, "allowed_roots": [str(pictures["wide"].parent)]},
        images={"max_megapixels": 178},  # 169 MP is under the cap: decoded, not refused
    )
    assert pictures["huge"].stat().st_size < 32 * 1024 * 1024
    with serve(config, port, address_space_gib=8) as served:
        yield served


def post(daemon: Served, path: Path) -> tuple[int, dict]:
    return daemon.request("POST", "/search", path.read_bytes(), "image/png", timeout=300)


@pytest.mark.parametrize("name", ["wide", "tall"])
def test_a_one_pixel_strip_is_searched_and_indexed_in_little_memory(daemon, pictures, name):
    daemon.reset_peak()
    status, body = post(daemon, pictures[name])
    assert status == 200, (body, daemon.log_tail())
    assert "results" in body
    status, body = daemon.request("GET", f"/add?image={quote(str(pictures[name]))}")
    assert status == 200 and body["status"] == "indexed", (body, daemon.log_tail())
    assert daemon.peak_mib() < STRIP_PEAK_MIB


def test_four_huge_pngs_at_once_stay_under_2_gb_and_are_given_back(daemon, pictures):
    """Two RGB and two RGBA (these are flattened onto white before shrinking)."""
    time.sleep(0.5)
    before = daemon.rss_mib()
    daemon.reset_peak()
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda name: post(daemon, pictures[name]), ["huge", "huge_alpha"] * 2))
    assert [status for status, _ in answers] == [200] * 4, (answers, daemon.log_tail())
    assert daemon.peak_mib() < HUGE_PEAK_MIB
    time.sleep(0.5)
    assert daemon.rss_mib() - before < GIVEN_BACK_MIB


def test_a_webp_that_needs_more_than_the_decode_budget_is_refused_and_the_daemon_answers(daemon, pictures):
    """Issue 26 (D8), as reported: a 6.8 KB lossless WebP of 16383x10860 posted as text took
    2.7 GiB to decode (libwebp and Pillow hold 16 bytes a pixel; the budget counted 4)."""
    time.sleep(0.5)
    before = daemon.rss_mib()
    daemon.reset_peak()
    started = time.monotonic()
    status, body = daemon.request("POST", "/search", pictures["huge_webp"].read_bytes(), "text/plain", timeout=60)
    assert (status, body.get("reason")) == (413, "too_large"), (body, daemon.log_tail())
    assert "16383x10860 WebP needs about 2.9 GB" in body["error"], body
    assert time.monotonic() - started < 5
    assert daemon.peak_mib() - before < REFUSED_GROWTH_MIB
    status, body = daemon.request("GET", "/health")
    assert status == 200, body
