"""The daemon's memory on hostile pictures, measured on a real `imgsearchd serve` process.

One daemon and one set of PNGs for the module (making and decoding 13000x13000 takes
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
HUGE_PEAK_MIB = 2048  # measured 1534 (1451 for four RGB); the old code reached 3853 with four RGB
GIVEN_BACK_MIB = 256  # idle after the huge ones: measured +24 over before; the old code kept +2597


@pytest.fixture(scope="module")
def pngs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hostile")
    return {
        "wide": make.solid_png(root / "wide.png", 100000, 1),
        "tall": make.solid_png(root / "tall.png", 1, 100000),
        "huge": make.solid_png(root / "huge.png", 13000, 13000),  # 0.5 MB, 676 MB decoded
        "huge_alpha": make.solid_png(root / "huge_alpha.png", 13000, 13000, (40, 90, 200, 128)),  # RGBA
    }


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, pngs: dict[str, Path]) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("daemon")
    port = free_port()
    config = server_config(
        root,
        server={"port": port, "max_upload_mb": 32, "allowed_roots": [str(pngs["wide"].parent)]},
        images={"max_megapixels": 178},  # 169 MP is under the cap: decoded, not refused
    )
    assert pngs["huge"].stat().st_size < 32 * 1024 * 1024
    with serve(config, port, address_space_gib=8) as served:
        yield served


def post(daemon: Served, path: Path) -> tuple[int, dict]:
    return daemon.request("POST", "/search", path.read_bytes(), "image/png", timeout=300)


@pytest.mark.parametrize("name", ["wide", "tall"])
def test_a_one_pixel_strip_is_searched_and_indexed_in_little_memory(daemon, pngs, name):
    daemon.reset_peak()
    status, body = post(daemon, pngs[name])
    assert status == 200, (body, daemon.log_tail())
    assert "results" in body
    status, body = daemon.request("GET", f"/add?image={quote(str(pngs[name]))}")
    assert status == 200 and body["status"] == "indexed", (body, daemon.log_tail())
    assert daemon.peak_mib() < STRIP_PEAK_MIB


def test_four_huge_pngs_at_once_stay_under_2_gb_and_are_given_back(daemon, pngs):
    """Two RGB and two RGBA (these are flattened onto white before shrinking)."""
    time.sleep(0.5)
    before = daemon.rss_mib()
    daemon.reset_peak()
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda name: post(daemon, pngs[name]), ["huge", "huge_alpha"] * 2))
    assert [status for status, _ in answers] == [200] * 4, (answers, daemon.log_tail())
    assert daemon.peak_mib() < HUGE_PEAK_MIB
    time.sleep(0.5)
    assert daemon.rss_mib() - before < GIVEN_BACK_MIB
