"""The CLI for people and scripts against a real daemon on loopback: a proxy in the
environment is bypassed, lines for a person on a terminal and JSON when piped or with --json
(every command), --paths, upload of a query file the daemon may not read, ``add FOLDER --wait``,
usage errors (exit 2)."""

from __future__ import annotations

import io
import json
import os
import pty
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from imgsearchd.cli import remote as cli_remote
from imgsearchd.cli.answers import DuplicateMember, SearchResult
from imgsearchd.cli.output import human_size, member_line, results_table, shown
from imgsearchd.cli.wait import follow_job
from imgsearchd.config import Config

from cli_terminal import PROXY_ENV, on_terminal
from helpers import cli_command, cli_here, live_server, run_cli, server_config, write_config


class Daemon:
    def __init__(self, live: Any, cli_config: Path, indexed: Path, outside: Path, incoming: Path) -> None:
        self.live, self.cli_config, self.indexed, self.outside, self.incoming = (
            live,
            cli_config,
            indexed,
            outside,
            incoming,
        )

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, "--config", str(self.cli_config), env=PROXY_ENV, timeout=120)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, photos: dict[str, Any]) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("cli-people")
    indexed, incoming, outside = root / "indexed", root / "incoming", root / "outside"
    for folder in (indexed, incoming, outside):
        folder.mkdir()
    for name in ("chelsea", "coffee", "motorcycle_left", "motorcycle_right"):
        photos[name].save(indexed / f"{name}.jpg")
    for name in ("rocket", "astronaut", "hubble"):
        photos[name].save(incoming / f"{name}.png")
    shutil.copy(indexed / "motorcycle_left.jpg", outside / "query.jpg")  # a copy the daemon may not read
    config = server_config(root, server={"allowed_roots": [str(indexed), str(incoming)]})
    with live_server(config) as live:
        for path in indexed.iterdir():
            status, body = live.get("/add", image=str(path))
            assert status == 200 and body["status"] == "indexed", body
        port = int(live.base.rsplit(":", 1)[1])
        cli_config = write_config(root / "cli.toml", {"server": {"port": port}})
        yield Daemon(live, cli_config, indexed, outside, incoming)


def test_urllib_alone_would_go_through_the_proxy(daemon):
    """The control: with these variables set, plain urllib does not reach the daemon."""
    code = f"import urllib.request; urllib.request.urlopen('{daemon.live.base}/health', timeout=5)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **PROXY_ENV}, timeout=60
    )
    assert result.returncode != 0 and "Connection refused" in result.stderr


def test_every_client_command_bypasses_the_proxy_for_loopback(daemon):
    stats = daemon.cli("stats")
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["images"] >= 4
    query = str(daemon.indexed / "motorcycle_left.jpg")
    piped = daemon.cli("search", query, "--limit", "2")  # piped, no flag: JSON as before
    assert piped.returncode == 0, piped.stderr
    assert [r["image"] for r in json.loads(piped.stdout)["results"]] == [
        query,
        str(daemon.indexed / "motorcycle_right.jpg"),
    ]
    assert json.loads(daemon.cli("search", query, "--json", "--limit", "2").stdout) == json.loads(piped.stdout)
    paths = daemon.cli("search", query, "--paths", "--limit", "2")
    assert paths.stdout.splitlines() == [query, str(daemon.indexed / "motorcycle_right.jpg")]
    combined = daemon.cli("search", query, "+", str(daemon.indexed / "motorcycle_right.jpg"), "--paths")
    assert combined.returncode == 0 and combined.stdout.splitlines()[0].startswith(str(daemon.indexed))
    new = daemon.indexed / "rocket.png"
    shutil.copy(daemon.incoming / "rocket.png", new)
    added = daemon.cli("add", str(new))
    assert added.returncode == 0 and json.loads(added.stdout)["status"] == "indexed", added.stderr
    removed = daemon.cli("remove", str(new))
    assert removed.returncode == 0 and json.loads(removed.stdout)["removed"] == 1
    assert daemon.cli("rebuild").returncode == 0
    dups = daemon.cli("duplicates", "--json")
    assert dups.returncode == 0 and "groups" in json.loads(dups.stdout), dups.stderr


