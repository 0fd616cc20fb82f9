"""Folders watched at run time through the API: ``GET/POST/DELETE /folders`` and ``/folders/browse``.

A real daemon (service and HTTP server on a loopback port), real watchdog observers on
temporary folders, a real SQLite catalogue; the daemon is restarted once, to show that an
added folder is watched again and that a file dropped while it was stopped is found.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from openapi_checker import OpenApiChecker

from helpers import Live, live_server, server_config, wait_for
from image_factory import jpeg_bytes

OPENAPI = OpenApiChecker()  # every answer these tests get is checked against /openapi.json
FAST = {"check_seconds": 0.2, "poll_seconds": 0.3, "settle_seconds": 0.5, "debounce_seconds": 0.1}


# -- helpers --------------------------------------------------------------------------------------


@contextmanager
def daemon(config: Path) -> Iterator[Live]:
    """The real daemon on this config, its watch quick enough for tests, idle at start."""
    with live_server(config, watch_overrides=FAST) as live:
        quiet(live)
        yield live


def quiet(live: Live, timeout: float = 60) -> None:
    """Wait until nothing is settling, scanning, queued or being indexed."""
    watcher = live.service.watcher
    assert watcher is not None
    wait_for(lambda: watcher.idle() and live.service.queue.join(0), timeout, "the watcher and indexer to be idle")


def picture(photos: dict[str, Image.Image], i: int) -> bytes:
    """A distinct small JPEG for every ``i``."""
    names = sorted(photos)
    return jpeg_bytes(photos[names[i % len(names)]].resize((64 + i, 64 + 2 * i)).rotate(i * 7))


def asked(live: Live, method: str, route: str, target: str, body: bytes | None = None) -> tuple[int, Any]:
    """One request; its answer, checked against what /openapi.json documents for its status."""
    headers = {"Content-Type": "application/json"} if body is not None else None
    status, answer, _ = live.request(method, target, body=body, headers=headers)
    OPENAPI.check(method, route, status, answer)
    return status, answer


def watch(live: Live, folder: Path | str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    payload = json.dumps(body if body is not None else {"folder": str(folder)}).encode()
    return asked(live, "POST", "/folders", "/folders", payload)


def query(**params: str) -> str:
    """A query string; a name that is not UTF-8 goes as its own bytes (as the CLI sends it)."""
    return "?" + urllib.parse.urlencode(params, encoding="utf-8", errors="surrogateescape")


def unwatch(live: Live, folder: Path | str) -> tuple[int, Any]:
    return asked(live, "DELETE", "/folders", "/folders" + query(folder=str(folder)))


def browse(live: Live, path: str | None = None) -> tuple[int, Any]:
    return asked(live, "GET", "/folders/browse", "/folders/browse" + (query(path=path) if path is not None else ""))


def folders(live: Live) -> Any:
    status, body = asked(live, "GET", "/folders", "/folders")
    assert status == 200, body
    return body


def listed(live: Live) -> dict[str, dict[str, Any]]:
    return {entry["folder"]: entry for entry in folders(live)["folders"]}


def embedded(live: Live) -> int:
    """Pictures the daemon's models embedded so far."""
    assert live.service.loaded is not None
    return sum(e.images_embedded for e in live.service.loaded.extractors.values())


def found(live: Live, path: Path) -> bool:
    """Whether a search by the picture at ``path`` finds ``path`` itself (it is indexed and searchable)."""
    status, body, _ = live.request("GET", "/search" + query(image=str(path), limit="50"))
    assert status == 200, body
    return str(path) in {r["image"] for r in body["results"]}


def wait_found(live: Live, path: Path, what: str) -> None:
    wait_for(lambda: found(live, path), 60, what)


# -- the life of an added folder: watched, kept across a restart, removed ---------------------------


