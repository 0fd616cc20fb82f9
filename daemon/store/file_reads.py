"""The catalogue's reads of file rows (paths, states, metadata, counts), as functions of a connection.

Paths come back as ``str`` (``paths.path_from_key``), however the file system spells them.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from ..media.photo_metadata import PhotoMetadata
from ..paths import normalise_path, path_from_key, path_key
from .rows import Counts, FailedFile, FileRecord, SearchScope
from .sql import METADATA_COLUMNS, SUBTREE, metadata_of, rows_in, scope_where, subtree


def get(conn: sqlite3.Connection, path: str) -> FileRecord | None:
    row = conn.execute(
        "SELECT id, path, size, mtime_ns, content_hash, state, error_reason, error_detail, seq,"
        " failures, updated_at FROM files WHERE path=?",
        (path_key(normalise_path(path)),),
    ).fetchone()
    return FileRecord(row[0], path_from_key(row[1]), *row[2:]) if row else None


def files_under(conn: sqlite3.Connection, root: str) -> dict[str, tuple[int, int, str]]:
    rows = conn.execute(f"SELECT path, size, mtime_ns, state FROM files WHERE {SUBTREE}", subtree(root))
    return {path_from_key(r[0]): (r[1], r[2], r[3]) for r in rows}


def count_under(conn: sqlite3.Connection, root: str, states: Iterable[str]) -> int:
    states = list(states)
    marks = ",".join("?" * len(states))
    sql = f"SELECT COUNT(*) FROM files WHERE state IN ({marks}) AND {SUBTREE}"
    return int(conn.execute(sql, (*states, *subtree(root))).fetchone()[0])


def count_in(conn: sqlite3.Connection, scope: SearchScope) -> int:
    where, params = scope_where(scope)
    sql = f"SELECT COUNT(*) FROM files WHERE state IN ('indexed', 'offline') AND {where}"
    if scope.folder is None and scope.by_date:
        # Only indexed (then maybe offline) rows hold metadata: a failed file's row never
        # gets any, and a file that fails after being indexed gets a new row. So the state
        # test can go, and the count is read from the taken_at index alone: at 1M files a
        # range holding 900k took 2.5-2.7 s with it (a row read each) and 46 ms without.
        sql = f"SELECT COUNT(*) FROM files WHERE {where}"
    return int(conn.execute(sql, params).fetchone()[0])


def paths_for(conn: sqlite3.Connection, ids: Iterable[int], scope: SearchScope | None) -> dict[int, str]:
    where, params = scope_where(scope)
    sql = f"SELECT id, path FROM files WHERE state='indexed' AND id IN ({{}}) AND {where}"
    rows = rows_in(conn, sql, [int(i) for i in ids], params)
    return {file_id: path_from_key(path) for file_id, path in rows}


def content_hashes(conn: sqlite3.Connection, paths: Iterable[str]) -> dict[str, str]:
    sql = "SELECT path, content_hash FROM files WHERE content_hash IS NOT NULL AND path IN ({})"
    return {path_from_key(path): content_hash for path, content_hash in rows_in(conn, sql, map(path_key, paths))}


def result_facts(conn: sqlite3.Connection, paths: Iterable[str]) -> dict[str, tuple[str | None, PhotoMetadata | None]]:
    sql = f"SELECT path, content_hash, {', '.join(METADATA_COLUMNS)} FROM files WHERE path IN ({{}})"
    return {path_from_key(r[0]): (r[1], metadata_of(r[2:])) for r in rows_in(conn, sql, map(path_key, paths))}


def metadata_for(conn: sqlite3.Connection, ids: Iterable[int]) -> dict[int, PhotoMetadata]:
    sql = f"SELECT id, {', '.join(METADATA_COLUMNS)} FROM files WHERE id IN ({{}}) AND taken_at IS NOT NULL"
    rows = rows_in(conn, sql, [int(i) for i in ids])
    return {r[0]: m for r in rows if (m := metadata_of(r[1:])) is not None}


def without_metadata(conn: sqlite3.Connection, limit: int) -> list[tuple[int, str, int]]:
    rows = conn.execute(
        "SELECT id, path, mtime_ns FROM files WHERE state='indexed' AND taken_at IS NULL LIMIT ?", (limit,)
    )
    return [(r[0], path_from_key(r[1]), r[2]) for r in rows]


def count_without_metadata(conn: sqlite3.Connection) -> int:
    return int(conn.execute("SELECT COUNT(*) FROM files WHERE state='indexed' AND taken_at IS NULL").fetchone()[0])


def failed_everywhere(conn: sqlite3.Connection) -> list[FailedFile]:
    rows = conn.execute("SELECT path, error_reason, failures, updated_at FROM files WHERE state='failed'")
    return [FailedFile(path_from_key(r[0]), r[1] or "", r[2], r[3]) for r in rows]


def unused_hashes(conn: sqlite3.Connection, hashes: Iterable[str]) -> set[str]:
    wanted = list(dict.fromkeys(hashes))
    sql = "SELECT DISTINCT content_hash FROM files WHERE content_hash IN ({})"
    return set(wanted) - {r[0] for r in rows_in(conn, sql, wanted)}


def counts(conn: sqlite3.Connection) -> Counts:
    by_state = dict(conn.execute("SELECT state, COUNT(*) FROM files GROUP BY state").fetchall())
    failed = dict(
        conn.execute("SELECT error_reason, COUNT(*) FROM files WHERE state='failed' GROUP BY error_reason").fetchall()
    )
    vectors = dict(
        conn.execute(
            # files, not rows: while a model change re-embeds, a content has a vector of each model
            "SELECT v.extractor, COUNT(DISTINCT f.id) FROM files f JOIN vectors v ON v.content_hash=f.content_hash"
            " WHERE f.state='indexed' GROUP BY v.extractor"
        ).fetchall()
    )
    return Counts(files=sum(by_state.values()), by_state=by_state, failed_by_reason=failed, vectors=vectors)


def recent_failures(conn: sqlite3.Connection, limit: int) -> list[dict[str, str]]:
    rows = conn.execute(
        "SELECT path, error_reason, error_detail FROM files WHERE state='failed' ORDER BY updated_at DESC LIMIT ?",
        (limit,),
    )
    return [{"path": path_from_key(r[0]), "reason": r[1], "detail": r[2]} for r in rows]


def shared_contents(conn: sqlite3.Connection) -> list[tuple[str, int, str, int]]:
    rows = conn.execute(
        "SELECT content_hash, id, path, size FROM files WHERE state='indexed' AND content_hash IN"
        " (SELECT content_hash FROM files WHERE state='indexed' AND content_hash IS NOT NULL"
        " GROUP BY content_hash HAVING COUNT(*) > 1) ORDER BY content_hash, id"
    )
    return [(r[0], r[1], path_from_key(r[2]), r[3]) for r in rows]


def path_and_size(conn: sqlite3.Connection, ids: Iterable[int]) -> dict[int, tuple[str, int]]:
    sql = "SELECT id, path, size FROM files WHERE state='indexed' AND id IN ({})"
    return {r[0]: (path_from_key(r[1]), r[2]) for r in rows_in(conn, sql, [int(i) for i in ids])}