def test_search_of_a_file_the_daemon_may_not_read_uploads_it(daemon):
    query = daemon.outside / "query.jpg"
    status, body = daemon.live.get("/search", image=str(query))
    assert status == 403, body  # the path alone is refused...
    found = daemon.cli("search", str(query), "--paths", "--limit", "2")
    assert found.returncode == 0, found.stderr  # ...so the CLI sends the bytes
    assert found.stdout.splitlines() == [
        str(daemon.indexed / "motorcycle_left.jpg"),
        str(daemon.indexed / "motorcycle_right.jpg"),
    ]
    assert found.stderr == ""  # piped: no note, and no log record ("... INFO imgsearchd: ...")
    code, said = stderr_on_terminal("search", str(query), "--paths", "--limit", "1", "--config", str(daemon.cli_config))
    assert code == 0 and " INFO " not in said, said
    assert f"imgsearchd: the daemon cannot read {query} (HTTP 403); sending the file itself" in said.splitlines()
    weighted = daemon.cli("search", str(query), "+", str(query), "--paths")
    assert weighted.returncode == 0, weighted.stderr  # a combined query uploads each image part
    assert weighted.stdout.splitlines()[0] == str(daemon.indexed / "motorcycle_left.jpg")


def test_a_file_name_that_is_not_utf8_goes_out_and_comes_back_as_its_bytes(daemon, photos):
    """Sent percent-encoded (the daemon decodes it back); ``--paths`` prints the raw bytes,
    even where stdout's encoding is strict (as in a en_US.UTF-8 locale)."""
    name = os.fsencode(daemon.indexed) + b"/caf\xe9.jpg"
    photos["chelsea"].transpose(Image.Transpose.FLIP_TOP_BOTTOM).save(name, "JPEG")
    env = {**os.environ, **PROXY_ENV, "PYTHONIOENCODING": "utf-8:strict"}
    env.pop("IMGSEARCHD_CONFIG", None)
    try:
        added = daemon.cli("add", os.fsdecode(name))
        assert added.returncode == 0 and json.loads(added.stdout)["status"] == "indexed", added.stderr
        search = ["search", os.fsdecode(name), "--limit", "1", "--config", str(daemon.cli_config)]
        found = subprocess.run(cli_command(*search, "--paths"), capture_output=True, env=env, timeout=120)
        assert found.returncode == 0, found.stderr
        assert found.stdout == name + b"\n"
    finally:
        daemon.cli("remove", os.fsdecode(name))
        os.remove(name)


def test_the_table_escapes_control_characters_and_undecodable_bytes():
    rows: list[SearchResult] = [{"image": "/p/\x1b[31mred\ncaf\udce9.jpg", "score": 0.5, "size": 10}]
    assert results_table(rows).splitlines()[1].split()[-1] == "/p/\\x1b[31mred\\ncaf\\xe9.jpg"
    assert shown("/p/état ok.jpg") == "/p/état ok.jpg"
    member: DuplicateMember = {"image": "/p/\x1b]2;owned\x07.jpg", "width": 4, "height": 3, "size": 9, "score": 0.9}
    member |= {"taken": "2020-01-02T03:04:05", "taken_from": "mtime"}
    assert member_line(member) == "  /p/\\x1b]2;owned\\x07.jpg  4x3  9 B  ~2020-01-02 03:04  0.900"


def test_add_folder_wait_follows_the_job_to_the_end(daemon):
    added = daemon.cli("add", str(daemon.incoming), "--wait")
    assert added.returncode == 0, added.stderr
    job = json.loads(added.stdout)
    assert job["state"] == "done" and job["found"] == job["done"] == 3
    assert sum(job["outcomes"].values()) == 3 and "failed" not in job["outcomes"], job
    lines = [line for line in added.stderr.splitlines() if "files" in line]
    assert lines and lines[-1] == f"imgsearchd: {daemon.incoming}: done 3/3 files (100%)", added.stderr
    assert "\r" not in added.stderr and "#" not in added.stderr  # plain lines off a TTY: no bar