def test_an_added_folder_is_watched_kept_across_a_restart_and_removed_cleanly(tmp_path, photos):
    root = tmp_path / "root"
    configured, added = root / "configured", root / "added"
    configured.mkdir(parents=True)
    (added / "sub").mkdir(parents=True)
    (configured / "c0.jpg").write_bytes(picture(photos, 0))
    first = added / "a1.jpg"
    first.write_bytes(picture(photos, 1))
    config = server_config(tmp_path, server={"allowed_roots": [str(root)]}, watch={"directories": [str(configured)]})
    with daemon(config) as live:
        entries = listed(live)
        assert entries[str(configured)]["source"] == "config"
        assert entries[str(configured)]["removable"] is False and entries[str(configured)]["added_at"] is None
        assert entries[str(configured)]["state"] == "watching" and entries[str(configured)]["files"] == 1
        assert str(added) not in entries

        before = embedded(live)
        status, body = watch(live, added)
        assert status == 201, body
        assert body["folder"] == str(added) and body["source"] == "added" and body["already"] is False
        job = live.wait_job(body["job"]["id"])
        assert job["state"] == "done" and job["found"] == 1, job
        quiet(live)  # the job and the watcher's first scan both looked at it: embedded once
        assert embedded(live) - before == 1
        assert found(live, first)
        dropped = added / "sub" / "a2.jpg"
        dropped.write_bytes(picture(photos, 2))
        wait_found(live, dropped, "a file dropped into the added folder to be found")
        entry = listed(live)[str(added)]
        assert entry["source"] == "added" and entry["removable"] is True and entry["added_at"]
        assert entry["state"] in ("watching", "polling") and entry["files"] == 2 and entry["job"]["id"] == job["id"]

        status, body = watch(live, added)  # again: nothing changes
        assert status == 200 and body["already"] is True and body["source"] == "added", body
        status, body = unwatch(live, configured)
        assert status == 409, body
        assert "watch.directories" in body["error"] and str(config) in body["error"], body
        assert body["watched_by"] == "config"

    while_stopped = added / "a3.jpg"
    while_stopped.write_bytes(picture(photos, 3))
    with daemon(config) as live:
        entries = listed(live)
        assert entries[str(added)]["source"] == "added", entries
        wait_found(live, while_stopped, "a file dropped while the daemon was stopped to be found")
        after_restart = added / "a4.jpg"
        after_restart.write_bytes(picture(photos, 4))
        wait_found(live, after_restart, "a file dropped after the restart to be found")
        quiet(live)

        status, body = unwatch(live, added)
        assert status == 200, body
        assert body == {"folder": str(added), "removed": 4}
        assert str(added) not in listed(live)
        for path in (first, dropped, while_stopped, after_restart):
            assert path.exists(), "unwatching touched the files"
            assert not found(live, path), f"{path} is still searchable"
        assert found(live, configured / "c0.jpg")
        late = added / "a5.jpg"
        late.write_bytes(picture(photos, 5))
        quiet(live)
        assert live.service.catalog is not None
        assert live.service.catalog.count_under(str(added)) == 0, "a folder no longer watched was indexed"
        status, body = unwatch(live, added)
        assert status == 404 and str(added) in body["error"], body


# -- the rules: the same as /add, one watch per folder --------------------------------------------


def test_watching_refuses_what_add_refuses_and_folders_inside_watched_ones(tmp_path, photos):
    root = tmp_path / "root"
    outer, inner, other = root / "outer", root / "outer" / "inner", root / "other"
    for folder in (inner / "deep", other, tmp_path / "outside"):
        folder.mkdir(parents=True)
    (root / "a.jpg").write_bytes(picture(photos, 0))
    os.symlink(tmp_path / "outside", root / "link-out")
    with daemon(server_config(tmp_path, server={"allowed_roots": [str(root)]})) as live:
        for bad, words in (
            ({"folder": "relative/path"}, "absolute"),
            ({"folder": str(root) + "\x00x"}, "NUL"),
            ({"folder": ""}, "folder"),
            ({}, "folder"),
            ({"folder": str(other), "zz": 1}, "unknown field"),
            ({"folder": 3}, "string"),
        ):
            status, body = watch(live, "", bad)
            assert status == 400 and words in body["error"], (bad, body)
        status, body = asked(live, "POST", "/folders", "/folders", b"{not json")
        assert status == 400 and "JSON" in body["error"], body
        for outside in (tmp_path / "outside", root / "link-out"):
            status, body = watch(live, outside)
            assert status == 403 and body["reason"] == "outside_roots", body
            assert "add it or a folder above it to server.allowed_roots in the settings file" in body["error"], body
        status, body = watch(live, root / "missing")
        assert status == 404 and "does not exist" in body["error"], body
        status, body = watch(live, root / "a.jpg")
        assert status == 404 and "not a folder" in body["error"], body

        assert watch(live, inner)[0] == 201
        assert watch(live, inner / "deep")[0] == 409
        status, body = watch(live, outer)  # holds an added folder: takes its place
        assert status == 201, body
        entries = listed(live)
        assert str(outer) in entries and str(inner) not in entries, entries
        status, body = watch(live, inner)
        assert status == 409 and body["watched_by"] == str(outer) and str(outer) in body["error"], body
        status, body = unwatch(live, inner)
        assert status == 404, body
        status, body = unwatch(live, "relative")
        assert status == 400, body
        status, body = unwatch(live, tmp_path / "outside")
        assert status == 403, body
        assert live.service.catalog is not None
        assert [f.path for f in live.service.catalog.watched_folders()] == [str(outer)]

        big = root / "big"  # unwatched at once: what its job queued is dropped, not embedded then forgotten
        big.mkdir()
        for i in range(80):
            (big / f"b{i:02d}.jpg").write_bytes(picture(photos, i))
        before = embedded(live)
        status, body = watch(live, big)
        assert status == 201, body
        assert unwatch(live, big)[0] == 200
        quiet(live)
        assert live.service.catalog.count_under(str(big)) == 0
        assert embedded(live) - before <= 32, "the files of a folder no longer watched were embedded"
        assert live.wait_job(body["job"]["id"], timeout=60)["state"] == "done"


