"""``imgsearchd watch``, ``unwatch`` and ``folders`` against a real daemon on loopback (real
watchdog, real SQLite): a folder watched from the CLI is indexed, watched, still watched after a
restart of the daemon, and removed cleanly; a person gets a table and one-line errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from imgsearchd.cli.folders import folders_view, unwatched_view, watched_view

from cli_terminal import on_terminal
from helpers import Live, cli_here, live_server, server_config, wait_for, write_config
from image_factory import jpeg_bytes

FAST = {"check_seconds": 0.2, "poll_seconds": 0.3, "settle_seconds": 0.5, "debounce_seconds": 0.1}


@contextmanager
def daemon(config: Path, cli_config: Path) -> Iterator[Live]:
    """The real daemon, and a settings file for the CLI that points at its port (new at each start)."""
    with live_server(config, watch_overrides=FAST) as live:
        write_config(cli_config, {"server": {"port": int(live.base.rsplit(":", 1)[1])}})
        yield live


def picture(photos: dict[str, Image.Image], i: int) -> bytes:
    names = sorted(photos)
    return jpeg_bytes(photos[names[i % len(names)]].resize((64 + i, 64 + 2 * i)).rotate(i * 7))


def cli_json(capsys: pytest.CaptureFixture[str], cli_config: Path, *args: str) -> Any:
    """Run a command in this process; its JSON answer (stdout is not a terminal: JSON)."""
    result = cli_here(capsys, *args, "--config", str(cli_config))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def found(capsys: pytest.CaptureFixture[str], cli_config: Path, path: Path) -> bool:
    """Whether ``imgsearchd search PATH`` finds PATH itself (it is indexed and searchable)."""
    answer = cli_json(capsys, cli_config, "search", str(path), "--limit", "50")
    return str(path) in {r["image"] for r in answer["results"]}


def test_watch_a_folder_from_the_cli_across_a_restart_then_unwatch_it(tmp_path, photos, capsys, monkeypatch):
    root = tmp_path / "root"
    configured, added = root / "configured", root / "added"
    configured.mkdir(parents=True)
    added.mkdir()
    (configured / "c.jpg").write_bytes(picture(photos, 0))
    first = added / "a1.jpg"
    first.write_bytes(picture(photos, 1))
    config = server_config(tmp_path, server={"allowed_roots": [str(root)]}, watch={"directories": [str(configured)]})
    cli_config = tmp_path / "cli.toml"
    monkeypatch.chdir(root)
    with daemon(config, cli_config) as live:
        answer = cli_json(capsys, cli_config, "watch", "added", "--wait")  # relative: made absolute
        assert answer["folder"] == str(added) and answer["already"] is False, answer
        assert answer["job"]["state"] == "done" and answer["job"]["found"] == 1, answer
        assert found(capsys, cli_config, first)
        dropped = added / "a2.jpg"
        dropped.write_bytes(picture(photos, 2))
        wait_for(lambda: found(capsys, cli_config, dropped), 60, "the dropped file to be found")
        again = cli_json(capsys, cli_config, "watch", str(added))
        assert again["already"] is True, again
        refused = cli_here(capsys, "unwatch", str(configured), "--config", str(cli_config))
        assert refused.returncode == 1 and "watch.directories" in refused.stderr, refused
        refused = cli_here(capsys, "watch", "missing", "--config", str(cli_config))
        assert refused.returncode == 1 and f"{root / 'missing'} does not exist" in refused.stderr, refused

    while_stopped = added / "a3.jpg"
    while_stopped.write_bytes(picture(photos, 3))
    with daemon(config, cli_config) as live:
        listing = cli_json(capsys, cli_config, "folders")
        sources = {entry["folder"]: entry["source"] for entry in listing["folders"]}
        assert sources == {str(configured): "config", str(added): "added"}, listing
        wait_for(lambda: found(capsys, cli_config, while_stopped), 60, "the file dropped while stopped to be found")
        assert live.service.watcher is not None
        wait_for(lambda: live.service.watcher.idle() and live.service.queue.join(0), 60, "the daemon to be idle")
        answer = cli_json(capsys, cli_config, "unwatch", "added")
        assert answer == {"folder": str(added), "removed": 3}, answer
        for path in (first, dropped, while_stopped):
            assert path.exists() and not found(capsys, cli_config, path), path
        listing = cli_json(capsys, cli_config, "folders")
        assert [entry["folder"] for entry in listing["folders"]] == [str(configured)], listing


def test_folders_is_a_table_on_a_terminal_and_errors_are_one_line(tmp_path, photos):
    root = tmp_path / "root"
    configured = root / "configured"
    configured.mkdir(parents=True)
    (configured / "c.jpg").write_bytes(picture(photos, 0))
    config = server_config(tmp_path, server={"allowed_roots": [str(root)]}, watch={"directories": [str(configured)]})
    cli_config = tmp_path / "cli.toml"
    added = root / "added"
    added.mkdir()
    with daemon(config, cli_config) as live:
        wait_for(lambda: live.get("/folders")[1]["folders"][0]["files"] == 1, 60, "the config folder indexed")
        code, lines, err = on_terminal("watch", str(added), "--config", str(cli_config))
        assert code == 0 and lines[0] == f"watching {added} from now on (kept across restarts)", (lines, err)
        code, lines, err = on_terminal("folders", "--config", str(cli_config))
        assert code == 0, err
        assert lines[0].split() == ["FOLDER", "SOURCE", "STATE", "FILES", "FAILED", "PENDING", "JOB"]
        assert lines[1].split()[:5] == [str(configured), "config", "watching", "1", "0"], lines
        assert lines[2].split()[:2] == [str(added), "added"] and lines[2].split()[-1] in ("0/0", "-"), lines
        assert lines[-1] == f"folders may be watched inside: {root}", lines
        code, lines, err = on_terminal("unwatch", str(configured), "--config", str(cli_config))
        assert code == 1 and lines == [] and err.count("\n") == 1 and "watch.directories" in err, (lines, err)
        code, lines, err = on_terminal("unwatch", str(root / "never"), "--config", str(cli_config))
        assert code == 1 and lines == [] and err.count("\n") == 1, (lines, err)
        assert "(see imgsearchd folders)" in err and "GET /folders" not in err, err  # the CLI's command, not a route


def test_the_table_of_an_added_folder_shows_its_job_and_why_it_is_offline():
    answer = {
        "folders": [
            {
                "folder": "/p/caf\udce9",
                "source": "added",
                "state": "offline",
                "files": 3,
                "failed": 1,
                "pending": 2,
                "job": {"id": "job-1", "state": "indexing", "found": 5, "done": 3},
                "added_at": "2026-12-07T00:10:00+00:00",
                "removable": True,
                "error": "missing",
            }
        ],
        "roots": [],
        "anywhere": True,
    }
    lines = folders_view(answer).splitlines()
    row = lines[1].split()
    assert row[0] == "/p/caf\\xe9" and row[1] == "added" and row[3:] == ["offline", "3", "1", "2", "indexing", "3/5"]
    assert lines[2] == "/p/caf\\xe9: missing" and lines[3] == "folders may be watched anywhere"
    assert folders_view({"folders": [], "roots": [], "anywhere": True}).startswith("no folders watched")


def test_watch_and_unwatch_say_what_happened_in_words():
    job = {"id": "job-4", "state": "scanning", "found": 12, "done": 0}
    started = watched_view({"folder": "/p/x", "source": "added", "already": False, "job": job}).splitlines()
    assert started == [
        "watching /p/x from now on (kept across restarts)",
        "indexing: job job-4, 12 pictures found so far",
        "progress: imgsearchd folders",
    ]
    configured = watched_view({"folder": "/p/x", "source": "config", "already": True, "job": None})
    assert configured == "already watched by the settings (watch.directories): /p/x"
    gone = unwatched_view({"folder": "/p/x", "removed": 1})
    assert gone == "stopped watching /p/x: 1 picture left the index (the files are untouched)"