def test_search_prints_a_table_on_a_terminal(daemon):
    """A real pseudo-terminal as stdout: score, match level, size, date and path columns; the photos
    have no EXIF date, so the date is the file's mtime, marked with "~"."""
    query = str(daemon.indexed / "coffee.jpg")
    code, lines, err = on_terminal("search", query, "--limit", "3", "--config", str(daemon.cli_config))
    assert code == 0, err
    assert lines[0].split() == ["SCORE", "MATCH", "SIZE", "DATE", "PATH"]
    score, match, size, unit, day, minute, path = lines[1].split()
    assert path == query and float(score) > 0.99 and match == "same" and unit in ("KB", "MB")
    mtime = datetime.fromtimestamp(os.path.getmtime(query))
    assert (day, minute) == (mtime.strftime("~%Y-%m-%d"), mtime.strftime("%H:%M"))
    assert f"{size} {unit}" == human_size(os.path.getsize(query))  # the page's rule: "41 KB", "3.4 KB"
    assert len(lines) == 4


def test_stats_on_a_terminal_is_a_screen_and_json_when_piped(daemon):
    """A person gets a summary that fits a screen, times in local ISO 8601; a pipe the whole answer."""
    code, lines, err = on_terminal("stats", "--config", str(daemon.cli_config))
    assert code == 0, err
    piped = json.loads(daemon.cli("stats").stdout)
    assert len(lines) <= 24 and not lines[0].startswith("{"), lines
    assert lines[0].startswith(f"imgsearchd {piped['version']}: ready")
    assert f"pictures    {piped['images']} indexed" in lines[1]
    assert any(line.startswith("model       efficientnet (searches)") for line in lines), lines
    assert lines[-1] == "(all of it: imgsearchd stats --json)"
    assert json.loads(daemon.cli("stats", "--json").stdout).keys() == piped.keys()
    assert len(daemon.cli("stats").stdout.splitlines()) > 60  # the JSON is the long one


def test_the_other_client_commands_speak_to_people_on_a_terminal(daemon):
    new = daemon.indexed / "hubble.png"
    shutil.copy(daemon.incoming / "hubble.png", new)
    config = ("--config", str(daemon.cli_config))
    code, added, err = on_terminal("add", str(new), *config)
    assert (code, added) == (0, [f"{new}: indexed"]), err
    code, removed, err = on_terminal("remove", str(new), *config)
    assert (code, removed) == (0, [f"{new}: 1 file left the index"]), err
    code, rebuilt, err = on_terminal("rebuild", *config)
    assert (code, rebuilt) == (0, ["rebuilding the index of efficientnet"]), err
    code, dups, err = on_terminal("duplicates", *config)
    total, groups, at = dups[-1].split()[:3]
    assert code == 0 and at == "at" and groups == ("group" if total == "1" else "groups"), (dups, err)
    piped = daemon.cli("duplicates")  # piped without --json: JSON, as every command (it was a table)
    assert piped.returncode == 0 and "groups" in json.loads(piped.stdout)
    assert piped.stderr == "", piped.stderr  # no "computing duplicates" notes off a terminal
    code, refused, err = on_terminal("remove", str(new), *config)  # an error: one line, not a JSON body
    assert code == 1 and refused == [] and err.count("\n") == 1 and "not in the index (HTTP 404)" in err


