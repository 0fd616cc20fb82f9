"""The catalogue's writes to file rows and vectors, as functions of a connection in a transaction.

The caller (``Catalog``) opens the transaction and hands in its change number ``seq``;
a removed or replaced file leaves a tombstone in ``removed`` so that the indexes drop it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence

import numpy as np

from ..media.photo_metadata import PhotoMetadata
from ..paths import normalise_path, path_key
from .rows import FileResult, FileState
from .sql import METADATA_SET, SUBTREE, metadata_row, subtree

# A vector for (content_hash, extractor, model_id), the vectors table's primary key (schema 6):
# the indexer's replaces one of the same model; an import's (``record_batch(keep_vectors=True)``)
# never replaces one, so rows claiming a hash cannot overwrite a vector already there. Another
# model's vector of the content stays either way (a model change serves from it until its switch).
PUT_VECTOR = "INSERT OR REPLACE INTO vectors (content_hash, extractor, model_id, dim, vector) VALUES (?, ?, ?, ?, ?)"
KEEP_VECTOR = "INSERT OR IGNORE INTO vectors (content_hash, extractor, model_id, dim, vector) VALUES (?, ?, ?, ?, ?)"


def vector_blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def forget(conn: sqlite3.Connection, file_id: int, seq: int) -> None:
    """Delete a file row and leave a tombstone for the indexes."""
    conn.execute("DELETE FROM files WHERE id=?", (file_id,))
    conn.execute("INSERT OR REPLACE INTO removed (file_id, seq) VALUES (?, ?)", (file_id, seq))


def record_one(conn: sqlite3.Connection, result: FileResult, seq: int, now: float, insert: str = PUT_VECTOR) -> None:
    """Write one pipeline result: its vectors, then its file row (a new row for new content)."""
    path = path_key(normalise_path(result.path))
    for name, (model_id, vector) in result.vectors.items():
        conn.execute(insert, (result.content_hash, name, model_id, int(vector.shape[-1]), vector_blob(vector)))
    if result.vectors:
        # Other files with the same content now have this vector too.
        conn.execute(
            "UPDATE files SET seq=? WHERE content_hash=? AND state='indexed' AND path<>?",
            (seq, result.content_hash, path),
        )
    state = FileState.FAILED if result.error_reason else FileState.INDEXED
    # A detail may quote a file name that is not UTF-8: stored as escapes, never a failed write.
    detail = result.error_detail.encode("utf-8", "backslashreplace").decode() if result.error_detail else None
    row = conn.execute("SELECT id, content_hash, state, failures FROM files WHERE path=?", (path,)).fetchone()
    failures = 0
    if state == FileState.FAILED:
        failures = 1 + (row[3] if row is not None and row[2] == FileState.FAILED else 0)
    if row is not None and (row[1] != result.content_hash or row[2] != state):
        # New content gets a new id, so an index never mixes the old vector with the new.
        forget(conn, row[0], seq)
        row = None
    if row is None:
        conn.execute(
            "INSERT INTO files (path, size, mtime_ns, content_hash, state, error_reason,"
            " error_detail, seq, updated_at, failures) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (path, result.size, result.mtime_ns, result.content_hash, state, result.error_reason, detail, seq, now,
             failures),
        )  # fmt: skip
    else:
        conn.execute(
            "UPDATE files SET size=?, mtime_ns=?, error_reason=?, error_detail=?, seq=?, updated_at=?, failures=?"
            " WHERE id=?",
            (result.size, result.mtime_ns, result.error_reason, detail, seq, now, failures, row[0]),
        )
    if result.metadata is not None:
        conn.execute(f"UPDATE files SET {METADATA_SET} WHERE path=?", (*metadata_row(result.metadata), path))


def remove_paths(conn: sqlite3.Connection, seq: int, paths: Iterable[str]) -> int:
    """Forget these files and everything under each path that is a folder; returns how many."""
    removed = 0
    for raw in paths:
        ids = [r[0] for r in conn.execute(f"SELECT id FROM files WHERE {SUBTREE}", subtree(raw))]
        for file_id in ids:
            forget(conn, file_id, seq)
        removed += len(ids)
    return removed


def move(conn: sqlite3.Connection, seq: int, old: str, new: str) -> int:
    """Rename a file or a folder's files in place (ids kept); a file in the way is forgotten."""
    old_p, new_p = normalise_path(old), normalise_path(new)
    moved = 0
    rows = conn.execute(f"SELECT id, path FROM files WHERE {SUBTREE}", subtree(old_p)).fetchall()
    old_b, new_b = path_key(old_p), path_key(new_p)
    for file_id, path in rows:
        target = new_b + bytes(path)[len(old_b) :]
        clash = conn.execute("SELECT id FROM files WHERE path=?", (target,)).fetchone()
        if clash is not None:
            forget(conn, clash[0], seq)
        conn.execute("UPDATE files SET path=? WHERE id=?", (target, file_id))
        moved += 1
    return moved


def set_state(
    conn: sqlite3.Connection, seq: int, now: float, where: str, params: list[tuple[bytes, ...]], state: str
) -> int:
    """Give the rows matching ``where`` (once per parameter tuple) a new state; returns how many."""
    changed = 0
    for values in params:
        changed += conn.execute(
            f"UPDATE files SET state=?, seq=?, updated_at=? WHERE {where}", (state, seq, now, *values)
        ).rowcount
    return changed


def fill_metadata(conn: sqlite3.Connection, rows: Iterable[tuple[int, PhotoMetadata]]) -> None:
    """Store metadata for (id, metadata) rows whose metadata is still empty."""
    conn.executemany(
        f"UPDATE files SET {METADATA_SET} WHERE id=? AND taken_at IS NULL", [(*metadata_row(m), i) for i, m in rows]
    )


def prune_orphan_vectors(conn: sqlite3.Connection) -> int:
    """Drop vectors no file has any more; returns how many."""
    cursor = conn.execute(
        "DELETE FROM vectors WHERE content_hash NOT IN (SELECT content_hash FROM files WHERE content_hash IS NOT NULL)"
    )
    return cursor.rowcount


def put_vectors(conn: sqlite3.Connection, extractor: str, model_id: str, vectors: dict[str, np.ndarray]) -> None:
    """Store content hash -> vector of one model (a model change's re-embedding); touches no file row."""
    conn.executemany(
        PUT_VECTOR,
        [(h, extractor, model_id, int(v.shape[-1]), vector_blob(v)) for h, v in vectors.items()],
    )


def touch_contents(conn: sqlite3.Connection, seq: int, hashes: Iterable[str]) -> None:
    """Give the indexed files of these contents change number ``seq``, so the indexes read their vectors."""
    conn.executemany("UPDATE files SET seq=? WHERE content_hash=? AND state='indexed'", [(seq, h) for h in hashes])


def prune_other_models(conn: sqlite3.Connection, extractor: str, keep: Sequence[str]) -> int:
    """Drop this extractor's vectors of every model but those in ``keep``; returns how many."""
    marks = ",".join("?" * len(keep)) or "NULL"
    sql = f"DELETE FROM vectors WHERE extractor=? AND model_id NOT IN ({marks})"
    return conn.execute(sql, (extractor, *keep)).rowcount
