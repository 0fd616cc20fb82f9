"""Crash safety: an index run killed with SIGKILL at several points loses nothing that matters."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import cli_command, run_cli

pytestmark = pytest.mark.fault

N_FILES = 72


def make_distinct_photos(folder: Path, photos) -> list[Path]:
    """N small, different JPEGs cut from the real photos."""
    folder.mkdir()
    rng = np.random.default_rng(7)
    sources = [p.convert("RGB") for p in photos.values()]
    paths = []
    for i in range(N_FILES):
        src = sources[i % len(sources)]
        x, y = rng.integers(0, src.width - 160), rng.integers(0, src.height - 160)
        crop = np.asarray(src.crop((x, y, x + 160, y + 160)), dtype=np.int16)
        crop = np.clip(crop + rng.integers(-8, 9, crop.shape), 0, 255).astype(np.uint8)
        path = folder / f"img_{i:03d}.jpg"
        Image.fromarray(crop).save(path, quality=90)
        paths.append(path)
    return paths


def count_files(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute("SELECT COUNT(*) FROM files").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return 0  # not created yet


def check_integrity(db: Path) -> None:
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        if conn.execute("PRAGMA user_version").fetchone()[0] == 0:
            return  # killed before the schema was made: the next run makes it
        dupes = conn.execute("SELECT path, COUNT(*) FROM files GROUP BY path HAVING COUNT(*) > 1").fetchall()
        assert dupes == []
    finally:
        conn.close()


@pytest.mark.parametrize("kill_points", [[0, 1, 24, 48]])
def test_sigkill_at_several_points_then_a_clean_run(tmp_path, photos, offline_config, kill_points):
    paths = make_distinct_photos(tmp_path / "photos", photos)
    db = tmp_path / "data" / "catalog.sqlite3"
    for threshold in kill_points:
        proc = subprocess.Popen(
            cli_command("index", str(tmp_path / "photos"), "--config", str(offline_config)),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        try:
            while time.monotonic() < deadline and proc.poll() is None:
                if (threshold == 0 and db.exists()) or (threshold and count_files(db) >= threshold):
                    break
                time.sleep(0.01)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
        assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
        check_integrity(db)
    final = run_cli("index", str(tmp_path / "photos"), "--config", str(offline_config))
    assert final.returncode == 0, final.stderr
    summary = json.loads(final.stdout)
    assert summary["failed"] == {}
    check_integrity(db)
    conn = sqlite3.connect(db)
    rows = conn.execute(
        "SELECT CAST(f.path AS TEXT), f.state, COUNT(v.vector) FROM files f LEFT JOIN vectors v"
        " ON v.content_hash = f.content_hash GROUP BY f.id"
    ).fetchall()
    assert sorted(r[0] for r in rows) == sorted(str(p) for p in paths)  # every file exactly once
    assert all(state == "indexed" and n == 1 for _, state, n in rows)
    # the killed runs did real work that the last run did not redo
    assert summary["unchanged"] >= kill_points[-1] - 8