def test_a_value_the_daemon_refuses_is_a_usage_error(daemon):
    """400 from the daemon: exit 2 and its message in one line (was exit 1 and a JSON body)."""
    text = daemon.cli("search", "--text", "a cat")
    assert text.returncode == 2 and text.stderr.startswith("imgsearchd: ") and "no text encoder" in text.stderr
    assert "{" not in text.stderr, text.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("search", "x", "--limit", "0"),
        ("search", "x", "--limit", "1001"),
        ("search", "x", "--max-distance", "3"),
        ("duplicates", "--threshold", "2"),
        ("duplicates", "--threshold", "0"),
        ("duplicates", "--offset", "-1"),
        ("duplicates", "--kind", "exact"),  # the tiers are identical, copies, similar
        ("duplicates", "resolve", "--kind", "near"),
        ("duplicates", "resolve", "--kind", "copies", "--action", "delete"),  # nothing is deleted for good
        ("duplicates", "undo", "0"),
        ("stats", "--extractor", "vgg"),
        ("serve", "--port", "70000"),
        ("completion", "tcsh"),
    ],
)
def test_bad_values_are_refused_before_anything_is_sent(capsys, args):
    result = cli_here(capsys, *args)
    assert result.returncode == 2 and "error: argument" in result.stderr and not result.stdout, result


def test_the_table_shows_a_date_column_only_when_a_result_has_a_date():
    rows: list[SearchResult] = [
        {"image": "/p/a.jpg", "score": 0.98765, "size": 2048},
        {"image": "/p/b.jpg", "score": 0.5, "size": 10},
    ]
    assert results_table(rows).splitlines()[0].split() == ["SCORE", "SIZE", "PATH"]
    rows[0]["taken"] = "2024-05-01T10:11:12+02:00"
    table = results_table(rows).splitlines()
    assert table[0].split() == ["SCORE", "SIZE", "DATE", "PATH"]
    assert "2024-05-01 10:11" in table[1] and table[1].split()[:3] == ["0.988", "2.0", "KB"]
    assert table[2].split() == ["0.500", "10", "B", "-", "/p/b.jpg"]
    rows[1] |= {"taken": "2020-01-02T03:04:05", "taken_from": "mtime"}
    assert results_table(rows).splitlines()[2].split() == ["0.500", "10", "B", "~2020-01-02", "03:04", "/p/b.jpg"]


def test_search_takes_date_bounds_and_refuses_a_bad_one(daemon):
    query = str(daemon.indexed / "coffee.jpg")
    found = daemon.cli("search", query, "--json", "--taken-after", "2000", "--taken-before", "2999")
    assert found.returncode == 0, found.stderr
    assert query in [r["image"] for r in json.loads(found.stdout)["results"]]
    future = daemon.cli("search", query, "--json", "--taken-after", "2999-01")
    assert future.returncode == 0 and json.loads(future.stdout)["results"] == [], future.stderr
    bad = daemon.cli("search", query, "--taken-before", "next week")
    assert bad.returncode == 2 and "taken_before='next week' is not a date or time" in bad.stderr


class Replay:
    """Stands in for the HTTP client: answers /jobs/ID with the given states in turn."""

    def __init__(self, states: list[dict[str, Any]]) -> None:
        self.states = states

    def call(self, method: str, path: str, params: Any = None, *rest: Any) -> tuple[int, dict[str, Any]]:
        if path == "/add":
            return 202, {"job": "j1"}
        assert (method, path) == ("GET", "/jobs/j1")
        return 200, self.states.pop(0) if len(self.states) > 1 else self.states[0]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


FAILED_RUN = [
    {"folder": "/f", "state": "scanning", "found": 4, "done": 0},
    {"folder": "/f", "state": "indexing", "found": 4, "done": 2},
    {"folder": "/f", "state": "failed", "found": 4, "done": 2, "error": "Permission denied"},
]


def test_the_progress_bar_redraws_one_line_on_a_terminal():
    screen = Terminal()
    job = follow_job(Replay(list(FAILED_RUN)), "j1", screen, interval=0)
    assert job["state"] == "failed"
    drawn = screen.getvalue()
    assert drawn.count("\r") == 3 and drawn.endswith("\n") and drawn.count("\n") == 1
    assert "[" + "#" * 15 + "." * 15 + "]  50%  2/4 files  failed" in drawn


