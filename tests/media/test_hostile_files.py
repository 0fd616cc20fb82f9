"""Files a careless or hostile user leaves around, through the real service and HTTP server:
names that are not UTF-8, links out of the allowed folders, ``//`` paths, files that fail
once and then become readable, and a batch that fails for a reason nobody foresaw."""

from __future__ import annotations

import base64
import json
import os
import time
import urllib.parse
import urllib.request

import pytest
from PIL import Image

from imgsearchd.store.catalog import Catalog

from helpers import free_port, live_server, server_config, wait_for, without_file_permissions_bypass
from served import serve

LATIN1_NAME = b"caf\xe9 cr\xe8me.jpg"  # Latin-1, as old archives and zip extractions leave them


def raw_get(live, route: str, image: bytes) -> tuple[int, dict]:
    """GET with the path's exact bytes percent-encoded, as any HTTP client can send them."""
    url = f"{live.base}{route}?image={urllib.parse.quote(image)}"
    try:
        with urllib.request.urlopen(url, timeout=120) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_a_name_that_is_not_utf8_is_indexed_with_its_folder_and_searchable_by_name(tmp_path, photos):
    """Issue 10 item 1: one such name made every batch fail; 0 of 14 files were indexed."""
    folder = tmp_path / "archive"
    folder.mkdir()
    names = list(photos)
    for i in range(13):
        photos[names[i % len(names)]].convert("RGB").rotate(i * 7).save(folder / f"p{i:02d}.jpg")
    odd = os.path.join(os.fsencode(folder), LATIN1_NAME)
    photos["chelsea"].transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(odd, format="JPEG")  # its own content
    with live_server(server_config(tmp_path, server={"allowed_roots": [str(tmp_path)]})) as live:
        status, started = live.get("/add", image=str(folder))
        assert status == 202, started
        job = live.wait_job(started["job"], timeout=120)
        assert job["found"] == 14 and job["outcomes"] == {"embedded": 14}, job
        status, stats = live.get("/stats")
        assert stats["images"] == 14 and stats["failed"]["total"] == 0
        status, found = raw_get(live, "/search", odd)
        assert status == 200, found
        best = found["results"][0]
        assert base64.b64decode(best["path_base64"]) == odd and best["distance"] < 1e-3
        assert best["image"] == os.fsdecode(odd)  # the \\udcXX escapes read back in Python
        assert all("path_base64" not in r for r in found["results"][1:])
        status, removed = raw_get(live, "/remove", odd)
        assert status == 200 and removed["removed"] == 1


def test_double_slash_paths_are_the_same_file(tmp_path, photos):
    """Issue 10 item 9: ``//photos/x.png`` and ``/photos/x.png`` were two rows."""
    photos["coffee"].save(tmp_path / "x.png")
    with live_server(server_config(tmp_path, server={"allowed_roots": [str(tmp_path)]})) as live:
        assert live.get("/add", image=str(tmp_path / "x.png"))[1]["status"] == "indexed"
        status, again = live.get("/add", image="/" + str(tmp_path / "x.png"))
        assert status == 200 and again == {"image": str(tmp_path / "x.png"), "status": "unchanged", "embedded": False}
        assert live.get("/stats")[1]["files"] == 1
        status, found = live.get("/search", image="//" + str(tmp_path / "x.png"), limit=5)
        assert [r["image"] for r in found["results"]] == [str(tmp_path / "x.png")]


