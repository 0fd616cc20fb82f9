"""Every benchmark under bench/ runs a tiny case, so none of them rots unnoticed.

These check that each script still imports, drives the real code and prints its table;
the numbers of a tiny run mean nothing and are not checked (speed lives in BENCHMARKS.md).

Each script's ``main`` runs in this process, as ``python bench/SCRIPT ARGS`` would run it
(its own module, its arguments in ``sys.argv``, its output captured, the folder, the
environment and torch's thread count put back after): a process of its own paid about 4 s
of imports (torch, torchvision, open_clip) per script: the 17 cases took 113 s as processes, 62 s here.
"""

from __future__ import annotations

import importlib.util
import io
import os
import shutil
import subprocess
import sys
import warnings
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
import torch

from helpers import REPO

TINY = {
    "bench_ann.py": ["--sizes", "1000", "--queries", "20", "--annoy-trees", "2", "--stop-recall", "0.5"],
    "bench_camera.py": [
        "--kinds", "camera-jpeg", "--models", "efficientnet", "--scale", "0.25", "--count", "1", "--quality-count", "1",
        "--stage-count", "1", "--copies", "2", "--distractors", "0", "--repeats", "1",
    ],
    "bench_decode.py": ["--small", "3", "--large", "1", "--repeats", "1"],
    "bench_decode_memory.py": ["--size", "300x200", "--only", "png_rgb", "webp_lossless_rgb", "heif_rgb"],
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
    "bench_idle_memory.py": ["--pictures", "3", "--cases", "efficientnet", "--old", "", "--idle-seconds", "1"],
    "bench_retrieval.py": ["--db", "8", "--copies", "1", "--batch-size", "4", "--repeats", "1"],
    "bench_engines.py": ["--tiny", "--models", "efficientnet", "--e2e-model", "efficientnet"],
    "bench_forward_split.py": ["--models", "efficientnet", "--batch-size", "4", "--rounds", "1"],
    "bench_duplicates.py": [
        "--vectors", "1500", "--planted", "20", "--identical", "5", "--sample", "50", "--scenes", "2", "--draws", "1",
        "--precisions", "fp32", "--batch-size", "4", "--floors", "0.8", "--framing", "0.95", "--similar", "0.9",
    ],
    "bench_match.py": [
        "--scenes", "4", "--per-kind", "2", "--copy-kinds", "2", "--precisions", "fp32", "--batch-size", "4",
        "--sweep", "4",
    ],
    "bench_thumbnails.py": [
        "--small", "4", "--large", "0", "--repeats", "1", "--batch-size", "4", "--route-images", "4", "--clients", "2",
        "--rounds", "1", "--scan", "50",
    ],
    "bench_page.py": ["--vectors", "300", "--real", "6", "--rounds", "1"],
    "bench_recall.py": ["--sizes", "1200", "--queries", "20", "--sample", "30", "--datasets", "broad", "--changes", "100"],
    "bench_parquet.py": ["--files", "8", "--repeats", "1", "--batch-size", "4"],
}  # fmt: skip
EXPECT = {
    "bench_ann.py": "| 1,000 | Annoy, 2 trees |",
    "bench_recall.py": "| hnsw | 2, grown |",
    "bench_camera.py": ("| camera JPEG full | faithful |", "| 1 camera JPEG 1500x1000 |", "| 1 camera JPEG |"),
    "bench_decode.py": "| **loader total** |",
    "bench_decode_memory.py": ("| png_rgb | PNG RGB |", "| webp_lossless_rgb | WEBP RGB |"),
    "bench_filters.py": "| 600 |",
    "bench_formats.py": ("| DNG + preview |", "(exif; 546x364, Canon EOS R5, GPS True) |"),
    "bench_index.py": "| 1,200 |",
    "bench_indexing.py": "| efficientnet | small (4) |",
    "bench_precision.py": "| efficientnet | new |",
    "bench_watch.py": '"drop_to_search"',
    "bench_http.py": "| 2 |",
    "bench_http_front.py": "| waitress |",
    "bench_memory.py": "| 2 x 600x600 PNG at once | [200, 200] |",
    "bench_idle_memory.py": ("| efficientnet | this tree (", "| efficientnet (3 pictures) |"),
    "bench_retrieval.py": (
        "| efficientnet | real (packaged ImageNet) | letterbox |",
        "| half bf16 / half fp32 | bf16 |",
    ),
    "bench_engines.py": (
        "| efficientnet | openvino fp32 |",
        "| efficientnet | torch fp32 | 1.0000 | 1.0000 | 1.000 |",
        "| efficientnet | engine auto |",
        "auto / torch: CLI rate",
    ),
    "bench_forward_split.py": ("| efficientnet | torch fp32 |", "| efficientnet | openvino int8 |"),
    "bench_duplicates.py": ("| planted pairs precision / recall |", "| framing_score |", "| similar:shift |"),
    "bench_match.py": ("| efficientnet fp32 | z-score (shipped) |", "| jpeg |"),
    "bench_thumbnails.py": ("| small (4) |", "| revalidated (304) |"),
    "bench_page.py": "first results on screen |",
    "bench_parquet.py": "| import, ours (stat only) |",
}


# Run elsewhere: bench_backfill.py's parts in test_backfill.py (its Ray run is Backfill.run, which
# test_backfill drives on a real cluster; one more start of a driver and an actor costs 24 s).
TINY_ELSEWHERE = {"bench_backfill.py": "tests/bulk/test_backfill.py::test_the_backfill_benchmarks_own_parts_run"}


