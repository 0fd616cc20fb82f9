"""folders: walking a folder, names that are never images, planning a folder against the catalogue."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from imgsearchd.api.errors import status_of
from imgsearchd.errors import Refused
from imgsearchd.ingest.folders import is_hidden_or_temporary, is_wanted_image, plan_folder, probe_folder, walk_images
from imgsearchd.store.catalog import Catalog
from imgsearchd.store.rows import FileResult

from helpers import live_server, server_config, wait_for, without_file_permissions_bypass

EXTENSIONS = [".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"]


def test_walk_skips_hidden_and_temporary_and_survives_symlink_loops(tmp_path):
    root = tmp_path / "root"
    (root / "a" / "b").mkdir(parents=True)
    (root / ".git").mkdir()
    for rel in (
        "x.jpg",
        "a/y.JPG",
        "a/b/z.png",
        ".git/h.jpg",
        ".dot.jpg",
        "a/tmp.jpg.part",
        "a/t.jpg~",
        "a/doc.txt",
        "~$lock.jpg",
        "a/dl.crdownload",
    ):
        (root / rel).write_bytes(b"x")
    os.symlink(root, root / "a" / "b" / "loop")  # a loop back to the top
    os.symlink(root / "a", root / "alias")  # the same folder twice
    found = list(walk_images(str(root), EXTENSIONS))
    assert sorted(os.path.relpath(p, root) for p in found) == ["a/b/z.png", "a/y.JPG", "x.jpg"]
    assert list(walk_images(str(root), EXTENSIONS, recursive=False)) == [str(root / "x.jpg")]


def test_walk_reports_unreadable_folders_and_goes_on(tmp_path):
    root = tmp_path / "root"
    (root / "locked").mkdir(parents=True)
    (root / "open").mkdir()
    (root / "locked" / "a.jpg").write_bytes(b"x")
    (root / "open" / "b.jpg").write_bytes(b"x")
    (root / "locked").chmod(0)
    code = (
        "import sys, json; from imgsearchd.ingest.folders import walk_images\n"
        "errors = []\n"
        "found = list(walk_images(sys.argv[1], ['.jpg'], on_error=lambda p, e: errors.append(p)))\n"
        "print(json.dumps([found, errors]))\n"
    )
    try:
        out = subprocess.run(
            [*without_file_permissions_bypass(), sys.executable, "-c", code, str(root)],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        (root / "locked").chmod(0o755)
    found, errors = json.loads(out.stdout)
    assert found == [str(root / "open" / "b.jpg")]
    assert errors == [str(root / "locked")]


@pytest.mark.parametrize(
    "name,hidden",
    [
        ("a.jpg", False),
        (".a.jpg", True),
        ("a.jpg.part", True),
        ("a.jpg~", True),
        ("a.tmp", True),
        ("a.crdownload", True),
        ("~$a.jpg", True),
        ("a.JPG.PART", True),
    ],
)
def test_hidden_or_temporary_names(name, hidden):
    assert is_hidden_or_temporary(name) is hidden


def test_wanted_images_by_name_only(tmp_path):
    root = str(tmp_path)
    exts = (".jpg", ".png")
    assert is_wanted_image(root, f"{root}/a/b.jpg", exts, recursive=True)
    assert not is_wanted_image(root, f"{root}/a/b.jpg", exts, recursive=False)
    assert is_wanted_image(root, f"{root}/b.png", exts, recursive=False)
    assert not is_wanted_image(root, f"{root}/.cache/b.jpg", exts, recursive=True)
    assert not is_wanted_image(root, f"{root}/b.jpg.part", exts, recursive=True)
    assert not is_wanted_image(root, f"{root}/b.gif", exts, recursive=True)
    assert not is_wanted_image(root, "/elsewhere/b.jpg", exts, recursive=True)


def test_probe_says_why_a_folder_cannot_be_watched(tmp_path):
    (tmp_path / "file.jpg").write_bytes(b"x")
    identity, problem = probe_folder(str(tmp_path))
    assert problem is None and identity == (os.stat(tmp_path).st_dev, os.stat(tmp_path).st_ino)
    assert probe_folder(str(tmp_path / "gone")) == (None, "missing")
    assert probe_folder(str(tmp_path / "file.jpg")) == (None, "not a folder")


def _record(catalog: Catalog, path: Path, vector: np.ndarray) -> None:
    st = path.stat()
    catalog.record_batch(
        [FileResult(str(path), st.st_size, st.st_mtime_ns, f"hash-{path.name}", {"m": ("model-1", vector)})]
    )


def test_plan_compares_sizes_and_mtimes_and_writes_nothing(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("same.jpg", "changed.jpg", "offline.jpg", "lacking.jpg"):
        (folder / name).write_bytes(b"x" * 10)
    vector = np.ones(4, dtype=np.float32) / 2
    with Catalog(tmp_path / "catalog.sqlite3") as catalog:
        for name in ("same.jpg", "changed.jpg", "offline.jpg", "gone.jpg"):
            path = folder / name
            if name == "gone.jpg":
                path.write_bytes(b"y")
            _record(catalog, path, vector)
        (folder / "gone.jpg").unlink()
        catalog.set_offline(str(folder / "offline.jpg"))
        catalog.record_batch(
            [
                FileResult(
                    str(folder / "lacking.jpg"),
                    10,
                    (folder / "lacking.jpg").stat().st_mtime_ns,
                    "hash-lacking",
                    {"other": ("model-2", vector)},
                )
            ]
        )
        time.sleep(0.01)
        (folder / "changed.jpg").write_bytes(b"x" * 11)
        (folder / "new.jpg").write_bytes(b"n")
        seq = catalog.current_seq()

        plan = plan_folder(catalog, str(folder), EXTENSIONS, models={"m": "model-1"})

        assert catalog.current_seq() == seq  # nothing written
        assert sorted(os.path.basename(p) for p, _ in plan.to_add) == ["changed.jpg", "lacking.jpg", "new.jpg"]
        assert [os.path.basename(p) for p in plan.to_restore] == ["offline.jpg"]
        assert [os.path.basename(p) for p in plan.vanished] == ["gone.jpg"]
        assert plan.unchanged == 1 and plan.found == 5 and plan.unreadable == []
        with pytest.raises(FileNotFoundError):
            plan_folder(catalog, str(tmp_path / "nowhere"), EXTENSIONS)


def test_plan_forgets_catalogued_files_reached_through_a_link_that_now_leads_outside(tmp_path):
    """Rows indexed before the link led out of the roots must go: they cannot be /removed."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    (outside / "deep").mkdir(parents=True)
    (outside / "deep" / "a.jpg").write_bytes(b"x")
    (root / "own.jpg").write_bytes(b"y")
    (root / "link").symlink_to(outside / "deep")
    with Catalog(tmp_path / "c.sqlite3") as catalog:
        catalog.record_batch(
            [FileResult(str(root / "link" / "a.jpg"), 1, 1, "h"), FileResult(str(root / "own.jpg"), 1, 1, "g")]
        )
        plan = plan_folder(catalog, str(root), (".jpg",), roots=[os.path.realpath(root)])
        assert plan.outside == [str(root / "link")]
        assert plan.vanished == [str(root / "link" / "a.jpg")]
        assert plan.paths == [str(root / "own.jpg")]
        unrestricted = plan_folder(catalog, str(root), (".jpg",))
        assert unrestricted.vanished == [] and unrestricted.outside == []