def test_links_out_of_the_allowed_folders_are_skipped_counted_and_never_read(tmp_path, photos):
    """Issue 10 item 8: folder /add and the watcher followed links out of the roots."""
    watched, outside = tmp_path / "watched", tmp_path / "outside"
    watched.mkdir()
    (outside / "deep").mkdir(parents=True)
    photos["rocket"].save(outside / "secret.jpg")
    photos["astronaut"].save(outside / "deep" / "secret2.jpg")
    photos["coffee"].save(watched / "own.jpg")
    (watched / "inner").mkdir()
    photos["chelsea"].save(watched / "inner" / "cat.jpg")
    (watched / "to-secret.jpg").symlink_to(outside / "secret.jpg")
    (watched / "to-deep").symlink_to(outside / "deep")
    (watched / "to-inner.jpg").symlink_to(watched / "inner" / "cat.jpg")  # inside: fine
    config = server_config(tmp_path, watch={"directories": [str(watched)]})
    with live_server(config) as live:
        scan = wait_for(lambda: live.get("/stats")[1]["watch"][0].get("last_scan"), 60, "the first scan")
        assert scan["outside_links"] == 2 and scan["found"] == 3, scan
        wait_for(lambda: live.get("/stats")[1]["images"] == 3, 60, "the watched folder to be indexed")
        # a link made while watching is seen by the watcher, opened, found outside, and refused
        (watched / "late.jpg").symlink_to(outside / "secret.jpg")
        wait_for(lambda: live.get("/stats")[1]["failed"]["by_reason"].get("outside_roots") == 1, 60, "the late link")
        status, body = live.get("/add", image=str(watched / "late.jpg"))
        assert status == 403 and body["reason"] == "outside_roots", body
        status, started = live.get("/add", image=str(watched))
        assert status == 202 and live.wait_job(started["job"])["found"] == 3
        status, found = live.get("/search", image=str(watched / "own.jpg"), limit=10)
        hits = {r["image"] for r in found["results"]}
        assert not any("secret" in hit or "to-deep" in hit or "late" in hit for hit in hits), hits
        assert live.get("/search", image=str(watched / "to-secret.jpg"))[0] == 403


def test_a_batch_that_fails_unexpectedly_is_retried_one_by_one_and_reported(tmp_path, photos, monkeypatch):
    """Issue 10 item 4: a failed batch's paths were never reported; jobs stayed "indexing"."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, name in enumerate(["chelsea", "coffee", "rocket", "astronaut", "hubble"]):
        photos[name].convert("RGB").save(folder / f"{i}-{name}.jpg")
    poisoned = str(folder / "2-rocket.jpg")
    original = Catalog.record_batch

    def record_batch(self, results):  # a bug that strikes one file, and with it its whole batch
        results = list(results)
        if any(r.path == poisoned for r in results):
            raise ValueError("a bug that only this file triggers")
        return original(self, results)

    monkeypatch.setattr(Catalog, "record_batch", record_batch)
    with live_server(server_config(tmp_path, server={"allowed_roots": [str(tmp_path)]})) as live:
        status, started = live.get("/add", image=str(folder))
        job = live.wait_job(started["job"], timeout=120)
        assert job["state"] == "done" and job["outcomes"] == {"embedded": 4, "failed:internal_error": 1}, job
        assert live.get("/stats")[1]["images"] == 4
        status, body = live.get("/add", image=poisoned)
        assert status == 500 and body["reason"] == "internal_error" and "ValueError" in body["error"], body


@pytest.mark.process
def test_a_file_that_failed_while_unreadable_is_indexed_once_readable(tmp_path, photos):
    """Issue 10 item 3: a failed file with unchanged size and mtime stayed failed for ever.

    The daemon runs without root's permission bypass, so mode 000 really is unreadable.
    """
    prefix = without_file_permissions_bypass()
    watched = tmp_path / "watched"
    watched.mkdir()
    os.chmod(tmp_path, 0o755)
    photos["coffee"].save(watched / "ok.jpg")
    photos["chelsea"].save(watched / "locked.jpg")
    photos["rocket"].save(watched / "later.jpg")
    (watched / "locked.jpg").chmod(0)
    (watched / "later.jpg").chmod(0)
    port = free_port()
    config = server_config(tmp_path, server={"port": port}, watch={"directories": [str(watched)]})
    with serve(config, port, prefix=tuple(prefix)) as served:
        get = served.get
        wait_for(lambda: get("/stats")[1]["failed"]["total"] == 2, 60, "both locked files to fail")
        (watched / "locked.jpg").chmod(0o644)  # no new content, no new mtime: only the watcher's event
        wait_for(lambda: get("/stats")[1]["images"] == 2, 60, "the file unlocked to be indexed")
        (watched / "later.jpg").chmod(0o644)
        time.sleep(0.1)
        status, body = get("/add", image=str(watched / "later.jpg"))  # an explicit /add tries again
        assert status == 200 and body["status"] == "indexed", body
        assert get("/stats")[1]["failed"]["total"] == 0
    assert served.proc.returncode == 0, served.log_tail()
