"""How the CLI prints answers: for a person on a terminal, JSON for a script, bare paths for a pipe.

One rule for every command, decided here (``output_mode``): ``--json`` prints the JSON answer,
``--paths`` (``search``) one path per line; otherwise a terminal gets lines for a person and
anything else (a pipe, a file) the JSON, as scripts always got it. For a person sizes are in
units of 1024 written as the page writes them (``fmtBytes``: "812 B", "3.4 KB", "103 KB"; JSON keeps bytes) and times are ISO 8601 in
local time with the offset ("2026-12-06T23:48:22+00:00"; JSON keeps what the API gives).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TextIO, cast

from ..media.sizes import human_size
from .answers import Answer, Dated, DuplicateMember, SearchResult

JSON_HELP = "print the JSON answer (the default when stdout is not a terminal)"

# The result's capture time (``taken``, ISO 8601); the column is left out when no result has one.
# A time that is the file's mtime (the photo had no EXIF date) is marked with "~".
DATE_KEYS = ("taken",)


def add_output_flags(parser: argparse.ArgumentParser) -> None:
    """``--json`` and ``--paths``, which exclude each other."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--json", action="store_true", help=JSON_HELP)
    group.add_argument("--paths", action="store_true", help="print one path per line (for xargs and friends)")


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    """``--json``, for the commands that print no paths."""
    parser.add_argument("--json", action="store_true", help=JSON_HELP)


def output_mode(args: argparse.Namespace, stream: TextIO | None = None) -> str:
    """ "json", "paths" or "table": the flags first, else a table on a terminal, else JSON."""
    if getattr(args, "json", False):
        return "json"
    if getattr(args, "paths", False) is True:  # the flag, not ``index``'s PATH arguments
        return "paths"
    return "table" if (stream or sys.stdout).isatty() else "json"


def emit(answer: Mapping[str, object], args: argparse.Namespace, human: Callable[[Any], str]) -> None:
    """Print ``answer`` as the rule says: JSON (indented, as it came), or ``human(answer)`` on a
    terminal (``human`` reads the answer as the TypedDict of ``answers`` it is written for)."""
    if output_mode(args) == "json":
        print(json.dumps(answer, indent=2))
    else:
        print(human(answer))


def counted(n: object, word: str, plural: str = "") -> str:
    """A count with its noun in the right number: "1 file", "0 files", "2 groups" (``plural``
    where adding "s" is wrong)."""
    return f"{n} {word if n == 1 else plural or word + 's'}"


def note(text: str, stream: TextIO | None = None) -> None:
    """A note for a person ("imgsearchd: TEXT") on stderr, only where stderr is a terminal: piped
    (a script, a log) the answer and the exit status say it all, and stderr keeps to errors."""
    err = stream or sys.stderr
    if err.isatty():
        print(f"imgsearchd: {text}", file=err, flush=True)


def local_time(value: object) -> str:
    """A time (seconds since the epoch, or ISO 8601 with an offset) as ISO 8601 in local time, to the
    second; a time without an offset is a wall clock (a camera's) and is shown as written."""
    try:
        if isinstance(value, int | float) and not isinstance(value, bool):
            when = datetime.fromtimestamp(value).astimezone()
        elif isinstance(value, str) and value:
            when = datetime.fromisoformat(value)
            when = when.astimezone() if when.tzinfo else when
        else:
            return "-"
    except (ValueError, OSError, OverflowError):
        return str(value)
    return when.isoformat(timespec="seconds")


def summary(answer: Mapping[str, object]) -> str:
    """A flat answer (a command's summary) as ``key: value`` lines; a nested object on one line."""
    width = max((len(key) for key in answer), default=0)
    lines = []
    for key, value in answer.items():
        if isinstance(value, Mapping):
            value = ", ".join(f"{k} {v}" for k, v in value.items()) or "-"
        elif isinstance(value, list):
            value = ", ".join(str(v) for v in value) or "-"
        lines.append(f"{key + ':':<{width + 1}} {value}")
    return "\n".join(lines)