def test_every_benchmark_has_a_tiny_case():
    assert sorted(p.name for p in (REPO / "bench").glob("bench_*.py")) == sorted([*TINY, *TINY_ELSEWHERE])
    for script, test in TINY_ELSEWHERE.items():
        module, name = test.split("::")
        assert f"def {name}(" in (REPO / module).read_text(encoding="utf-8"), f"{script}: {test} is gone"


@pytest.mark.bench
@pytest.mark.parametrize(
    "script", [pytest.param(s, marks=pytest.mark.browser) if s == "bench_page.py" else s for s in sorted(TINY)]
)
def test_benchmark_runs_a_tiny_case(script: str, tmp_path: Path) -> None:
    if script == "bench_page.py" and not (shutil.which("chromium") and shutil.which("chromedriver")):
        if os.environ.get("IMGSEARCHD_REQUIRE_BROWSER") == "1":
            pytest.fail("bench_page.py needs chromium and chromium-driver")
        pytest.skip("bench_page.py needs chromium and chromium-driver (apt-get install chromium chromium-driver)")
    with_data = (
        "bench_camera.py",
        "bench_decode.py",
        "bench_engines.py",
        "bench_forward_split.py",
        "bench_formats.py",
        "bench_indexing.py",
        "bench_precision.py",
        "bench_retrieval.py",
        "bench_thumbnails.py",
        "bench_parquet.py",
    )
    extra = ["--data-dir", str(tmp_path / "data")] if script in with_data else []
    run = run_apart if script in APART else run_here
    code, out, err = run(REPO / "bench" / script, [*TINY[script], *extra], tmp_path)
    assert code in (0, None), err[-3000:]
    expected = EXPECT[script]
    for line in (expected,) if isinstance(expected, str) else expected:
        assert line in out, out[-3000:]


def run_here(script: Path, args: list[str], cwd: Path) -> tuple[object, str, str]:
    """``python SCRIPT ARGS`` in this process, from ``cwd``: (what main returned, stdout, stderr).

    As Python runs a script: its folder first on ``sys.path`` (benchmarks import each other).
    Put back after: the arguments, the path, the folder, the environment, torch's thread count,
    and every module loaded from bench/ (a later case loads its own)."""
    spec = importlib.util.spec_from_file_location(f"tiny_{script.stem}", script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    out, err = io.StringIO(), io.StringIO()
    saved = (list(sys.argv), list(sys.path), set(sys.modules), os.getcwd(), dict(os.environ), torch.get_num_threads())
    try:
        sys.argv = [str(script), *args]
        sys.path.insert(0, str(script.parent))
        sys.modules[spec.name] = module  # dataclasses look their module up while it executes
        os.chdir(cwd)
        with redirect_stdout(out), redirect_stderr(err), warnings.catch_warnings():
            spec.loader.exec_module(module)
            try:
                code = module.main()
            except SystemExit as exc:
                code = exc.code
    finally:
        sys.argv, sys.path[:], modules, cwd_before, environ, threads = saved
        for name in set(sys.modules) - modules:
            if name == spec.name or str(getattr(sys.modules[name], "__file__", "")).startswith(str(script.parent)):
                del sys.modules[name]
        os.chdir(cwd_before)
        os.environ.clear()
        os.environ.update(environ)
        torch.set_num_threads(threads)
    return code, out.getvalue(), err.getvalue()


# Run as a process of their own: bench_watch counts the files its scan opens with an audit hook
# (sys.addaudithook), which cannot be removed and would see every later test's opens.
APART = ("bench_watch.py",)


def run_apart(script: Path, args: list[str], cwd: Path) -> tuple[object, str, str]:
    """``python SCRIPT ARGS`` as a process, from ``cwd``: (exit status, stdout, stderr)."""
    done = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=240, cwd=cwd)
    return done.returncode, done.stdout, done.stderr


@pytest.mark.bench
def test_bench_camera_reads_a_folder_of_real_files(tmp_path: Path, photos: dict) -> None:
    """``bench_camera.py --real FOLDER``: each file decoded in each ``[images] previews`` mode, what it
    took and the cosine, summed up by mode and source (files written here as a camera and a phone write them)."""
    import numpy as np

    from camera_photos import grainy
    from jpeg_files import camera_jpeg

    picture = grainy(np.asarray(photos["chelsea"].convert("RGB")), (1200, 900), seed=1)
    folder = tmp_path / "real"
    (folder / "phone").mkdir(parents=True)
    (folder / "camera.JPG").write_bytes(camera_jpeg(picture, mpf_preview=(640, 480)))  # twice 224, q90
    (folder / "phone" / "phone.jpg").write_bytes(camera_jpeg(picture, exif_thumbnail=(320, 240)))  # covers 224
    code, out, err = run_here(REPO / "bench" / "bench_camera.py", ["--real", str(folder), "--repeats", "1"], tmp_path)
    assert code in (0, None), err[-3000:]
    for row in ("| faithful | JPEG MPF preview | 1 |", "| faithful | primary | 1 |", "| fast | EXIF thumbnail | 1 |"):
        assert row in out, out[-3000:]
    assert "| off | **all** | 2 | **1.0000** |" in out and "| phone.jpg | 1200x900 | primary," in out
