"""SQL pieces the catalogue's reads and writes share: subtree ranges, search scopes, metadata columns.

Paths are stored as the file system's bytes (``paths.path_key``), so a folder and
everything below it is one indexed range scan over ``files.path``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from ..media.photo_metadata import PhotoMetadata
from ..paths import normalise_path, path_key
from .rows import SearchScope

# A path and everything below it, as an indexed range scan: bind with ``subtree(root)``.
SUBTREE = "(path=? OR (path>=? AND path<?))"


def subtree(root: str) -> tuple[bytes, bytes, bytes]:
    """Parameters for ``SUBTREE``: the path itself, and the range of paths under it."""
    root_b = path_key(normalise_path(root))
    prefix = root_b.rstrip(b"/") + b"/"
    return root_b, prefix, prefix[:-1] + b"0"  # "0" is the byte after "/"


# The metadata columns (schema version 3), in ``PhotoMetadata``'s order.
METADATA_COLUMNS = ("taken_at", "taken", "taken_from", "width", "height", "camera", "orientation", "has_gps")
METADATA_SET = ", ".join(f"{c}=?" for c in METADATA_COLUMNS)


def metadata_row(m: PhotoMetadata) -> tuple[object, ...]:
    return (m.taken_at, m.taken, m.taken_from, m.width, m.height, m.camera, m.orientation, int(m.has_gps))


def metadata_of(row: Sequence[Any]) -> PhotoMetadata | None:
    """A ``PhotoMetadata`` from the metadata columns of a row; None while they are not filled."""
    if row[0] is None:
        return None
    return PhotoMetadata(row[0], row[1], row[2], row[3], row[4], row[5], row[6], bool(row[7]))


def scope_where(scope: SearchScope | None) -> tuple[str, tuple[object, ...]]:
    """SQL conditions (after ``AND``) and their parameters for a search scope ("1" for everything)."""
    terms: list[str] = []
    params: list[object] = []
    if scope is not None and scope.folder is not None:
        terms.append(SUBTREE)
        params.extend(subtree(scope.folder))
    if scope is not None and scope.taken_after is not None:
        terms.append("taken_at>=?")
        params.append(scope.taken_after)
    if scope is not None and scope.taken_before is not None:
        terms.append("taken_at<?")
        params.append(scope.taken_before)
    return (" AND ".join(terms) or "1"), tuple(params)


def current_seq(conn: sqlite3.Connection) -> int:
    """The catalogue's change number as ``conn`` sees it."""
    return int(conn.execute("SELECT value FROM meta WHERE key='seq'").fetchone()[0])


def rows_in(
    conn: sqlite3.Connection, sql: str, keys: Iterable[Any], after: tuple[object, ...] = ()
) -> list[tuple[Any, ...]]:
    """The rows of ``sql`` whose ``IN ({})`` takes ``keys``, asked 500 at a time (under
    SQLite's limit of bound parameters); ``after`` binds the parameters that follow it."""
    keys = list(keys)
    rows: list[tuple[Any, ...]] = []
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        rows += conn.execute(sql.format(",".join("?" * len(chunk))), (*chunk, *after)).fetchall()
    return rows
