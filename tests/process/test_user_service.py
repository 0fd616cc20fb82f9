"""The desktop user unit: `make install-user-service` into a DESTDIR, and systemd's own check of it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from imgsearchd.config import load_config

from helpers import REPO, systemd_analyze

HOME = "/home/someone"  # the home the install is made for, staged under DESTDIR


def install(destdir: Path | None, **env: str) -> subprocess.CompletedProcess[str]:
    """`make install-user-service` with the venv running these tests; `-o` keeps make from
    remaking that venv (its stamp may be older than a changed pyproject.toml)."""
    venv = Path(sys.prefix)
    stamp = str(venv / ".installed-stamp")
    return subprocess.run(
        ["make", "-s", "-o", stamp, "install-user-service", f"VENV={venv}", f"DESTDIR={destdir or ''}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "HOME": HOME, "XDG_CONFIG_HOME": "", **env},
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    destdir = tmp_path_factory.mktemp("destdir")
    done = install(destdir)
    assert done.returncode == 0, done.stderr
    return destdir


def test_install_puts_unit_and_config_in_xdg_places(installed):
    unit = (installed / f"{HOME.lstrip('/')}/.config/systemd/user/imgsearchd.service").read_text()
    exec_start = re.search(r"^ExecStart=(\S+) serve --config %E/imgsearchd/imgsearchd.toml$", unit, re.M)
    assert exec_start and os.access(exec_start.group(1), os.X_OK), unit
    assert re.search(r"^WantedBy=default.target$", unit, re.M)
    assert not re.search(r"^(DynamicUser|User|ProtectHome)=", unit, re.M)  # it runs as you and reads ~/Pictures
    config = load_config(installed / f"{HOME.lstrip('/')}/.config/imgsearchd/imgsearchd.toml")
    assert config.index.data_dir == "~/.local/share/imgsearchd"
    assert config.data_dir == Path.home() / ".local/share/imgsearchd"  # ~ is the user's at run time
    assert config.watch.directories == ("~/Pictures",)
    assert config.server.host == "127.0.0.1"
    # other users of the machine reach loopback too: a random token, in a file only you can read
    assert len(config.server.token) >= 32
    assert config.source is not None and config.source.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in installed.rglob("*") if p.is_file()) == ["imgsearchd.service", "imgsearchd.toml"]


def test_install_keeps_an_existing_config_and_follows_xdg_config_home(tmp_path):
    conf = tmp_path / "xdg/imgsearchd/imgsearchd.toml"
    conf.parent.mkdir(parents=True)
    conf.write_text('[log]\nlevel = "debug"\n')
    done = install(Path("/"), XDG_CONFIG_HOME=str(tmp_path / "xdg"))  # no DESTDIR prefix: a real install
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
    done = install(None, XDG_CONFIG_HOME=str(tmp_path / "xdg"))
    assert done.returncode != 0 and "without sudo" in done.stderr
    assert not (tmp_path / "xdg").exists()