def _size(result: SearchResult) -> int | None:
    """The size the answer gives, else the file's size here (the daemon runs on this machine)."""
    size = result.get("size")
    if isinstance(size, int):
        return size
    try:
        return os.stat(result["image"]).st_size
    except (OSError, KeyError):
        return None


def _date(result: Dated) -> str | None:
    for key in DATE_KEYS:
        value = result.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return datetime.fromtimestamp(value).strftime("%Y-%m-%d %H:%M")
        if isinstance(value, str) and value:
            guessed = "~" if result.get("taken_from") == "mtime" else ""
            return guessed + value[:16].replace("T", " ")
    return None


def shown(path: str) -> str:
    """``path`` safe to print on a terminal, as ``ls -b`` does: control characters (an escape
    sequence in a file name would recolour or rewrite the screen) and bytes that are not
    UTF-8 (``\\udce9`` from os.fsdecode, which a strict terminal encoding cannot print) escaped."""
    return "".join(ch if ch.isprintable() else _escape(ch) for ch in path)


def _escape(ch: str) -> str:
    if "\udc80" <= ch <= "\udcff":  # an undecodable byte, kept by surrogateescape
        return f"\\x{ord(ch) - 0xDC00:02x}"
    return ascii(ch)[1:-1]


def member_line(member: DuplicateMember) -> str:
    """One duplicate group member for a person: the keeper marked ``*``, path (escaped as ``shown``),
    size in pixels and bytes, date, score, the framing check, other files with the same bytes."""
    dims = f"{member['width']}x{member['height']}" if member["width"] else "?x?"
    taken = _date(member) or "?"
    mark = "*" if member.get("keep") else " "
    line = f"{mark} {shown(member['image'])}  {dims}  {human_size(member['size'])}  {taken}  {member['score']:.3f}"
    framing = member.get("framing")
    if isinstance(framing, float):
        line += f"  framing {framing:.3f}"
    same = member.get("same_bytes")
    return line + (f"  +{counted(same, 'file')} with these bytes" if same else "")


def write_paths(results: list[SearchResult], out: TextIO) -> None:
    """One path per line as the file system spells it (raw bytes, so a name that is not
    UTF-8 reaches ``xargs`` intact and printing it cannot fail in a strict locale)."""
    binary = getattr(out, "buffer", None)
    if binary is None:  # a text-only stream (tests): the same names, as text
        for result in results:
            print(result["image"], file=out)
        return
    out.flush()
    binary.write(b"".join(os.fsencode(result["image"]) + b"\n" for result in results))
    binary.flush()


def results_table(results: list[SearchResult]) -> str:
    """Score, match level (from a daemon that gives one), size, date (only when some result has
    one) and path, one line per result."""
    dates = [_date(r) for r in results]
    with_dates = any(dates)
    with_match = any("match" in r for r in results)
    header = ["SCORE", *(["MATCH"] if with_match else []), "SIZE", *(["DATE"] if with_dates else []), "PATH"]
    right = {"SCORE", "SIZE"}  # numbers line up on the right
    rows = [header]
    for result, date in zip(results, dates):
        row = [f"{result['score']:.3f}"]
        if with_match:
            row.append(str(result.get("match", "-")))
        row.append(human_size(_size(result)))
        if with_dates:
            row.append(date or "-")
        rows.append([*row, shown(result["image"])])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header) - 1)]
    lines = []
    for row in rows:
        cells = [
            cell.rjust(width) if header[i] in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths))
        ]
        lines.append("  ".join([*cells, row[-1]]))
    return "\n".join(lines)


def print_results(answer: Answer, mode: str, stream: TextIO | None = None) -> None:
    """A search answer in the chosen mode (``--json``: as it came)."""
    out = stream or sys.stdout
    results = cast(list[SearchResult], answer.get("results", []))
    if mode == "json":
        print(json.dumps(answer, indent=2), file=out)
    elif mode == "paths":
        write_paths(results, out)
    else:
        print(results_table(results) if results else "no results", file=out)
        weaker = answer.get("weaker")  # --min-match left these out of the page
        if isinstance(weaker, int) and weaker:
            print(f"({counted(weaker, 'weaker result')} left out by --min-match)", file=out)
