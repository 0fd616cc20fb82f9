"""``pip install .`` into a fresh venv, then ``imgsearchd serve`` from another folder answers /health.

What this proves: the wheel pip builds from this tree installs the package with its data
(the default settings, the page's files), its ``imgsearchd`` console script, and the
version from pyproject.toml; started from an empty folder with no settings file, the
installed daemon finds the packaged default settings and serves. The sdist holds the
default settings as a plain file (in the tree it is a link to config/imgsearchd.toml).

What it does not prove: that the dependencies resolve and install from an index. To stay
fast and offline, the venv is made without pip (``--without-pip``), pip runs with
``--no-deps --no-build-isolation --no-index``, and a ``.pth`` line puts this environment's
site-packages (torch, open_clip, ...) after the venv's own. Only path lines are added, so
that folder's ``.pth`` hooks (the editable install of this checkout) do not run: the
imgsearchd that answers is the one pip installed, which the test checks. ``--ignore-installed``
keeps pip from uninstalling that editable install, which it sees through the ``.pth`` line.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
from pathlib import Path

import pytest

from helpers import REPO, free_port, wait_healthy

SOURCES = ("pyproject.toml", "README.md", "daemon", "config")


def _copy_tree(dest: Path) -> Path:
    """The files a checkout holds that the build reads (links kept, as in a checkout)."""
    dest.mkdir()
    for name in SOURCES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)
    return dest


@pytest.mark.packaging
def test_pip_install_then_serve_from_another_folder(tmp_path):
    tree = _copy_tree(tmp_path / "src")
    venv = tmp_path / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site = Path(
        subprocess.run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (site / "_heavy_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "IMGSEARCHD_CONFIG")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    offline = ["--no-deps", "--no-build-isolation", "--no-index", "--ignore-installed"]  # see the docstring
    install = subprocess.run(
        [python, "-m", "pip", "install", "-q", *offline, str(tree)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr
    assert "Deprecat" not in install.stderr and "!!" not in install.stderr, install.stderr  # no setuptools banner
    packaged = site / "imgsearchd" / "imgsearchd.toml"
    assert packaged.is_file() and not packaged.is_symlink()
    assert (site / "imgsearchd" / "api" / "web").is_dir()

    elsewhere = tmp_path / "elsewhere"  # no config/ here, and no settings file named anywhere
    elsewhere.mkdir()
    probe = subprocess.run(
        [
            python,
            "-c",
            "import imgsearchd as i, imgsearchd.config as c; print(i.__file__, c.find_config_file(), i.__version__)",
        ],
        capture_output=True,
        text=True,
        cwd=elsewhere,
        env=env,
        check=True,
    )
    where, config_file, version = probe.stdout.split()
    assert where == str(site / "imgsearchd" / "__init__.py")  # not this checkout
    assert version == tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]  # its one home
    if Path("/etc/imgsearchd/imgsearchd.toml").is_file():
        assert config_file == "/etc/imgsearchd/imgsearchd.toml"
    else:
        assert config_file == str(packaged)

    port = free_port()
    env["HF_HUB_OFFLINE"] = "1"
    proc = subprocess.Popen(
        [venv / "bin" / "imgsearchd", "serve", "--port", str(port), "--extractor", "efficientnet"],
        cwd=elsewhere,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_healthy(port, proc)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert (elsewhere / "data" / "catalog.sqlite3").is_file()  # the default data_dir, relative to where it ran


@pytest.mark.packaging
def test_the_sdist_holds_the_default_settings_as_a_file(tmp_path):
    tree = _copy_tree(tmp_path / "src")
    code = f"from setuptools import build_meta as b; print(b.build_sdist({str(tmp_path / 'dist')!r}))"
    built = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code], cwd=tree, capture_output=True, text=True, timeout=120
    )
    assert built.returncode == 0, built.stderr
    name = built.stdout.strip().splitlines()[-1]
    with tarfile.open(tmp_path / "dist" / name) as sdist:
        member = sdist.getmember(f"{name.removesuffix('.tar.gz')}/daemon/imgsearchd.toml")
        assert member.isfile()
        data = sdist.extractfile(member)
        assert data is not None and data.read() == (REPO / "config" / "imgsearchd.toml").read_bytes()


# What `make run` puts in the venv: the daemon and its runtime dependencies, not the test tools
# (pytest, Ray, mypy, ...: about 0.9 GB a user never needs); `make test` adds them.
TEST_TOOLS = ("pytest", "ray", "mypy", "ruff", "schemathesis", "selenium", "pyarrow", "hypothesis", "scikit-image")


def make_dry_run(target: str, venv: Path, *settings: str) -> list[str]:
    """What ``make TARGET`` would give ``pip install`` for a venv that does not exist yet."""
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}  # under make test
    done = subprocess.run(
        ["make", "-n", target, f"VENV={venv}", *settings],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env=env,
    )
    return [line.split(" -m pip install ", 1)[1] for line in done.stdout.splitlines() if " -m pip install " in line]


def requirement_name(requirement: str) -> str:
    return re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0].lower()


def test_make_run_installs_the_daemon_and_its_runtime_dependencies_only(tmp_path):
    venv = tmp_path / "venv"
    for target in ("run", "install"):
        installs = make_dry_run(target, venv)
        assert any(line.rstrip().endswith("-e .") for line in installs), installs
        assert not any("[" in line for line in installs), installs  # no extras
    # the services: a copy of the checkout in a venv of their own (not editable: the clone may go)
    for target in ("install-service", "install-user-service"):
        installs = make_dry_run(target, venv)
        assert any(line.rstrip().endswith(" .") and "-e ." not in line for line in installs), installs
        assert any("torch==" in line for line in installs), installs
        assert not any("[" in line for line in installs), installs
    assert any(line.rstrip().endswith("-e '.[test]'") for line in make_dry_run("test", venv))
    # TORCH_INDEX: torch (and only torch) from another index, e.g. PyTorch's CPU-only builds
    cpu = "https://download.pytorch.org/whl/cpu"
    for target in ("run", "install-user-service"):
        installs = make_dry_run(target, venv, f"TORCH_INDEX={cpu}")
        from_cpu = [line for line in installs if cpu in line]
        assert len(from_cpu) == 1 and "torch==" in from_cpu[0] and "torchvision==" in from_cpu[0], installs
        assert not from_cpu[0].rstrip().endswith("."), installs  # the daemon comes from the usual place
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    runtime = {requirement_name(r) for r in project["dependencies"]}
    assert runtime.isdisjoint(TEST_TOOLS), runtime & set(TEST_TOOLS)
    assert {requirement_name(r) for r in project["optional-dependencies"]["test"]} >= {"pytest", "ray", "mypy", "ruff"}
