"""``imgsearchd watch PATH``, ``imgsearchd unwatch PATH`` and ``imgsearchd folders``: the running
daemon's watched folders (``/folders``), changed at run time and kept across its restarts.

A relative PATH is made absolute here (the daemon may run elsewhere). On a terminal each
prints lines for a person (``folders`` a table); piped, or with ``--json``, the API's answer
(``output.emit``). Errors are one line and a non-zero exit (``remote.guarded_call``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, cast

from .answers import Job
from .exit_codes import EXIT_ERROR, EXIT_OK
from .output import add_json_flag, counted, emit, local_time, shown
from .remote import client_for, guarded_call
from .views import job_view
from .wait import follow_job

if TYPE_CHECKING:
    from ..config import Config

Common = Callable[[argparse.ArgumentParser], None]  # main's --config, --log-level, ...


def add_folders_parsers(sub: Any, common: Common) -> None:
    """The ``watch``, ``unwatch`` and ``folders`` commands."""
    watch = sub.add_parser("watch", help="watch a folder from now on (kept across restarts) and index it now")
    watch.add_argument("path", metavar="PATH", help="a folder (relative to here, or absolute)")
    watch.add_argument("--wait", action="store_true", help="follow its indexing to the end (progress on stderr)")
    unwatch = sub.add_parser(
        "unwatch", help="stop watching a folder added with watch; its pictures leave the index (files stay)"
    )
    unwatch.add_argument("path", metavar="PATH", help="a folder added with watch")
    folders = sub.add_parser("folders", help="the watched folders: from the settings or added, state and counts")
    for parser in (watch, unwatch, folders):
        add_json_flag(parser)
        common(parser)


def cmd_watch(args: argparse.Namespace, config: Config) -> int:
    """``POST /folders``; with ``--wait`` its job is followed to the end (exit 1 if it failed)."""
    client = client_for(config)
    body = json.dumps({"folder": os.path.abspath(args.path)}).encode()

    def run() -> int:
        _status, answer = client.call("POST", "/folders", None, body, "application/json")
        job = answer.get("job")
        if not (args.wait and isinstance(job, Mapping) and not answer.get("already")):
            emit(answer, args, watched_view)
            return EXIT_OK
        done = follow_job(client, str(job["id"]))
        emit({**answer, "job": done}, args, watched_view)
        if done.get("state") == "failed":
            print(f"imgsearchd: indexing {done.get('folder')} failed: {done.get('error')}", file=sys.stderr)
            return EXIT_ERROR
        return EXIT_OK

    return guarded_call(run, args)


def cmd_unwatch(args: argparse.Namespace, config: Config) -> int:
    """``DELETE /folders``."""
    client = client_for(config)

    def run() -> int:
        emit(client.call("DELETE", "/folders", {"folder": os.path.abspath(args.path)})[1], args, unwatched_view)
        return EXIT_OK

    return guarded_call(run, args)


def cmd_folders(args: argparse.Namespace, config: Config) -> int:
    """``GET /folders``: a table on a terminal."""
    client = client_for(config)

    def run() -> int:
        emit(client.call("GET", "/folders")[1], args, folders_view)
        return EXIT_OK

    return guarded_call(run, args)


# -- for a person -------------------------------------------------------------------------------

View = Mapping[str, object]  # an answer as decoded JSON, read key by key


def _count(value: object) -> int:
    return value if isinstance(value, int) else 0


def _mapping(value: object) -> View:
    return value if isinstance(value, Mapping) else {}


def watched_view(answer: View) -> str:
    """``watch``: watched from now on (its job), or watched already."""
    folder = shown(str(answer.get("folder")))
    if answer.get("already"):
        where = "by the settings (watch.directories)" if answer.get("source") == "config" else "(added earlier)"
        return f"already watched {where}: {folder}"
    lines = [f"watching {folder} from now on (kept across restarts)"]
    job = _mapping(answer.get("job"))
    if job.get("state") in ("done", "failed"):
        lines.append(job_view(cast(Job, dict(job))))
    elif job:
        lines.append(f"indexing: job {job.get('id')}, {counted(_count(job.get('found')), 'picture')} found so far")
        lines.append("progress: imgsearchd folders")
    return "\n".join(lines)


def unwatched_view(answer: View) -> str:
    """``unwatch``: how many entries left the index; the files are untouched."""
    removed = counted(_count(answer.get("removed")), "picture")
    return f"stopped watching {shown(str(answer.get('folder')))}: {removed} left the index (the files are untouched)"


HEADER = ("FOLDER", "SOURCE", "STATE", "FILES", "FAILED", "PENDING", "JOB")


def folders_view(answer: View) -> str:
    """``folders``: one row per watched folder, then where folders may be watched."""
    folders = [_mapping(entry) for entry in _list(answer.get("folders"))]
    if not folders:
        lines = ["no folders watched: imgsearchd watch ~/Pictures"]
    else:
        rows = [HEADER, *(_row(entry) for entry in folders)]
        widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
        lines += [f"{shown(str(e.get('folder')))}: {e['error']}" for e in folders if e.get("error")]
    roots = ", ".join(shown(str(r)) for r in _list(answer.get("roots")))
    lines.append(
        "folders may be watched anywhere" if answer.get("anywhere") else f"folders may be watched inside: {roots}"
    )
    return "\n".join(lines)


def _list(value: object) -> list[object]:
    return list(value) if isinstance(value, list) else []


def _row(entry: View) -> tuple[str, ...]:
    source = str(entry.get("source"))
    if entry.get("added_at"):
        source += f" {local_time(entry.get('added_at'))[:10]}"
    job = _mapping(entry.get("job"))
    progress = f"{job.get('state')} {_count(job.get('done'))}/{_count(job.get('found'))}" if job else "-"
    return (
        shown(str(entry.get("folder"))),
        source,
        str(entry.get("state")),
        *(str(_count(entry.get(key))) for key in ("files", "failed", "pending")),
        progress,
    )
