"""Every benchmark under bench/ runs a tiny case, so none of them rots unnoticed.

These check that each script still imports, drives the real code and prints its table;
the numbers of a tiny run mean nothing and are not checked (speed lives in BENCHMARKS.md).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO

TINY = {
    "bench_ann.py": ["--sizes", "1000", "--queries", "20", "--annoy-trees", "2", "--stop-recall", "0.5"],
    "bench_decode.py": ["--small", "3", "--large", "1", "--repeats", "1"],
    "bench_formats.py": ["--megapixels", "0.2", "--repeats", "1"],
    "bench_filters.py": ["--library", "1500", "--folders", "100", "600", "--queries", "3", "--repeats", "1"],
    "bench_index.py": [
        "--sizes", "1200", "--queries", "20", "--brute-queries", "5", "--sweep", "1000", "--rate", "1000",
        "--no-threshold",
    ],
    "bench_indexing.py": [
        "--models", "efficientnet", "--small", "4", "--large", "2", "--naive-small", "2", "--naive-large", "1",
        "--batch-size", "4",
    ],
    "bench_precision.py": [
        "--models", "efficientnet", "--small", "4", "--large", "1", "--forward", "4", "--queries", "1",
        "--batch-size", "4",
    ],
    "bench_watch.py": ["--drops", "3", "--files", "200", "--side", "64"],
    "bench_http.py": ["--vectors", "500", "--real", "20", "--clients", "2", "--seconds", "1"],
    "bench_http_front.py": ["--clients", "4", "--slow", "2", "--seconds", "1", "--kinds", "waitress"],
    "bench_memory.py": ["--side", "600", "--clients", "2", "--strip", "1000"],
    "bench_retrieval.py": ["--db", "8", "--copies", "1", "--batch-size", "4", "--repeats", "1"],
    "bench_duplicates.py": [
        "--vectors", "1500", "--planted", "20", "--identical", "5", "--sample", "50", "--grid", "2", "--photos", "2",
        "--thresholds", "0.9",
    ],
    "bench_thumbnails.py": [
        "--small", "4", "--large", "0", "--repeats", "1", "--batch-size", "4", "--route-images", "4", "--clients", "2",
        "--rounds", "1", "--scan", "50",
    ],
    "bench_page.py": ["--vectors", "300", "--real", "6", "--rounds", "1"],
    "bench_recall.py": ["--sizes", "1200", "--queries", "20", "--sample", "30", "--datasets", "broad", "--changes", "100"],
    "bench_vectors_io.py": ["--files", "8", "--repeats", "1", "--batch-size", "4"],
}  # fmt: skip
EXPECT = {
    "bench_ann.py": "| 1,000 | Annoy, 2 trees |",
    "bench_recall.py": "| hnsw | 2, grown |",
    "bench_decode.py": "| **loader total** |",
    "bench_filters.py": "| 600 |",
    "bench_formats.py": ("| DNG + preview |", "(exif; 546x364, Canon EOS R5, GPS True) |"),
    "bench_index.py": "| 1,200 |",
    "bench_indexing.py": "| efficientnet | small (4) |",
    "bench_precision.py": "| efficientnet | new |",
    "bench_watch.py": '"drop_to_search"',
    "bench_http.py": "| 2 |",
    "bench_http_front.py": "| waitress |",
    "bench_memory.py": "| 2 x 600x600 PNG at once | [200, 200] |",
    "bench_retrieval.py": (
        "| efficientnet | real (packaged ImageNet) | letterbox |",
        "| half bf16 / half fp32 | bf16 |",
    ),
    "bench_duplicates.py": "| planted pairs precision / recall |",
    "bench_thumbnails.py": ("| small (4) |", "| revalidated (304) |"),
    "bench_page.py": "first results on screen |",
    "bench_vectors_io.py": "| import, ours (stat only) |",
}


# Run elsewhere: bench_backfill.py's parts in test_backfill.py (its Ray run is Backfill.run, which
# test_backfill drives on a real cluster; one more start of a driver and an actor costs 24 s).
TINY_ELSEWHERE = {"bench_backfill.py": "tests/test_backfill.py::test_the_backfill_benchmarks_own_parts_run"}


def test_every_benchmark_has_a_tiny_case():
    assert sorted(p.name for p in (REPO / "bench").glob("bench_*.py")) == sorted([*TINY, *TINY_ELSEWHERE])
    for script, test in TINY_ELSEWHERE.items():
        module, name = test.split("::")
        assert f"def {name}(" in (REPO / module).read_text(encoding="utf-8"), f"{script}: {test} is gone"


@pytest.mark.parametrize("script", sorted(TINY))
def test_benchmark_runs_a_tiny_case(script: str, tmp_path: Path) -> None:
    if script == "bench_page.py" and not (shutil.which("chromium") and shutil.which("chromedriver")):
        if os.environ.get("IMGSEARCHD_REQUIRE_BROWSER") == "1":
            pytest.fail("bench_page.py needs chromium and chromium-driver")
        pytest.skip("bench_page.py needs chromium and chromium-driver (apt-get install chromium chromium-driver)")
    with_data = (
        "bench_decode.py",
        "bench_formats.py",
        "bench_indexing.py",
        "bench_precision.py",
        "bench_retrieval.py",
        "bench_thumbnails.py",
        "bench_vectors_io.py",
    )
    extra = ["--data-dir", str(tmp_path / "data")] if script in with_data else []
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / script), *TINY[script], *extra],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    expected = EXPECT[script]
    for line in (expected,) if isinstance(expected, str) else expected:
        assert line in result.stdout, result.stdout[-3000:]