def test_added_folders_are_no_roots_and_a_reload_keeps_them(tmp_path, photos, monkeypatch):
    """With no roots set, any folder may be watched: the first one added must not fence in the rest.
    A reload (SIGHUP) keeps the added folders; one the new settings put outside the roots is listed
    offline, not watched, and can still be removed."""
    home = tmp_path / "home"
    pictures, scans = home / "Pictures", home / "Scans"
    for folder in (pictures / "2024", scans, home / ".cache"):
        folder.mkdir(parents=True)
    (home / "notes.txt").write_text("not a folder")
    os.symlink(pictures, home / "Pics")
    os.symlink(pictures / "2024", home / "This year")
    monkeypatch.setenv("HOME", str(home))
    (pictures / "p.jpg").write_bytes(picture(photos, 1))
    (scans / "s.jpg").write_bytes(picture(photos, 2))
    config = server_config(tmp_path)
    with daemon(config) as live:
        assert watch(live, pictures)[0] == 201
        status, body = watch(live, scans)
        assert status == 201, body
        status, body = watch(live, live.service.config.data_dir)  # its thumbnails are no photos
        assert status == 403 and body["reason"] == "data_folder", body
        wait_found(live, scans / "s.jpg", "the added folder's picture to be indexed")
        status, body = watch(live, home / "Pics")  # the same folder through a link
        assert status == 200 and body["already"] is True and body["folder"] == str(pictures), body
        status, body = watch(live, home / "This year")  # inside it, through a link
        assert status == 409 and body["watched_by"] == str(pictures), body
        body = folders(live)
        assert body["roots"] == [] and body["anywhere"] is True, body
        status, body = browse(live)  # no roots: the home folder
        assert status == 200, body
        assert body["path"] == str(home) and body["parent"] == str(tmp_path), body
        watched = [(f["name"], f["watched"]) for f in body["folders"]]
        assert watched == [("Pics", True), ("Pictures", True), ("Scans", True), ("This year", True)], watched

        def narrow() -> None:
            server_config(tmp_path, server={"allowed_roots": [str(pictures)]})  # the same file, narrowed
            live.service.apply_config(live.service.config.reload())

        def shown() -> set[str]:  # every searchable picture (a small library: the search is exact)
            status, body, _ = live.request("GET", "/search" + query(image=str(pictures / "p.jpg"), limit="50"))
            assert status == 200, body
            return {r["image"] for r in body["results"]}

        narrow()  # the folder now forbidden: no result may point at a file the daemon refuses to show
        assert str(scans / "s.jpg") not in shown() and str(pictures / "p.jpg") in shown()
        server_config(tmp_path)  # allowed again: its pictures come back
        live.service.apply_config(live.service.config.reload())
        wait_found(live, scans / "s.jpg", "a folder allowed again to be searchable again")
        narrow()
        watcher = live.service.watcher
        assert watcher is not None
        assert [s["folder"] for s in watcher.status()] == [str(pictures)]
        entries = listed(live)
        assert entries[str(pictures)]["state"] in ("watching", "polling", "starting"), entries
        assert entries[str(scans)]["state"] == "offline" and "allowed_roots" in entries[str(scans)]["error"]
        status, body = unwatch(live, scans)
        assert status == 200 and body["folder"] == str(scans), body
        dropped = pictures / "after-reload.jpg"
        dropped.write_bytes(picture(photos, 9))
        wait_found(live, dropped, "a file dropped into an added folder after a reload to be found")

        server_config(tmp_path, watch={"directories": [str(home)]})  # the settings now watch around it
        live.service.apply_config(live.service.config.reload())
        entries = listed(live)
        assert list(entries) == [str(home)] and entries[str(home)]["source"] == "config", entries
        assert [s["folder"] for s in watcher.status()] == [str(home)]  # watched once


