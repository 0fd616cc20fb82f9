"""The journal of actions on duplicates (schema version 5): resolutions and their files' plans.

A resolution is one ``POST /duplicates/resolve`` that acted: its action, its folder (``move``),
when, and its state (``running`` -> ``done``; ``undoing`` -> ``undone``). Each file it acts on
has a row written before the file is touched: its path, its keeper, the content hash it had,
its target (the Trash's ``files/NAME``, the moved path, or the keeper for a link) and its mode
and mtime; then ``done`` after, or ``untouched`` when recovery finds it where it was. An undo
marks each file ``undone``, or ``kept`` with the reason (a file is at its path again): a kept
file is still at its target, so the resolution reads ``partly undone`` and a later undo tries
those files again. Paths are the file system's bytes, like ``files.path``. No change number:
the indexes hold vectors.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterable
from typing import NamedTuple

from ..paths import path_from_key, path_key
from .database import Database

RECENT = 50  # GET /duplicates/resolutions answers at most this many, newest first


class Step(NamedTuple):
    """One file of a resolution: what is done to it, and how far it got."""

    n: int
    path: str
    keep: str
    content_hash: str
    target: str
    mode: int
    mtime_ns: int
    state: str = "planned"  # planned, done, untouched, undone, kept
    reason: str | None = None


class Resolution(NamedTuple):
    """One resolution as the journal holds it, with how many files it has and how many are still
    done (at their target: done, or kept by an undo); ``state`` is ``partly undone`` for an
    ``undone`` one with files kept."""

    id: int
    action: str
    dest: str | None
    created_at: float
    state: str
    files: int
    done: int


_SUMMARY = """
    SELECT r.id, r.action, r.dest, r.created_at, r.state,
           (SELECT COUNT(*) FROM resolution_files f WHERE f.resolution = r.id),
           (SELECT COUNT(*) FROM resolution_files f WHERE f.resolution = r.id AND f.state IN ('done', 'kept')),
           (SELECT COUNT(*) FROM resolution_files f WHERE f.resolution = r.id AND f.state = 'kept')
    FROM resolutions r
"""


def _resolution(row: tuple[int, str, bytes | None, float, str, int, int, int]) -> Resolution:
    rid, action, dest, created_at, state, files, done, kept = row
    if state == "undone" and kept:
        state = "partly undone"
    return Resolution(rid, action, path_from_key(dest) if dest is not None else None, created_at, state, files, done)


def create(conn: sqlite3.Connection, action: str, dest: str | None, steps: Iterable[Step]) -> int:
    """A new ``running`` resolution with its files' plans, in the caller's transaction; its id."""
    cursor = conn.execute(
        "INSERT INTO resolutions (action, dest, created_at, state) VALUES (?, ?, ?, 'running')",
        (action, path_key(dest) if dest is not None else None, time.time()),
    )
    rid = int(cursor.lastrowid or 0)
    conn.executemany(
        "INSERT INTO resolution_files (resolution, n, path, keep, content_hash, target, mode, mtime_ns, state)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'planned')",
        [
            (rid, s.n, path_key(s.path), path_key(s.keep), s.content_hash, path_key(s.target), s.mode, s.mtime_ns)
            for s in steps
        ],
    )
    return rid


def set_target(conn: sqlite3.Connection, rid: int, n: int, target: str) -> None:
    conn.execute("UPDATE resolution_files SET target=? WHERE resolution=? AND n=?", (path_key(target), rid, n))


def set_step(conn: sqlite3.Connection, rid: int, n: int, state: str, reason: str | None = None) -> None:
    conn.execute("UPDATE resolution_files SET state=?, reason=? WHERE resolution=? AND n=?", (state, reason, rid, n))


def set_state(conn: sqlite3.Connection, rid: int, state: str) -> None:
    conn.execute("UPDATE resolutions SET state=? WHERE id=?", (state, rid))


def get(conn: sqlite3.Connection, rid: int) -> Resolution | None:
    row = conn.execute(_SUMMARY + " WHERE r.id=?", (rid,)).fetchone()
    return _resolution(row) if row else None


def steps(conn: sqlite3.Connection, rid: int) -> list[Step]:
    """Every file of a resolution, in the order planned."""
    rows = conn.execute(
        "SELECT n, path, keep, content_hash, target, mode, mtime_ns, state, reason FROM resolution_files"
        " WHERE resolution=? ORDER BY n",
        (rid,),
    )
    return [
        Step(n, path_from_key(p), path_from_key(k), h, path_from_key(t), mode, mtime, state, reason)
        for n, p, k, h, t, mode, mtime, state, reason in rows
    ]


def recent(conn: sqlite3.Connection, limit: int = RECENT) -> list[Resolution]:
    return [_resolution(row) for row in conn.execute(_SUMMARY + " ORDER BY r.id DESC LIMIT ?", (limit,))]


def unfinished(conn: sqlite3.Connection) -> list[Resolution]:
    """Resolutions a crash left ``running`` or ``undoing``, oldest first."""
    return [
        _resolution(row) for row in conn.execute(_SUMMARY + " WHERE r.state IN ('running', 'undoing') ORDER BY r.id")
    ]


class Journal:
    """The journal over the catalogue's connections: each write its own small transaction,
    committed before the file it names is touched (WAL: a SIGKILL loses no commit)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, action: str, dest: str | None, plan: Iterable[Step]) -> int:
        with self.db._write() as conn:
            return create(conn, action, dest, plan)

    def set_target(self, rid: int, n: int, target: str) -> None:
        with self.db._write() as conn:
            set_target(conn, rid, n, target)

    def set_step(self, rid: int, n: int, state: str, reason: str | None = None) -> None:
        with self.db._write() as conn:
            set_step(conn, rid, n, state, reason)

    def set_state(self, rid: int, state: str) -> None:
        with self.db._write() as conn:
            set_state(conn, rid, state)

    def get(self, rid: int) -> Resolution | None:
        return get(self.db._reader(), rid)

    def steps(self, rid: int) -> list[Step]:
        return steps(self.db._reader(), rid)

    def recent(self, limit: int = RECENT) -> list[Resolution]:
        return recent(self.db._reader(), limit)

    def unfinished(self) -> list[Resolution]:
        return unfinished(self.db._reader())