def test_add_wait_exits_non_zero_when_the_job_fails(monkeypatch, capsys):
    monkeypatch.setattr(cli_remote, "client_for", lambda config: Replay(list(FAILED_RUN)))
    monkeypatch.setattr(cli_remote, "follow_job", lambda client, job_id: follow_job(client, job_id, interval=0))
    args = type("Args", (), {"path": "/f", "wait": True})()
    assert cli_remote.add_remote(args, Config()) == 1
    out, err = capsys.readouterr()
    assert json.loads(out)["state"] == "failed" and "adding /f failed: Permission denied" in err


def test_a_reader_that_stops_early_is_not_an_error_to_report():
    """``imgsearchd ... | head -1``: no traceback, no message; exit 1 as Python's own recipe."""
    # buffered stdout, as in CI (PYTHONUNBUFFERED hid it): the completion script (under 8 KB)
    # meets the gone reader only at the last flush
    env = {k: v for k, v in os.environ.items() if k not in ("IMGSEARCHD_CONFIG", "PYTHONUNBUFFERED")}
    read, write = os.pipe()
    os.close(read)  # the reader is gone before the first line
    try:
        result = subprocess.run(cli_command("completion", "bash"), stdout=write, stderr=subprocess.PIPE, env=env)
    finally:
        os.close(write)
    assert (result.returncode, result.stderr) == (1, b"")


def test_sizes_and_times_are_shown_one_way():
    """Sizes in units of 1024 (as the page), times ISO 8601 in local time with the offset; a job's
    start (epoch seconds in the API) too."""
    from imgsearchd.cli.output import local_time
    from imgsearchd.cli.views import job_line

    assert [human_size(n) for n in (812, 35123, 5 * 2**30, None)] == ["812 B", "34 KB", "5.0 GB", "-"]
    shown_ = local_time(1_000_000_000.5)
    assert datetime.fromisoformat(shown_).timestamp() == 1_000_000_000 and datetime.fromisoformat(shown_).tzinfo
    assert datetime.fromisoformat(local_time("2026-12-06T23:48:22+00:00")).timestamp() == 1796600902
    assert local_time("2019-07-14T10:11:12") == "2019-07-14T10:11:12"  # a camera's wall clock, as written
    line = job_line({"state": "done", "done": 3, "found": 3, "folder": "/f", "started": 1_000_000_000.0})
    assert line == f"done 3/3 files  /f  started {shown_}"
    one = job_line({"state": "done", "done": 1, "found": 1, "folder": "/f", "started": 1_000_000_000.0})
    assert one.startswith("done 1/1 file  /f")


def test_sizes_are_written_as_the_page_writes_them():
    """``format.js`` ``fmtBytes``: bytes as they are, one decimal below 10 of a unit, none from 10,
    halves rounded up (``toFixed``): the page and the CLI show the same text for a size."""
    sizes = (0, 1023, 1024, 2560, 20_680, 105_572, 10_752, 1_048_064, 1_288_490_189, 5 * 2**40, 3 * 2**50)
    assert [human_size(n) for n in sizes] == [
        "0 B",
        "1023 B",
        "1.0 KB",
        "2.5 KB",
        "20 KB",
        "103 KB",
        "11 KB",
        "1024 KB",
        "1.2 GB",
        "5.0 TB",
        "3072 TB",
    ]


def stderr_on_terminal(*args: str) -> tuple[int, str]:
    """``imgsearchd ARGS`` with a pseudo-terminal as stderr (stdout piped): (exit status, stderr)."""
    leader, follower = pty.openpty()
    env = {**os.environ, **PROXY_ENV}
    env.pop("IMGSEARCHD_CONFIG", None)
    proc = subprocess.run(cli_command(*args), stdout=subprocess.PIPE, stderr=follower, env=env, timeout=120)
    os.close(follower)
    said = b""
    while chunk := _read(leader):
        said += chunk
    os.close(leader)
    return proc.returncode, said.decode().replace("\r\n", "\n")


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 4096)
    except OSError:  # the follower closed: the end
        return b""
