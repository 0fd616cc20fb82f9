"""systemd: the unit passes systemd's own checks, and the real daemon speaks the notify protocol."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from imgsearchd.config import load_config
from imgsearchd.process.systemd import Notifier

from helpers import EFFICIENTNET_FP32, REPO, NotifySocket, cli_command, free_port, systemd_analyze, write_config
from service_venv import make, reusing_venv


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """`make install-service` with the unit and config staged into a folder, and the venv of
    its own in ``venv`` beside them (made reusing this environment's torch: service_venv)."""
    root = tmp_path_factory.mktemp("install-service")
    reusing_venv(root / "venv")
    done = make("install-service", REPO, DESTDIR=str(root / "stage"), SERVICE_VENV=str(root / "venv"))
    assert done.returncode == 0, done.stderr
    return root


def test_install_service_puts_venv_unit_and_config_in_place(installed):
    unit = (installed / "stage/etc/systemd/system/imgsearchd.service").read_text()
    exec_start = re.search(r"^ExecStart=(\S+) serve --config /etc/imgsearchd/imgsearchd.toml$", unit, re.M)
    assert exec_start and exec_start.group(1) == str(installed / "venv/bin/imgsearchd")
    assert os.access(exec_start.group(1), os.X_OK)
    config = load_config(installed / "stage/etc/imgsearchd/imgsearchd.toml")
    assert config.index.data_dir == "/var/lib/imgsearchd"
    assert config.server.host == "127.0.0.1"
    # the daemon the unit runs is the venv's own copy, not this checkout
    where = subprocess.run(
        [installed / "venv/bin/python", "-c", "import imgsearchd; print(imgsearchd.__file__)"],
        capture_output=True,
        text=True,
        check=True,
        cwd=installed,
    ).stdout.strip()
    assert Path(where).is_relative_to(installed / "venv") and not Path(where).is_relative_to(REPO), where


def test_uninstall_service_removes_the_unit_and_the_venv_only(tmp_path):
    unit = tmp_path / "stage/etc/systemd/system/imgsearchd.service"
    config = tmp_path / "stage/etc/imgsearchd/imgsearchd.toml"
    for path in (unit, config, tmp_path / "venv/pyvenv.cfg", tmp_path / "notavenv/keep.txt"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    done = make("uninstall-service", REPO, DESTDIR=str(tmp_path / "stage"), SERVICE_VENV=str(tmp_path / "venv"))
    assert done.returncode == 0, done.stderr
    assert not unit.exists() and not (tmp_path / "venv").exists() and config.is_file()
    # a SERVICE_VENV that is not a venv (no pyvenv.cfg) is never deleted
    done = make("uninstall-service", REPO, DESTDIR=str(tmp_path / "stage"), SERVICE_VENV=str(tmp_path / "notavenv"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "notavenv/keep.txt").is_file()


def test_unit_passes_systemd_analyze_verify(installed):
    result = subprocess.run(
        [systemd_analyze(), "verify", str(installed / "stage/etc/systemd/system/imgsearchd.service")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and result.stderr.strip() == "", result.stderr


def test_unit_exposure_is_ok_or_better(installed):
    result = subprocess.run(
        [
            systemd_analyze(),
            "security",
            "--offline=true",
            str(installed / "stage/etc/systemd/system/imgsearchd.service"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    match = re.search(r"Overall exposure level for imgsearchd.service: ([\d.]+) (\w+)", result.stdout)
    assert match, result.stdout[-2000:] + result.stderr
    score, level = float(match.group(1)), match.group(2)
    assert level in ("PERFECT", "SAFE", "OK"), (score, level)
    readme = (REPO / "README.md").read_text()
    assert f"{score} {level}" in readme, "README states a different exposure figure"


def test_unit_has_the_essentials():
    unit = (REPO / "imgsearchd.service").read_text()
    for line in (
        "Type=notify",
        "Restart=on-failure",
        "StateDirectory=imgsearchd",
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "ProtectHome=read-only",
        "NoNewPrivileges=yes",
        "PrivateTmp=yes",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "SystemCallFilter=@system-service",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ):
        assert re.search(rf"^{re.escape(line)}$", unit, re.M), line
    assert re.search(r"^WatchdogSec=\d+", unit, re.M)
    assert re.search(r"^# GPU access", unit, re.M)


# -- the notify protocol ------------------------------------------------------------------------


def health(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


def stats(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/stats", timeout=10) as r:
        return json.loads(r.read())


def make_photos(folder: Path, photos, count: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    names = list(photos)
    for i in range(count):
        photo = photos[names[i % len(names)]].convert("RGB")
        photo.resize((64 + i % 7, 64 + i % 5)).rotate(i * 3).save(folder / f"p{i:04d}.jpg", quality=85)


@pytest.mark.process
def test_notify_protocol_with_the_real_daemon(tmp_path, photos):
    port = free_port()
    first, second = tmp_path / "first", tmp_path / "second"
    make_photos(first, photos, 150)
    make_photos(second, photos, 3)
    base: dict[str, dict[str, Any]] = {
        "server": {"port": port},
        "index": {
            "data_dir": str(tmp_path / "data"),
            "extractors": ["efficientnet"],
            "fallback_extractor": "",
            "rebuild_after_seconds": 60,
        },
        "watch": {"directories": [str(first)]},
        "extractors.efficientnet": {**EFFICIENTNET_FP32, "batch_size": 16},
    }
    config = write_config(tmp_path / "imgsearchd.toml", base)
    notify = NotifySocket(tmp_path / "notify.sock")
    health_at_ready: list[int] = []
    notify.on_ready.append(lambda: health_at_ready.append(health(port)))
    env = {**os.environ, "NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "1000000"}
    env.pop("WATCHDOG_PID", None)
    proc = subprocess.Popen(
        cli_command("serve", "--config", str(config)),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready = notify.wait_for("READY", "1")
        assert health_at_ready and health_at_ready[0] == 200  # READY only once /health answers 200
        notify.wait_for("WATCHDOG", "1", after=ready, timeout=10)
        status_index = notify.wait_for("STATUS", after=0, timeout=60)
        deadline = time.monotonic() + 120
        while stats(port)["images"] < 150:
            assert time.monotonic() < deadline, "watched folder not indexed"
            time.sleep(0.2)
        statuses = [m["STATUS"] for _, m in notify.messages if "STATUS" in m]
        assert any(re.fullmatch(r"indexing \d+/\d+, [\d.]+ img/s", s) for s in statuses), statuses
        notify.wait_for("STATUS", "idle, 150 images", after=status_index, timeout=30)

        # SIGHUP with a folder added: RELOADING=1 + MONOTONIC_USEC, then READY=1, then it is watched
        write_config(config, {**base, "watch": {"directories": [str(first), str(second)]}})
        mark = len(notify.messages)
        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        proc.send_signal(signal.SIGHUP)
        reloading = notify.wait_for("RELOADING", "1", after=mark, timeout=30)
        stamp = int(notify.messages[reloading][1]["MONOTONIC_USEC"])
        assert before <= stamp <= time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        notify.wait_for("READY", "1", after=reloading, timeout=30)
        assert str(second) in [w["folder"] for w in stats(port)["watch"]]
        deadline = time.monotonic() + 60
        while stats(port)["images"] < 153:
            assert time.monotonic() < deadline, "the folder added by the reload was not indexed"
            time.sleep(0.2)

        # a broken config on SIGHUP: rejected, the old settings stay
        (tmp_path / "imgsearchd.toml").write_text("[server]\nport = 'nope'\n")
        mark = len(notify.messages)
        proc.send_signal(signal.SIGHUP)
        notify.wait_for("READY", "1", after=mark, timeout=30)
        assert [w["folder"] for w in stats(port)["watch"]] == [str(first), str(second)]
        assert health(port) == 200
    finally:
        mark = len(notify.messages)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        notify.close()
    assert "reload rejected" in err and "server.port must be int" in err
    assert proc.returncode == 0, err
    assert any(m.get("STOPPING") == "1" for _, m in notify.messages[mark:])
    conn = sqlite3.connect(tmp_path / "data" / "catalog.sqlite3")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT COUNT(*) FROM files WHERE state='indexed'").fetchone()[0] == 153


@pytest.mark.process
def test_sigterm_while_indexing_exits_0_and_keeps_every_committed_batch(tmp_path, photos):
    port = free_port()
    folder = tmp_path / "photos"
    make_photos(folder, photos, 200)
    config = write_config(
        tmp_path / "imgsearchd.toml",
        {
            "server": {"port": port},
            "index": {"data_dir": str(tmp_path / "data"), "extractors": ["efficientnet"], "fallback_extractor": ""},
            "watch": {"directories": [str(folder)]},
            "extractors.efficientnet": {**EFFICIENTNET_FP32, "batch_size": 16},
        },
    )
    proc = subprocess.Popen(
        cli_command("serve", "--config", str(config)), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 120
        while health(port) != 200 or (stats(port)["images"] or 0) < 16:
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.1)
        seen = stats(port)["images"]
    finally:
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert time.monotonic() - started < 30  # well within TimeoutStopSec
    conn = sqlite3.connect(tmp_path / "data" / "catalog.sqlite3")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    kept = conn.execute("SELECT COUNT(*) FROM files WHERE state='indexed'").fetchone()[0]
    assert seen <= kept <= 200


def test_notifier_is_a_no_op_outside_systemd():
    notifier = Notifier({})
    assert not notifier.enabled and notifier.ready() is False and notifier.watchdog_usec == 0


def test_notifier_abstract_socket_and_watchdog_pid(tmp_path):
    assert Notifier({"NOTIFY_SOCKET": "@imgsearchd-test"}).address == "\0imgsearchd-test"
    assert Notifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "5000000", "WATCHDOG_PID": "1"}).watchdog_usec == 0
    assert (
        Notifier({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "5000000", "WATCHDOG_PID": str(os.getpid())}).watchdog_usec
        == 5000000
    )
