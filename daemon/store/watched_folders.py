"""The folders watched because someone asked at run time (``POST /folders``, ``imgsearchd watch``).

Rows of the ``watched_folders`` table (schema version 4), as functions of a connection: the
path as the file system's bytes (``paths.path_key``, like ``files.path``) and when it was
added. The config's folders are not here: they live in the settings file. No change number:
the indexes hold vectors, not folders.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from typing import NamedTuple

from ..paths import normalise_path, path_from_key, path_key
from .sql import SUBTREE, subtree


class WatchedFolder(NamedTuple):
    """A folder added at run time: its path and when (seconds since the epoch)."""

    path: str
    added_at: float


def read_all(conn: sqlite3.Connection) -> list[WatchedFolder]:
    """Every added folder, oldest first."""
    rows = conn.execute("SELECT path, added_at FROM watched_folders ORDER BY added_at, path")
    return [WatchedFolder(path_from_key(path), float(added_at)) for path, added_at in rows]


def add(conn: sqlite3.Connection, path: str, added_at: float, replaces: Iterable[str] = ()) -> None:
    """Keep ``path`` (its ``added_at`` stays if it is there already) and drop ``replaces`` (the
    added folders inside it, which it covers from now on), in the caller's transaction."""
    conn.executemany("DELETE FROM watched_folders WHERE path=?", [(path_key(normalise_path(p)),) for p in replaces])
    conn.execute(
        "INSERT OR IGNORE INTO watched_folders (path, added_at) VALUES (?, ?)",
        (path_key(normalise_path(path)), added_at),
    )


def remove(conn: sqlite3.Connection, path: str) -> bool:
    """Forget an added folder; False when it was not one."""
    cursor = conn.execute("DELETE FROM watched_folders WHERE path=?", (path_key(normalise_path(path)),))
    return cursor.rowcount > 0


def states_under(conn: sqlite3.Connection, root: str) -> tuple[int, int]:
    """(indexed, failed) files at or below ``root``, in one pass over its range of the path index
    (two ``count_under`` calls read each row twice: 100,000 files took 350 ms for both, 175-205 ms
    for this, on a busy 2-core Zen 4)."""
    sql = f"SELECT SUM(state='indexed'), SUM(state='failed') FROM files WHERE {SUBTREE}"
    indexed, failed = conn.execute(sql, subtree(root)).fetchone()
    return int(indexed or 0), int(failed or 0)
