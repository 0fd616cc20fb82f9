"""What the CLI says besides its answers: counts in the right number, progress off a terminal
as plain lines (no bar), notes on stderr only for a person at a terminal, and the daemon's
pointers to its routes turned into the CLI's commands."""

from __future__ import annotations

import io
import json
import sys
from argparse import Namespace
from typing import Any

from imgsearchd.cli import duplicates as cli_duplicates
from imgsearchd.cli import folders as cli_folders
from imgsearchd.cli.client import ApiFailure
from imgsearchd.cli.duplicate_views import duplicates_view
from imgsearchd.cli.views import add_view, job_line
from imgsearchd.config import Config


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Scripted:
    """Stands in for the HTTP client: each call gets the next answer (an ApiFailure is raised)."""

    def __init__(self, *answers: Any) -> None:
        self.answers = list(answers)

    def call(self, method: str, path: str, *rest: Any) -> tuple[int, dict[str, Any]]:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def job(state: str, found: int, done: int) -> tuple[int, dict[str, Any]]:
    return 200, {"id": "j1", "folder": "/p/x", "state": state, "found": found, "done": done, "outcomes": {}}


def test_watch_wait_off_a_terminal_writes_plain_lines_without_a_bar(monkeypatch, capsys):
    started = (201, {"folder": "/p/x", "source": "added", "already": False, "job": {"id": "j1", "state": "scanning"}})
    client = Scripted(started, job("indexing", 1, 0), job("done", 1, 1))
    monkeypatch.setattr(cli_folders, "client_for", lambda config: client)
    monkeypatch.setattr("imgsearchd.cli.wait.time.sleep", lambda seconds: None)
    args = Namespace(path="/p/x", wait=True, json=False)
    assert cli_folders.cmd_watch(args, Config()) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["job"]["state"] == "done"
    assert err.splitlines() == ["imgsearchd: /p/x: indexing 0/1 file (0%)", "imgsearchd: /p/x: done 1/1 file (100%)"]


def test_counts_are_in_the_right_number():
    from imgsearchd.cli.output import counted

    assert [counted(n, "file") for n in (0, 1, 2)] == ["0 files", "1 file", "2 files"]
    assert counted(1, "query", "queries") == "1 query" and counted(3, "query", "queries") == "3 queries"
    page = {
        "groups": [{"kind": "identical", "files": 1, "similarity": 1.0, "members": []}],
        "total": 1,
        "threshold": 0.9,
        "extractor": "clip",
        "offset": 0,
        "next_offset": None,
        "stale": False,
    }
    lines = duplicates_view(page).splitlines()  # type: ignore[arg-type]
    assert lines[0].startswith("identical (1 file, ") and lines[-1].startswith("1 group at threshold 0.9"), lines
    assert job_line({"state": "indexing", "done": 0, "found": 1, "folder": "/f"}).startswith("indexing 0/1 file  /f")
    added = add_view({"job": "j1", "folder": "/f", "files_found": 1, "scan_complete": False})
    assert added.startswith("adding /f: job j1, 1 file found so far")


def duplicates_args() -> Namespace:
    fields = ("extractor", "threshold", "kind", "folder", "sort", "limit", "offset", "keep_in")
    return Namespace(**dict.fromkeys(fields), json=True)


COMPUTING = (202, {"computing": {"phase": "reading", "done": 0, "total": 0}})
PAGE = (200, {"groups": [], "total": 0})


def test_duplicates_notes_its_progress_only_on_a_terminal(monkeypatch, capsys):
    monkeypatch.setattr(cli_duplicates.time, "sleep", lambda seconds: None)
    monkeypatch.setattr(cli_duplicates, "client_for", lambda config: Scripted(COMPUTING, PAGE))
    assert cli_duplicates.duplicates_remote(duplicates_args(), Config()) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["total"] == 0 and err == ""  # piped: a script gets the answer, no chatter
    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    monkeypatch.setattr(cli_duplicates, "client_for", lambda config: Scripted(COMPUTING, PAGE))
    assert cli_duplicates.duplicates_remote(duplicates_args(), Config()) == 0
    assert screen.getvalue() == "imgsearchd: computing duplicates (reading, 0/0)\n"


def test_an_error_that_points_to_a_route_points_to_the_command(monkeypatch, capsys):
    refused = ApiFailure(404, {"error": "/p/x is not a watched folder (see GET /folders)", "folder": "/p/x"})
    monkeypatch.setattr(cli_folders, "client_for", lambda config: Scripted(refused))
    monkeypatch.setattr(sys, "stdout", Terminal())  # a person: one line
    assert cli_folders.cmd_unwatch(Namespace(path="/p/x", json=False), Config()) == 1
    err = capsys.readouterr().err
    assert err == "imgsearchd: /p/x is not a watched folder (see imgsearchd folders) (HTTP 404)\n"
