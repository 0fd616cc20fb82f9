"""The command line: `imgsearchd serve` as a real process, and the thin client commands."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time

import pytest

from helpers import EFFICIENTNET_FP32, cli_command, free_port, run_cli, wait_healthy, write_config


@pytest.mark.process
def test_serve_and_thin_clients(tmp_path, photos):
    port = free_port()
    photo_dir = tmp_path / "photos"
    photo_dir.mkdir()
    for name in ("chelsea", "coffee", "motorcycle_left", "motorcycle_right"):
        photos[name].save(photo_dir / f"{name}.jpg")
    elsewhere = tmp_path / "elsewhere"  # not watched: only the API adds and removes files here
    elsewhere.mkdir()
    config = write_config(
        tmp_path / "c.toml",
        {
            "server": {"port": port, "allowed_roots": [str(elsewhere)]},
            "index": {"data_dir": str(tmp_path / "data"), "extractors": ["efficientnet"], "fallback_extractor": ""},
            "extractors.efficientnet": dict(EFFICIENTNET_FP32),
        },
    )
    down = run_cli("stats", "--config", str(config))
    assert down.returncode == 4 and "not running" in down.stderr and "imgsearchd serve" in down.stderr
    proc = subprocess.Popen(
        cli_command("serve", "--config", str(config), "--watch", str(photo_dir)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_healthy(port, proc)
        deadline = time.monotonic() + 60
        while json.loads(run_cli("stats", "--config", str(config)).stdout)["images"] < 4:
            assert time.monotonic() < deadline, "watched folder not indexed at start"
            time.sleep(0.3)
        found = run_cli("search", str(photo_dir / "motorcycle_left.jpg"), "--limit", "2", "--config", str(config))
        assert found.returncode == 0, found.stderr
        assert [r["image"] for r in json.loads(found.stdout)["results"]] == [
            str(photo_dir / "motorcycle_left.jpg"),
            str(photo_dir / "motorcycle_right.jpg"),
        ]
        photos["rocket"].save(elsewhere / "rocket.png")
        added = run_cli("add", str(elsewhere / "rocket.png"), "--config", str(config))
        assert added.returncode == 0 and json.loads(added.stdout)["status"] == "indexed"
        removed = run_cli("remove", str(elsewhere / "rocket.png"), "--config", str(config))
        assert removed.returncode == 0 and json.loads(removed.stdout)["removed"] == 1
        again = run_cli("remove", str(elsewhere / "rocket.png"), "--config", str(config))
        assert again.returncode == 1 and "not in the index" in json.loads(again.stderr)["error"]
        text = run_cli("search", "--text", "a cat", "--config", str(config))
        assert text.returncode == 2 and "no text encoder" in text.stderr  # a 400: a usage error
        assert run_cli("rebuild", "--config", str(config)).returncode == 0
        _a_second_daemon_is_told_at_once(config, tmp_path, proc.pid, port)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "stopped" in err


def _a_second_daemon_is_told_at_once(config, tmp_path, pid, port):
    """Another ``serve`` (on another port) or a ``search --local`` on the same data folder: one
    line naming the address and pid, exit 5, before any model loads (it loaded for 6 s and died
    with a traceback from an index's lock)."""
    said = f"a daemon already serves this data folder {tmp_path / 'data'} (http://127.0.0.1:{port}, pid {pid})"
    started = time.monotonic()
    second = run_cli("serve", "--config", str(config), "--port", str(free_port()), timeout=60)
    assert (second.returncode, second.stderr) == (5, f"imgsearchd: {said}\n")
    local = run_cli("search", str(tmp_path / "photos" / "coffee.jpg"), "--local", "--config", str(config))
    assert local.returncode == 5 and local.stderr.startswith(f"imgsearchd: {said}; search it without --local")
    assert time.monotonic() - started < 20  # no model loaded (each run pays only Python's start)


@pytest.mark.process
def test_serve_exits_non_zero_on_a_bad_config(tmp_path):
    bad = write_config(tmp_path / "bad.toml", {"server": {"port": "eighty"}})
    result = run_cli("serve", "--config", str(bad))
    assert result.returncode == 2 and "server.port must be int" in result.stderr


@pytest.mark.process
def test_serve_exits_non_zero_when_the_port_is_taken(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        config = write_config(
            tmp_path / "c.toml",
            {"server": {"port": port}, "index": {"data_dir": str(tmp_path / "d"), "extractors": ["efficientnet"]}},
        )
        result = run_cli("serve", "--config", str(config), timeout=60)
    assert result.returncode == 1 and "cannot listen" in result.stderr