# -- browsing for the page's Add folder box -----------------------------------------------------------


def test_browse_lists_sub_folders_inside_the_roots_only(tmp_path):
    root = tmp_path / "root"
    for name in ("b", "a", ".hidden", "c/deeper"):
        (root / name).mkdir(parents=True)
    (root / "file.jpg").write_bytes(b"x")
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", root / "link-out")
    os.symlink(root / "a", root / "link-in")
    many = root / "many"
    for i in range(501):
        (many / f"d{i:03d}").mkdir(parents=True)
    config = server_config(tmp_path, server={"allowed_roots": [str(root)]}, watch={"directories": [str(root / "a")]})
    with daemon(config) as live:
        status, body = browse(live)
        assert status == 200, body
        assert body == {
            "path": None,
            "parent": None,
            "folders": [
                {"name": "a", "path": str(root / "a"), "watched": True},
                {"name": "root", "path": str(root), "watched": False},
            ],
            "truncated": False,
        }
        status, body = browse(live, str(root))
        assert status == 200, body
        assert body["path"] == str(root) and body["parent"] is None, body  # an allowed root
        assert [f["name"] for f in body["folders"]] == ["a", "b", "c", "link-in", "many"]
        assert [f["watched"] for f in body["folders"]] == [True, False, False, True, False]
        status, body = browse(live, str(root / "c"))
        assert body["parent"] == str(root) and body["folders"] == [
            {"name": "deeper", "path": str(root / "c" / "deeper"), "watched": False}
        ], body
        status, body = browse(live, str(many))
        assert status == 200 and len(body["folders"]) == 500 and body["truncated"] is True, body
        assert body["folders"][-1]["name"] == "d499"
        for path, expected in (
            (tmp_path / "outside", 403),
            (root / "link-out", 403),
            (root / "file.jpg", 404),
            (root / "missing", 404),
            ("relative", 400),
        ):
            status, body = browse(live, str(path))
            assert status == expected and body["error"], (path, body)


@pytest.mark.skipif(os.uname().sysname != "Linux", reason="a file name that is not UTF-8 needs Linux")
def test_a_folder_named_in_latin_1_is_watched_and_listed_with_its_bytes(tmp_path, photos):
    root = tmp_path / "root"
    root.mkdir()
    name = os.fsdecode(b"caf\xe9")
    folder = root / name
    folder.mkdir()
    (folder / "p.jpg").write_bytes(picture(photos, 0))
    with daemon(server_config(tmp_path, server={"allowed_roots": [str(root)]})) as live:
        status, body = browse(live, str(root))
        assert status == 200, body
        raw = base64.b64encode(os.fsencode(folder)).decode()
        assert body["folders"] == [{"name": name, "path": str(folder), "path_base64": raw, "watched": False}]
        status, body = watch(live, folder)
        assert status == 201 and body["folder"] == str(folder) and body["path_base64"] == raw, body
        live.wait_job(body["job"]["id"])
        assert found(live, folder / "p.jpg")
        entry = listed(live)[str(folder)]
        assert entry["files"] == 1 and entry["path_base64"] == raw
        status, body = unwatch(live, folder)
        assert status == 200 and body["removed"] == 1, body


def test_every_answer_met_above_matched_the_openapi_document():
    """Runs last in this module: each success and error of the four routes was met and checked."""
    met = {(method, route, status) for method, route, status in OPENAPI.seen}
    expected = {
        ("GET", "/folders", "200"),
        *(("POST", "/folders", s) for s in ("201", "200", "400", "403", "404", "409")),
        *(("DELETE", "/folders", s) for s in ("200", "400", "403", "404", "409")),
        *(("GET", "/folders/browse", s) for s in ("200", "400", "403", "404")),
    }
    assert expected <= met, expected - met
