"""The desktop user unit: `make install-user-service` into a venv of its own and a DESTDIR,
systemd's own check of the unit, and an install that outlives the clone it was made from."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from imgsearchd.config import load_config

from helpers import REPO, free_port, systemd_analyze
from service_venv import make, reusing_venv

HOME = "/home/someone"  # the home the install is made for, staged under DESTDIR
EXEC_START = r"^ExecStart=(\S+) serve --config %E/imgsearchd/imgsearchd.toml$"


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """The user venv the installs below use (made reusing this environment's torch: service_venv)."""
    path = tmp_path_factory.mktemp("user-venv") / "venv"
    reusing_venv(path)
    return path


def install(destdir: Path | None, venv: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`make install-user-service` from this checkout, into ``venv``, for the user ``HOME``."""
    user = {"HOME": HOME, "XDG_CONFIG_HOME": "", **env}
    return make("install-user-service", REPO, user, DESTDIR=str(destdir or ""), USER_VENV=str(venv))


@pytest.fixture(scope="module")
def installed(tmp_path_factory, venv) -> Path:
    destdir = tmp_path_factory.mktemp("destdir")
    done = install(destdir, venv)
    assert done.returncode == 0, done.stderr
    return destdir


def test_install_puts_unit_and_config_in_xdg_places(installed, venv):
    unit = (installed / f"{HOME.lstrip('/')}/.config/systemd/user/imgsearchd.service").read_text()
    exec_start = re.search(EXEC_START, unit, re.M)
    assert exec_start and exec_start.group(1) == str(venv / "bin/imgsearchd"), unit
    assert os.access(exec_start.group(1), os.X_OK), unit
    assert re.search(r"^WantedBy=default.target$", unit, re.M)
    assert not re.search(r"^(DynamicUser|User|ProtectHome)=", unit, re.M)  # it runs as you and reads ~/Pictures
    config = load_config(installed / f"{HOME.lstrip('/')}/.config/imgsearchd/imgsearchd.toml")
    assert config.index.data_dir == "~/.local/share/imgsearchd"
    assert config.data_dir == Path.home() / ".local/share/imgsearchd"  # ~ is the user's at run time
    assert config.watch.directories == ("~/Pictures",)
    # folders elsewhere in the home folder may be watched from the page or `imgsearchd watch`
    assert config.server.allowed_roots == ("~",)
    assert config.server.host == "127.0.0.1"
    # other users of the machine reach loopback too: a random token, in a file only you can read
    assert len(config.server.token) >= 32
    assert config.source is not None and config.source.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in installed.rglob("*") if p.is_file()) == ["imgsearchd.service", "imgsearchd.toml"]


def test_install_keeps_an_existing_config_and_follows_xdg_config_home(tmp_path, venv):
    conf = tmp_path / "xdg/imgsearchd/imgsearchd.toml"
    conf.parent.mkdir(parents=True)
    conf.write_text('[log]\nlevel = "debug"\n')
    done = install(Path("/"), venv, XDG_CONFIG_HOME=str(tmp_path / "xdg"))  # no DESTDIR prefix: a real install
    assert done.returncode == 0, done.stderr
    assert "keeping the existing" in done.stdout
    assert conf.read_text() == '[log]\nlevel = "debug"\n'
    assert (tmp_path / "xdg/systemd/user/imgsearchd.service").is_file()


def test_user_unit_passes_systemd_analyze_verify(installed, tmp_path):
    analyze = systemd_analyze()
    unit = installed / f"{HOME.lstrip('/')}/.config/systemd/user/imgsearchd.service"
    runtime = tmp_path / "runtime"  # a user manager needs $XDG_RUNTIME_DIR; none is set in CI
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "HOME": str(tmp_path)}
    result = subprocess.run(
        [analyze, "--user", "verify", str(unit)], capture_output=True, text=True, timeout=120, env=env
    )
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr
    # the check is real: a wrong value is reported
    broken = tmp_path / "imgsearchd.service"
    broken.write_text(unit.read_text().replace("Nice=10", "Nice=ten"))
    result = subprocess.run(
        [analyze, "--user", "verify", str(broken)], capture_output=True, text=True, timeout=120, env=env
    )
    assert "Nice" in result.stderr or "nice" in result.stderr, result.stderr


@pytest.mark.skipif(os.geteuid() != 0, reason="the refusal is for root (sudo make install-user-service)")
def test_install_refuses_root_without_destdir(tmp_path):
    done = install(None, tmp_path / "venv", XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    assert done.returncode != 0 and "without sudo" in done.stderr
    assert not (tmp_path / "xdg").exists() and not (tmp_path / "venv").exists()  # refused before anything


# -- an install that outlives its clone ------------------------------------------------------------

CLONE = ("Makefile", "imgsearchd.user.service", "pyproject.toml", "README.md", "daemon", "config")


def copy_of_the_checkout(clone: Path) -> Path:
    clone.mkdir()
    for name in CLONE:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, clone / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(source, clone / name)
    return clone


def health(port: int, token: str) -> int:
    """/health's status with the token (0: nothing answers yet)."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/health", headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=2) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def serve_until_healthy(imgsearchd: str, config_file: Path, env: dict[str, str], cwd: Path) -> None:
    """Start the installed daemon on a free port, wait for /health 200, stop it: exit 0."""
    token = load_config(config_file).server.token
    port = free_port()
    command = [imgsearchd, "serve", "--config", str(config_file), "--port", str(port), "--extractor", "efficientnet"]
    proc = subprocess.Popen(command, cwd=cwd, env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while health(port, token) != 200:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else "the daemon exited"
            assert time.monotonic() < deadline, "the daemon did not become healthy in 120 s"
            time.sleep(0.5)
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err


def test_the_user_install_runs_after_its_clone_is_deleted(tmp_path):
    clone, home = copy_of_the_checkout(tmp_path / "clone"), tmp_path / "home"
    venv = home / ".local/share/imgsearchd/venv"  # the default place, in the user's home
    reusing_venv(venv)
    user = {"HOME": str(home), "XDG_CONFIG_HOME": ""}
    done = make("install-user-service", clone, user, DESTDIR="/")  # "/": a real install, even as root
    assert done.returncode == 0, done.stderr
    shutil.rmtree(clone)

    unit = (home / ".config/systemd/user/imgsearchd.service").read_text()
    exec_start = re.search(EXEC_START, unit, re.M)
    assert exec_start and exec_start.group(1) == str(venv / "bin/imgsearchd"), unit
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "IMGSEARCHD_CONFIG")}
    env.update(user, HF_HUB_OFFLINE="1")
    config_file = home / ".config/imgsearchd/imgsearchd.toml"
    serve_until_healthy(exec_start.group(1), config_file, env, tmp_path)
    catalog = home / ".local/share/imgsearchd/catalog.sqlite3"
    assert catalog.is_file()  # the config's data folder, in that home

    done = make("uninstall-user-service", REPO, user, DESTDIR="/")
    assert done.returncode == 0, done.stderr
    assert not venv.exists() and not (home / ".config/systemd/user/imgsearchd.service").exists()
    assert config_file.is_file() and catalog.is_file()  # the settings and the data stay