def test_retry_waits_longer_after_each_failure_and_only_for_reasons_that_may_pass():
    from imgsearchd.ingest.folders import retry_delay, retry_due
    from imgsearchd.store.rows import FailedFile

    assert [retry_delay(n) for n in (1, 2, 3)] == [60.0, 120.0, 240.0] and retry_delay(50) == 86400.0
    assert retry_due(FailedFile("/p", "unreadable", 1, 1000.0), 1061.0)
    assert not retry_due(FailedFile("/p", "unreadable", 2, 1000.0), 1061.0)
    assert not retry_due(FailedFile("/p", "corrupt", 1, 0.0), 1e9)  # content: only when the file changes


# -- issue 26 S5, O5: one name per file, and an allowed area that does not follow a swapped folder --


def test_a_folder_link_inside_the_root_is_walked_under_its_own_name_only(tmp_path):
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    (root / "real").mkdir(parents=True)
    elsewhere.mkdir()
    (root / "real" / "a.jpg").write_bytes(b"x")
    (elsewhere / "b.jpg").write_bytes(b"y")
    (root / "alias").symlink_to(root / "real")  # sorts before "real": it used to win the name
    (root / "outer").symlink_to(elsewhere)  # out of this root: its only name here
    found = list(walk_images(str(root), EXTENSIONS))
    assert found == [str(root / "outer" / "b.jpg"), str(root / "real" / "a.jpg")]
    # a link is the only way into a hidden folder: followed (review: Camera -> .store/Camera)
    (root / ".store" / "Camera").mkdir(parents=True)
    (root / ".store" / "Camera" / "c.jpg").write_bytes(b"z")
    (root / "Camera").symlink_to(root / ".store" / "Camera")
    assert str(root / "Camera" / "c.jpg") in list(walk_images(str(root), EXTENSIONS))


