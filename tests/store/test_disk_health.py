"""A data folder that fills up or turns read-only: a daemon state, never lost work.

The fault test mounts a real 8 MB tmpfs as the data folder (as root; skipped otherwise),
fills it while files arrive, frees it, and checks that every file is indexed in the end.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from imgsearchd.store.disk_health import MAX_DELAY, StorageHealth, is_storage_error

from helpers import cli_command, free_port, server_config, wait_for
from served import Served, serve


def test_storage_errors_are_told_apart_from_bugs():
    assert is_storage_error(sqlite3.OperationalError("database or disk is full"))
    assert is_storage_error(sqlite3.OperationalError("attempt to write a readonly database"))
    assert is_storage_error(OSError(errno.ENOSPC, "No space left on device"))
    assert not is_storage_error(sqlite3.IntegrityError("UNIQUE constraint failed"))
    assert not is_storage_error(UnicodeEncodeError("utf-8", "\udce9", 0, 1, "surrogates not allowed"))
    assert not is_storage_error(ValueError("a bug"))


def test_storage_health_backs_off_and_recovers():
    health = StorageHealth()
    delays = [health.failed(sqlite3.OperationalError("database or disk is full")) for _ in range(10)]
    assert delays[:3] == [1.0, 2.0, 4.0] and delays[-1] == MAX_DELAY
    state = health.as_dict()
    assert state["state"] == "failing" and state["attempts"] == 10 and "disk is full" in state["error"]
    assert health.succeeded() and health.ok and not health.succeeded()
    assert health.as_dict() == {"state": "ok", "recoveries": 1}


@pytest.fixture
def small_disk(tmp_path: Path):
    """A real 8 MB tmpfs, mounted for the test and unmounted after."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path) -> Path:
    """Fill the file system under ``folder`` to the last byte."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def stopped_cleanly(served: Served) -> None:
    """After ``serve`` ended: exit 0, no traceback in the log."""
    log = served.log.read_text(errors="replace")
    assert served.proc.returncode == 0, log[-3000:]
    assert "Traceback" not in log, log[-3000:]


@pytest.mark.fault
def test_full_then_freed_then_read_only_data_folder_loses_nothing(tmp_path, small_disk, photos):
    """Issue 10 item 2, through the real daemon: a full disk left 1505 files pending for ever,
    and a read-only one answered /remove with 500 and logged a traceback at SIGTERM."""
    watched = tmp_path / "watched"
    watched.mkdir()
    photos["coffee"].save(watched / "first.jpg")
    port = free_port()
    data = small_disk / "data"
    config = server_config(
        tmp_path,
        server={"port": port, "allowed_roots": [str(tmp_path)]},
        index={"data_dir": str(data)},
        watch={"directories": [str(watched)]},
    )
    with serve(config, port) as served:
        get = served.get
        wait_for(lambda: get("/stats")[1]["images"] == 1, 60, "the first file")
        filler = fill(small_disk)
        names = list(photos)
        for i in range(40):
            photos[names[i % len(names)]].convert("RGB").rotate(i * 9).resize((96, 96)).save(watched / f"n{i:02d}.jpg")
        photos["rocket"].save(tmp_path / "single.jpg")

        stats = wait_for(
            lambda: (s := get("/stats")[1])["storage"]["state"] == "failing" and s, 60, "the daemon to notice"
        )
        assert "full" in stats["storage"]["error"] and stats["pending"] > 0, stats["storage"]

        def degraded() -> dict | None:
            status, health = get("/health")
            return health if status == 200 and health["status"] == "degraded" else None

        health = wait_for(degraded, 30, "/health to say degraded")
        assert health is not None and health["storage"]["state"] == "failing"
        # A full disk may still take a small commit (SQLite reuses its WAL file after a
        # checkpoint), so a request may get through; it must never wait out the timeout.
        started = time.monotonic()
        status, body = get("/add", image=str(tmp_path / "single.jpg"))
        assert status == 200 or (status == 503 and "cannot write the catalogue" in body["error"]), body
        assert time.monotonic() - started < 10  # at once, not after the 120 s wait
        status, body = get("/remove", image=str(watched / "first.jpg"))
        assert status == 200 or (status == 503 and "removal is queued" in body["error"]), body
        assert get("/search", image=str(watched / "first.jpg"))[0] == 200  # searches go on

        filler.unlink()  # space again: everything queued is indexed without anyone asking
        # the 40 new files and single.jpg are indexed, and the queued removal of first.jpg is done
        wait_for(lambda: get("/stats")[1]["images"] == 41, 120, "every file after the disk was freed")
        stats = wait_for(lambda: (s := get("/stats")[1])["pending"] == 0 and s, 30, "the queue to drain")
        assert stats["storage"]["state"] == "ok" and stats["storage"]["recoveries"] >= 1
        assert stats["failed"]["total"] == 0 and stats["images"] == 41
        assert get("/search", image=str(tmp_path / "single.jpg"), limit="1")[1]["results"][0]["distance"] < 1e-3
        assert get("/health")[1]["status"] == "ok"
    stopped_cleanly(served)
    conn = sqlite3.connect(data / "catalog.sqlite3")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("SELECT COUNT(*) FROM files WHERE state='indexed'").fetchone()[0] == 41
    conn.close()

    # the same data folder, now read-only: a clear message and a non-zero exit, no traceback
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        done = subprocess.run(
            cli_command("serve", "--config", str(config)), capture_output=True, text=True, timeout=120
        )
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=False)
    assert done.returncode == 1, done.stderr
    assert "mounted read-only" in done.stderr and "Traceback" not in done.stderr, done.stderr
