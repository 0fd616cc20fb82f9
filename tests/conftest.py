"""Fixtures: real photos, real extractors (offline), a settings file, and the leak check.

Helpers to import (waiting, settings files, the CLI, a live daemon) are in ``helpers``.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from helpers import EFFICIENTNET_FP32, bf16_report, skimage_photos, write_config

# The browser tests' module fixtures (``browser``, ``shots``) live with their helpers.
pytest_plugins = ("page_browser",)

# -- tiers and workers ----------------------------------------------------------------------------
#
# The slow tiers carry a marker (registered in pyproject.toml) and, through it, ``slow``:
# ``make test-quick`` runs ``-m "not slow"``.
#
# ``make test`` runs on two pytest-xdist workers with ``--dist loadfile``: a module's tests run
# on one worker, so that its module-scoped fixtures (a live daemon, a cluster) are built once.
# The modules in SPREAD hold independent tests that together take longer than any other module
# (the benchmarks' tiny cases: 62 s, the next longest module about 55 s); as one block they were
# the tail of the run, so their tests are scheduled one by one instead.
# (xdist's own ``loadgroup`` would say this with marks, but it groups nothing on pytest 9.2:
# pytest-xdist#1386.)

TIERS = ("browser", "cluster", "packaging", "load", "fault", "bench", "process")
SPREAD = ("tests/test_bench.py",)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if any(item.get_closest_marker(tier) for tier in TIERS):
            item.add_marker(pytest.mark.slow)


@pytest.hookimpl(optionalhook=True)  # xdist's hook: unknown (and never called) without it
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """For ``--dist loadfile``: whole modules, but SPREAD's tests one by one; else xdist's own."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ModulesTogether(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::", 1)[0]
            return nodeid if module in SPREAD else module

    return ModulesTogether(config, log)


def pytest_report_header(config: pytest.Config) -> str:
    """Which bf16 path this machine takes, so that a CI log shows what was really covered."""
    return bf16_report()


@pytest.fixture(scope="session")
def photos() -> dict[str, Image.Image]:
    return skimage_photos()


# Every fixture names its precision: ``auto`` is bf16 on a CPU with avx512_bf16 and fp32 on one
# without, and tests compare these vectors exactly (the bf16 path is test_precision's, on every CPU).
@pytest.fixture(scope="session")
def efficientnet() -> Any:
    from imgsearchd.extractors import create

    return create("efficientnet", dict(EFFICIENTNET_FP32))


@pytest.fixture(scope="session")
def efficientnet_crop() -> Any:
    """EfficientNet-Lite0 with the classification crop (preprocess = "crop", the recipe before issue 12)."""
    from imgsearchd.extractors import create

    return create("efficientnet", {**EFFICIENTNET_FP32, "preprocess": "crop"})


@pytest.fixture(scope="session")
def clip_random() -> Any:
    from imgsearchd.extractors import create

    # fp32: mechanics tests compare its vectors exactly (test_precision covers int8 and bf16)
    settings = {"model": "ViT-B-32", "pretrained": "none", "device": "cpu", "batch_size": 4, "precision": "fp32"}
    settings["engine"] = "torch"
    return create("clip", settings)


@pytest.fixture(scope="session")
def resnet_random() -> Any:
    from imgsearchd.extractors import create

    return create(
        "resnet", {"weights": "none", "device": "cpu", "batch_size": 4, "precision": "fp32", "engine": "torch"}
    )


@pytest.fixture
def offline_config(tmp_path: Path) -> Path:
    """Settings for CLI runs: efficientnet only (offline), state under tmp_path."""
    return write_config(
        tmp_path / "imgsearchd.toml",
        {
            "index": {
                "data_dir": str(tmp_path / "data"),
                "extractors": ["efficientnet"],
                "fallback_extractor": "",
                "loader_threads": 2,
            },
            "extractors.efficientnet": dict(EFFICIENTNET_FP32),
        },
    )


# -- logging ------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _root_logging_restored() -> Iterator[None]:
    """A test that runs ``cli.main`` in this process reconfigures the root logger (a handler on
    the stream pytest captured, level INFO); later tests then log into a closed stream and
    capture records they never asked for. Put it back as it was."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


# -- leaks ------------------------------------------------------------------------------------
#
# A test (or a module's fixtures) that leaves a thread or a child process running fails:
# a leaked watcher, indexer or builder keeps working on a deleted folder, holds files open
# and makes later tests flaky. Threads get a few seconds to finish what they were told to.

LEAK_GRACE_SECONDS = float(os.environ.get("IMGSEARCHD_TEST_LEAK_GRACE", "5"))
# Threads that are not the code's: tqdm's monitor (once per process, on purpose) and
# pytest-timeout's timer, which outlives the last test of a module by a moment.
LONG_LIVED_THREADS = ("TMonitor", "pytest_timeout")


def _threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.is_alive() and not t.name.startswith(LONG_LIVED_THREADS)}


def _children() -> set[int]:
    """This process's running child processes (zombies are reaped by whoever started them)."""
    pids: set[int] = set()
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as f:
                pids.update(int(p) for p in f.read().split())
        except OSError:
            continue
    running = set()
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z":
            running.add(pid)
    return running


def _describe(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            command = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        return f"{pid} ({command[:120]})"
    except OSError:
        return str(pid)


def _leaks(threads: set[threading.Thread], children: set[int]) -> list[str]:
    """What runs now that did not before, after waiting up to LEAK_GRACE_SECONDS for it to end."""
    deadline = time.monotonic() + LEAK_GRACE_SECONDS
    while True:
        new_threads = sorted(t.name for t in _threads() - threads)
        new_children = sorted(_children() - children)
        if not new_threads and not new_children:
            return []
        if time.monotonic() > deadline:
            return [f"thread {name}" for name in new_threads] + [f"process {_describe(p)}" for p in new_children]
        time.sleep(0.05)


@pytest.fixture(autouse=True, scope="module")
def _no_leaks_from_module() -> Iterator[None]:
    """Module-scoped fixtures (a shared live server) must stop everything they started."""
    threads, children = _threads(), _children()
    yield
    leaked = _leaks(threads, children)
    if leaked:
        pytest.fail(f"the module's fixtures left running: {', '.join(leaked)}", pytrace=False)


def _shares_a_module_fixture(request: pytest.FixtureRequest) -> bool:
    """True when the test uses a fixture that lives across tests (a shared live daemon):
    its pools grow threads on demand, which then belong to it, not to the test."""
    definitions = request.node._fixtureinfo.name2fixturedefs
    return any(
        defs[-1].scope in ("module", "class", "package")
        for name, defs in definitions.items()
        if name != "_no_leaks_from_module"
    )


@pytest.fixture(autouse=True)
def _no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test must stop every thread and child process it started."""
    if _shares_a_module_fixture(request):
        yield  # checked when the module's fixtures are torn down
        return
    threads, children = _threads(), _children()
    yield
    leaked = _leaks(threads, children)
    if leaked:
        pytest.fail(f"the test left running: {', '.join(leaked)}", pytrace=False)
