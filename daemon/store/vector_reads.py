"""The catalogue's reads of vectors: by scope, by content, every one in chunks, the changes since a seq.

Vectors are stored per (content hash, extractor) as little-endian float32 blobs, with the
model id that made them; a file's vector is the one of its content. The long reads
(``iter_vectors``, ``iter_export``) run in one read transaction, so everything they yield
reflects one change number.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import numpy as np

from ..paths import path_from_key, path_key
from .rows import Changes, FileState, SearchScope
from .sql import METADATA_COLUMNS, current_seq, rows_in, scope_where


def _matrix(blobs: Iterable[bytes], rows: int, dim: int) -> np.ndarray:
    """Blobs of float32 vectors as one (rows, dim) array (read-only: it shares the joined bytes)."""
    return np.frombuffer(b"".join(blobs), dtype="<f4").reshape(rows, dim)


def vectors_in(
    conn: sqlite3.Connection, scope: SearchScope, extractor: str, model_id: str, dim: int
) -> tuple[np.ndarray, np.ndarray]:
    where, params = scope_where(scope)
    sql = "SELECT f.id, v.vector FROM files f JOIN vectors v ON v.content_hash=f.content_hash"
    sql += f" AND v.extractor=? AND v.model_id=? WHERE f.state='indexed' AND {where}"
    rows = conn.execute(sql, (extractor, model_id, *params)).fetchall()
    ids = np.array([r[0] for r in rows], dtype=np.int64)
    return ids, _matrix((r[1] for r in rows), len(rows), dim).astype(np.float32)


def models_present(conn: sqlite3.Connection, content_hash: str) -> dict[str, str]:
    # while a model change re-embeds, a content has a vector of each model: the answer names the one
    # last in model id order (``lacks_vectors`` asks about one model)
    rows = conn.execute(
        "SELECT extractor, model_id FROM vectors WHERE content_hash=? ORDER BY model_id", (content_hash,)
    )
    return {r[0]: r[1] for r in rows}


def lacks_vectors(conn: sqlite3.Connection, content_hash: str, models: dict[str, str]) -> bool:
    """True when this content has no vector of one of the extractor -> model id pairs."""
    for extractor, model_id in models.items():
        row = conn.execute(
            "SELECT 1 FROM vectors WHERE content_hash=? AND extractor=? AND model_id=?",
            (content_hash, extractor, model_id),
        ).fetchone()
        if row is None:
            return True
    return False


def count_contents(conn: sqlite3.Connection, extractor: str, model_id: str) -> tuple[int, int]:
    """(indexed contents, those of them with a vector of this model): a model change's total and done."""
    row = conn.execute(
        "SELECT count(*), count(v.content_hash) FROM (SELECT DISTINCT content_hash FROM files"
        " WHERE state='indexed' AND content_hash IS NOT NULL) c LEFT JOIN vectors v"
        " ON v.content_hash=c.content_hash AND v.extractor=? AND v.model_id=?",
        (extractor, model_id),
    ).fetchone()
    return int(row[0]), int(row[1])


def lacking_contents(
    conn: sqlite3.Connection, extractor: str, model_id: str, after: str, limit: int
) -> list[tuple[str, str]]:
    """Up to ``limit`` (content hash, one path) of indexed contents after ``after`` (in hash order)
    that have no vector of this model: what a model change still has to embed."""
    rows = conn.execute(
        "SELECT f.content_hash, min(f.path) FROM files f WHERE f.state='indexed' AND f.content_hash>?"
        " AND NOT EXISTS (SELECT 1 FROM vectors v WHERE v.content_hash=f.content_hash"
        " AND v.extractor=? AND v.model_id=?) GROUP BY f.content_hash ORDER BY f.content_hash LIMIT ?",
        (after, extractor, model_id, limit),
    )
    return [(r[0], path_from_key(r[1])) for r in rows]


def vector_for_hash(conn: sqlite3.Connection, content_hash: str, extractor: str, model_id: str) -> np.ndarray | None:
    row = conn.execute(
        "SELECT vector FROM vectors WHERE content_hash=? AND extractor=? AND model_id=?",
        (content_hash, extractor, model_id),
    ).fetchone()
    return np.frombuffer(row[0], dtype="<f4").copy() if row else None


def sample_vectors(
    conn: sqlite3.Connection, extractor: str, model_id: str, n: int, seed: int | None = None
) -> np.ndarray:
    """Up to ``n`` vectors of distinct indexed contents, drawn at random: by file ids drawn in the
    id range, not ``ORDER BY random()``, which reads every vector blob of the table (overflow pages)."""
    low, high = conn.execute("SELECT min(id), max(id) FROM files WHERE state='indexed'").fetchone()
    if low is None or n <= 0:
        return np.zeros((0, 0), dtype=np.float32)
    rng = np.random.default_rng(seed)
    sql = (
        "SELECT f.content_hash, v.vector FROM files f JOIN vectors v ON v.content_hash=f.content_hash"
        " WHERE f.id IN ({}) AND f.state='indexed' AND v.extractor=? AND v.model_id=?"
    )
    found: dict[str, bytes] = {}
    asked: set[int] = set()

    def fetch(ids: Iterable[int]) -> None:
        for content, blob in rows_in(conn, sql, ids, (extractor, model_id)):
            found.setdefault(content, blob)

    span = high - low + 1
    for _ in range(2):  # ids freed by removals leave holes: a second draw fills most samples
        wanted = n - len(found)
        if wanted <= 0 or len(asked) >= span:
            break
        ids = {int(i) for i in rng.choice(span, size=min(span, 3 * wanted), replace=False) + low} - asked
        asked |= ids
        fetch(ids)
    if len(found) < n and len(asked) < span:
        # Still short: a library that shrank keeps few ids in a wide range. Its live ids (ids
        # only, no vector read) are drawn from instead.
        live = [r[0] for r in conn.execute("SELECT id FROM files WHERE state='indexed'") if r[0] not in asked]
        if live:
            fetch(int(i) for i in rng.permutation(live)[: 3 * (n - len(found))])
    blobs = list(found.values())[:n]
    if not blobs:
        return np.zeros((0, 0), dtype=np.float32)
    return np.frombuffer(b"".join(blobs), dtype="<f4").reshape(len(blobs), -1).copy()


