"""The vectors of pictures uploaded to search by: kept so a search can name its picture by hash.

An upload search is not a library file, so its vector is not in ``vectors``; keeping it in
``query_vectors`` (one row per content hash and extractor) lets ``/search?hash=`` answer the
same search again (a page's URL, a reload, a bookmark) without the bytes. The table is
bounded: beyond ``KEPT`` rows the least recently used go first, and a search by hash marks
its row used. One row is about 6 KB (CLIP's 512 floats, EfficientNet's 1280), so 2000 rows
stay under 12 MB of the catalogue.
"""

from __future__ import annotations

import sqlite3

import numpy as np

from .file_writes import vector_blob

KEPT = 2000  # rows kept (content hash x extractor): the pages a person goes back to, and some


def put(
    conn: sqlite3.Connection,
    content_hash: str,
    extractor: str,
    model_id: str,
    vector: np.ndarray,
    now: float,
    kept: int,
) -> None:
    """Keep (or refresh) one query vector, then drop the least recently used beyond ``kept``."""
    conn.execute(
        "INSERT OR REPLACE INTO query_vectors (content_hash, extractor, model_id, dim, vector, used_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        (content_hash, extractor, model_id, int(vector.size), vector_blob(vector), now),
    )
    over = count(conn) - kept
    if over > 0:
        conn.execute(
            "DELETE FROM query_vectors WHERE (content_hash, extractor) IN"
            " (SELECT content_hash, extractor FROM query_vectors ORDER BY used_at LIMIT ?)",
            (over,),
        )


def get(conn: sqlite3.Connection, content_hash: str, extractor: str, model_id: str) -> np.ndarray | None:
    """The kept vector of this picture from this extractor and model, or None."""
    row = conn.execute(
        "SELECT vector FROM query_vectors WHERE content_hash=? AND extractor=? AND model_id=?",
        (content_hash, extractor, model_id),
    ).fetchone()
    return np.frombuffer(row[0], dtype="<f4").copy() if row else None


def touch(conn: sqlite3.Connection, content_hash: str, extractor: str, now: float) -> None:
    """Mark a kept vector used now (it goes last when the bound drops rows)."""
    conn.execute(
        "UPDATE query_vectors SET used_at=? WHERE content_hash=? AND extractor=?", (now, content_hash, extractor)
    )


def count(conn: sqlite3.Connection) -> int:
    """How many query vectors are kept."""
    return int(conn.execute("SELECT count(*) FROM query_vectors").fetchone()[0])