def test_a_scan_forgets_rows_catalogued_under_a_folder_links_name(tmp_path):
    """Rows an older version (or an /add of a subfolder) catalogued through a link to a folder
    the walk reaches by its own name: the file still exists, so they used to stay for good."""
    root = tmp_path / "root"
    (root / "real").mkdir(parents=True)
    (root / "real" / "a.jpg").write_bytes(b"x")
    (root / "alias").symlink_to(root / "real")
    with Catalog(tmp_path / "c.db") as catalog:
        for name in ("alias", "real"):
            path = str(root / name / "a.jpg")
            st = os.stat(path)
            catalog.record_batch([FileResult(path, st.st_size, st.st_mtime_ns, "h", {})])
        plan = plan_folder(catalog, str(root), EXTENSIONS)
        assert plan.vanished == [str(root / "alias" / "a.jpg")], plan.vanished


def test_add_through_a_folder_link_names_the_file_as_the_scan_does(tmp_path, photos):
    """S5: ``/add ROOT/alias/a.jpg`` made a second entry for ``ROOT/real/a.jpg``, left in search
    after the link was deleted until the next rescan."""
    root = tmp_path / "root"
    (root / "real").mkdir(parents=True)
    photos["chelsea"].convert("RGB").save(root / "real" / "a.jpg")
    (root / "alias").symlink_to(root / "real")
    config = server_config(tmp_path, watch={"directories": [str(root)]})
    with live_server(config) as live:
        status, body = live.get("/add", image=str(root / "alias" / "a.jpg"))
        assert status == 200 and body["image"] == str(root / "real" / "a.jpg"), body
        status, body = live.get("/add", image=str(root / "alias"))
        assert status == 202 and body["folder"] == str(root / "real"), body
        job = body["job"]
        wait_for(lambda: live.get(f"/jobs/{job}")[1]["state"] == "done", what="the folder job")
        paths = [bytes(r[0]) for r in live.service.catalog._reader().execute("SELECT path FROM files")]
        assert paths == [os.fsencode(root / "real" / "a.jpg")], paths
        status, body = live.get("/remove", image=str(root / "alias" / "a.jpg"))  # the name it was added by
        assert status == 200 and body["image"] == str(root / "real" / "a.jpg"), body


def test_a_watched_folder_made_after_start_as_a_link_is_resolved_when_it_appears(tmp_path):
    """A root that does not exist yet is not kept resolved: made later (here as a link to a
    disk mounted elsewhere) it is where its files are allowed."""
    from imgsearchd.config import load_config

    watched, disk = tmp_path / "watched", tmp_path / "disk"
    disk.mkdir()
    config = load_config(server_config(tmp_path, watch={"directories": [str(watched)]}))
    assert config.allowed_roots == [str(watched)]  # not there yet
    watched.symlink_to(disk)
    assert config.allowed_roots == [str(disk)]
    watched.unlink()
    watched.mkdir()  # and once it exists it is kept: a later swap does not move it
    assert config.allowed_roots == [str(disk)]


def test_a_watched_folder_swapped_for_a_link_does_not_take_the_allowed_area_along(tmp_path, photos):
    """O5: the allowed roots were resolved on every check, so a watched folder replaced by a link
    to /etc made /etc allowed: its files indexed and served by /original."""
    watched, secret = tmp_path / "watched", tmp_path / "secret"
    watched.mkdir()
    secret.mkdir()
    photos["coffee"].convert("RGB").save(secret / "private.jpg")
    config = server_config(tmp_path, watch={"directories": [str(watched)]})
    with live_server(config, load=False) as live:
        # Swapped once the daemon exists but before it has used its roots: resolved lazily, at
        # first use, they followed the link (and a thread resolving just after a swap could
        # replace what another kept just before it: seen under load in CI).
        watched.rmdir()
        watched.symlink_to(secret)
        live.service.load()
        assert live.service.allowed_roots() == [str(watched)]  # as resolved at start
        through = str(watched / "private.jpg")
        with pytest.raises(Refused) as refused:
            live.service.check_path(through)
        assert status_of(refused.value) == 403 and refused.value.extra["reason"] == "outside_roots"
        for route in ("/add", "/original", "/thumbnail"):
            status, body = live.get(route, image=through) if route == "/add" else fetch_status(live, route, through)
            assert status == 403 and body.get("reason") == "outside_roots", (route, body)
        # the start scan walks the folder through the link: the file is refused, not indexed
        failed = wait_for(lambda: live.get("/stats")[1]["failed"]["by_reason"].get("outside_roots"), what="the refusal")
        assert failed == 1 and live.get("/stats")[1]["images"] == 0


def fetch_status(live, route: str, image: str) -> tuple[int, dict]:
    status, body, _ = live.request("GET", route, params={"image": image})
    return status, body