def missing_vectors(conn: sqlite3.Connection, extractor: str, model_id: str) -> list[str]:
    rows = conn.execute(
        "SELECT f.path FROM files f WHERE f.state='indexed' AND NOT EXISTS ("
        " SELECT 1 FROM vectors v WHERE v.content_hash=f.content_hash"
        " AND v.extractor=? AND v.model_id=?)",
        (extractor, model_id),
    )
    return [path_from_key(r[0]) for r in rows]


def hashes_with_vectors(conn: sqlite3.Connection, models: dict[str, str]) -> list[str]:
    if not models:
        return []
    sql = " INTERSECT ".join("SELECT content_hash FROM vectors WHERE extractor=? AND model_id=?" for _ in models)
    params = [value for pair in models.items() for value in pair]
    return [r[0] for r in conn.execute(sql, params)]


def iter_vectors(
    conn: sqlite3.Connection, extractor: str, model_id: str, chunk: int
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """(seq, ids, vectors) chunks of every indexed vector, in one read transaction on ``conn``."""
    conn.execute("BEGIN")
    seq = current_seq(conn)
    cursor = conn.execute(
        "SELECT f.id, v.vector, v.dim FROM files f JOIN vectors v"
        " ON v.content_hash=f.content_hash AND v.extractor=? AND v.model_id=?"
        " WHERE f.state='indexed' ORDER BY f.id",
        (extractor, model_id),
    )
    while rows := cursor.fetchmany(chunk):
        ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
        yield seq, ids, _matrix((r[1] for r in rows), len(rows), rows[0][2])
    conn.execute("COMMIT")


def changes_since(conn: sqlite3.Connection, extractor: str, model_id: str, seq: int, dim: int) -> Changes:
    conn.execute("BEGIN")
    try:
        now_seq = current_seq(conn)
        rows = conn.execute(
            "SELECT f.id, f.state, v.vector FROM files f LEFT JOIN vectors v"
            " ON v.content_hash=f.content_hash AND v.extractor=? AND v.model_id=?"
            " WHERE f.seq>?",
            (extractor, model_id, seq),
        ).fetchall()
        removed = [r[0] for r in conn.execute("SELECT file_id FROM removed WHERE seq>?", (seq,))]
    finally:
        conn.execute("COMMIT")
    live = [(r[0], r[2]) for r in rows if r[1] == FileState.INDEXED and r[2] is not None]
    removed.extend(r[0] for r in rows if r[1] != FileState.INDEXED or r[2] is None)
    ids = np.array([r[0] for r in live], dtype=np.int64)
    vectors = _matrix((r[1] for r in live), len(live), dim).copy() if live else np.zeros((0, dim), dtype=np.float32)
    return Changes(ids=ids, vectors=vectors, removed_ids=np.array(removed, dtype=np.int64), seq=now_seq)


def iter_export(
    conn: sqlite3.Connection, extractors: Sequence[str], chunk: int
) -> Iterator[tuple[str, str, list[Any]]]:
    """(extractor, model_id, rows) chunks of every indexed file's vectors, in one read transaction on ``conn``."""
    conn.execute("BEGIN")
    sql = (
        "SELECT f.content_hash, f.path, f.size, f.mtime_ns, v.dim, v.vector, "
        + ", ".join(f"f.{c}" for c in METADATA_COLUMNS)
        + ", v.model_id FROM files f JOIN vectors v ON v.content_hash=f.content_hash AND v.extractor=?"
        " WHERE f.state='indexed' ORDER BY f.id"
    )
    for extractor in extractors:
        cursor = conn.execute(sql, (extractor,))
        while rows := cursor.fetchmany(chunk):
            by_model: dict[str, list[Any]] = {}
            for row in rows:  # one model id nearly always; more while a model change re-embeds
                by_model.setdefault(row[-1], []).append(row[:-1])
            for model_id, group in by_model.items():
                yield extractor, model_id, group
    conn.execute("COMMIT")


def import_facts(
    conn: sqlite3.Connection, paths: Sequence[str], extractor: str, model_id: str
) -> dict[str, tuple[int, int, str, bool]]:
    sql = "SELECT path, size, mtime_ns, content_hash FROM files WHERE state='indexed' AND path IN ({})"
    rows = rows_in(conn, sql, map(path_key, paths))
    hashes = {r[3] for r in rows if r[3] is not None}
    sql = "SELECT content_hash FROM vectors WHERE content_hash IN ({}) AND extractor=? AND model_id=?"
    with_vector = {r[0] for r in rows_in(conn, sql, hashes, (extractor, model_id))}
    return {path_from_key(r[0]): (r[1], r[2], r[3], r[3] in with_vector) for r in rows}
