"""A SIGKILL in the middle of a resolve of 200 files, then a restart: no file lost, none in both
places, every journaled file done or untouched, the resolution ended, and its undo still works.

The files move across file systems (a tmpfs mounted for the test to the disk), so each is a copy,
an fsync, a rename and an unlink: the resolve takes long enough for the test to see, by reading
the catalogue's journal read-only, some files done and some not, and kill the daemon right then.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from imgsearchd.config import load_config
from mounts import tmpfs

from helpers import free_port, server_config, skimage_photos, wait_for
from image_factory import jpeg_bytes
from served import Served, serve

pytestmark = [pytest.mark.fault, pytest.mark.slow]
FILES = 200
PAD = 512 * 1024  # bytes after the picture's end: a copy of each takes a few milliseconds


@pytest.fixture
def mounted(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "mnt", "256m", "the files must move across file systems") as point:
        yield point


def post(served: Served, route: str, body: object) -> tuple[int, dict]:
    return served.request("POST", route, json.dumps(body).encode(), "application/json", timeout=300)


def done_count(db: sqlite3.Connection) -> tuple[int, int]:
    """(files done, files journaled) of the newest resolution, read-only."""
    row = db.execute(
        "SELECT SUM(state = 'done'), COUNT(*) FROM resolution_files"
        " WHERE resolution = (SELECT MAX(id) FROM resolutions)"
    ).fetchone()
    return int(row[0] or 0), int(row[1] or 0)


def test_a_sigkill_mid_resolve_leaves_every_file_done_or_untouched(tmp_path, mounted):
    data = jpeg_bytes(skimage_photos()["chelsea"]) + b"\0" * PAD
    lib = mounted / "lib"
    (lib / "copies").mkdir(parents=True)
    keep = lib / "keep.jpg"
    keep.write_bytes(data)
    copies = [lib / "copies" / f"c{i:03d}.jpg" for i in range(FILES)]
    for copy in copies:
        copy.write_bytes(data)
    to = tmp_path / "moved"
    targets = [to / "mnt" / "lib" / "copies" / c.name for c in copies]  # relative to the allowed root
    config = server_config(tmp_path, server={"allowed_roots": [str(tmp_path)]})
    catalog = load_config(config).catalog_path
    port = free_port()
    body = {"groups": [{"keep": str(keep), "others": [str(c) for c in copies]}], "action": "move", "to": str(to)}

    with serve(config, port) as served:
        status, job = served.get("/add", image=str(lib))
        assert status == 202, job
        wait_for(lambda: served.get(f"/jobs/{job['job']}")[1]["state"] == "done", 180, "the folder to be indexed")
        answers: list[object] = []
        request = threading.Thread(target=lambda: answers.append(_try_post(served, body)), daemon=True)
        request.start()
        db = sqlite3.connect(f"file:{catalog}?mode=ro", uri=True)
        try:
            while request.is_alive():
                done, journaled = done_count(db)
                if 0 < done < journaled:
                    served.proc.send_signal(signal.SIGKILL)
                    break
            else:
                pytest.fail(f"the resolve ended before the test saw it half-way: {answers}")
        finally:
            db.close()
        served.proc.wait(timeout=30)
        request.join(timeout=30)

    with serve(config, port) as served:  # the start finishes or rolls back each file
        at_target = [t.exists() for t in targets]
        at_source = [c.exists() for c in copies]
        assert all(a != b for a, b in zip(at_target, at_source)), "a file is in both places, or in neither"
        assert all(p.read_bytes() == data for p, there in zip(targets + copies, at_target + at_source) if there)
        assert not [p for p in to.rglob("*") if p.name.startswith(".imgsearchd-")], "a temporary file is left"
        db = sqlite3.connect(f"file:{catalog}?mode=ro", uri=True)
        try:
            states = dict(db.execute("SELECT CAST(path AS TEXT), state FROM resolution_files").fetchall())
        finally:
            db.close()
        assert {states[str(c)] for c in copies} <= {"done", "untouched"}
        assert [states[str(c)] == "done" for c in copies] == at_target  # done: moved; untouched: where it was
        status, listed = served.get("/duplicates/resolutions")
        newest = listed["resolutions"][0]
        assert (status, newest["state"], newest["files"]) == (200, "done", FILES)
        assert newest["done"] == sum(at_target) and 0 < sum(at_target) < FILES
        status, undone = post(served, "/duplicates/undo", {"undo": newest["undo"]})
        assert (status, undone["restored"], undone["skipped"]) == (200, sum(at_target), 0), undone
        assert all(c.read_bytes() == data for c in copies) and not any(t.exists() for t in targets)
        assert keep.read_bytes() == data


def _try_post(served: Served, body: object) -> object:
    try:
        return post(served, "/duplicates/resolve", body)
    except OSError as exc:  # the daemon was killed mid-answer: what the test wants
        return exc
