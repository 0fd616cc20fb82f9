"""The SQLite catalogue: the single source of truth for files and their vectors.

One row per file (absolute normalised path, size, mtime_ns, content hash, state,
last error) and one vector per (content hash, extractor) with the model id that
made it, so a moved or copied file reuses its vector. Every change bumps a
monotonic change number (``seq``) so that derived indexes can catch up with
``changes_since`` instead of re-reading everything.

Longer than most modules: every SQL statement of the daemon lives here, so the schema's
users (indexer, index, folder search, duplicates) never write SQL of their own.

Paths are stored as the file system's bytes (``paths.path_key``): a name that is not
valid UTF-8 is still one row, and reads give it back unchanged.

Connections: one writer (guarded by a lock) and one reader per thread; WAL mode
lets readers run while a batch is being written.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..media.photo_metadata import PhotoMetadata
from ..paths import normalise_path, path_from_key, path_key
from . import schema
from .rows import Changes, Counts, FailedFile, FileRecord, FileResult, FileState, SearchScope

log = logging.getLogger("imgsearchd.store.catalog")


class CatalogError(Exception):
    """The catalogue file cannot be opened or has an unknown schema."""


# A path and everything below it, as an indexed range scan: bind with ``_subtree(root)``.
_SUBTREE = "(path=? OR (path>=? AND path<?))"


def _subtree(root: str) -> tuple[bytes, bytes, bytes]:
    """Parameters for ``_SUBTREE``: the path itself, and the range of paths under it."""
    root_b = path_key(normalise_path(root))
    prefix = root_b.rstrip(b"/") + b"/"
    return root_b, prefix, prefix[:-1] + b"0"  # "0" is the byte after "/"


def _folder_trouble(folder: Path) -> str:
    """Why a folder cannot hold a writable SQLite database, as a clause ("" when it looks fine)."""
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return f" (the file system of {folder} is mounted read-only)"
        if not os.access(folder, os.W_OK | os.X_OK):
            return f" ({folder} is not writable by this user)"
    except OSError as exc:
        return f" ({folder}: {exc.strerror or exc})"
    return ""


# The metadata columns (schema version 3), in ``PhotoMetadata``'s order.
_METADATA_COLUMNS = ("taken_at", "taken", "taken_from", "width", "height", "camera", "orientation", "has_gps")
_METADATA_SET = ", ".join(f"{c}=?" for c in _METADATA_COLUMNS)


def _metadata_row(m: PhotoMetadata) -> tuple[object, ...]:
    return (m.taken_at, m.taken, m.taken_from, m.width, m.height, m.camera, m.orientation, int(m.has_gps))


def _metadata_of(row: Sequence[Any]) -> PhotoMetadata | None:
    """A ``PhotoMetadata`` from the metadata columns of a row; None while they are not filled."""
    if row[0] is None:
        return None
    return PhotoMetadata(row[0], row[1], row[2], row[3], row[4], row[5], row[6], bool(row[7]))


def _scope_where(scope: SearchScope | None) -> tuple[str, tuple[object, ...]]:
    """SQL conditions (after ``AND``) and their parameters for a search scope ("1" for everything)."""
    terms: list[str] = []
    params: list[object] = []
    if scope is not None and scope.folder is not None:
        terms.append(_SUBTREE)
        params.extend(_subtree(scope.folder))
    if scope is not None and scope.taken_after is not None:
        terms.append("taken_at>=?")
        params.append(scope.taken_after)
    if scope is not None and scope.taken_before is not None:
        terms.append("taken_at<?")
        params.append(scope.taken_before)
    return (" AND ".join(terms) or "1"), tuple(params)


# A vector for (content_hash, extractor), the vectors table's primary key: the indexer's
# replaces any stored one; an import's (``record_batch(keep_vectors=True)``) never replaces
# one of the same model, so rows claiming a hash cannot overwrite a vector already there.
_PUT_VECTOR = "INSERT OR REPLACE INTO vectors (content_hash, extractor, model_id, dim, vector) VALUES (?, ?, ?, ?, ?)"
_KEEP_VECTOR = (
    "INSERT INTO vectors (content_hash, extractor, model_id, dim, vector) VALUES (?, ?, ?, ?, ?)"
    " ON CONFLICT (content_hash, extractor) DO UPDATE SET model_id=excluded.model_id, dim=excluded.dim,"
    " vector=excluded.vector WHERE vectors.model_id<>excluded.model_id"
)


def _vector_blob(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


class Catalog:
    """The catalogue in one SQLite file (WAL mode)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._write_lock = threading.RLock()
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._closed = False
        self.commits = 0  # write transactions committed by this process (the storage state reads it)
        try:
            self._writer = self._connect()
            self._migrate()
        except sqlite3.DatabaseError as exc:
            raise CatalogError(f"cannot open catalogue {self.path}: {exc}{_folder_trouble(self.path.parent)}") from exc

    # -- connections -------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._closed:
                raise CatalogError("catalogue is closed")
            conn = self._connect()
            conn.execute("PRAGMA query_only=ON")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def close(self) -> None:
        """Checkpoint the WAL and close every connection."""
        with self._write_lock:
            if self._closed:
                return
            self._closed = True
            with self._readers_lock:
                for conn in self._readers:
                    conn.close()
                self._readers.clear()
            try:
                self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:  # a full or read-only disk: the WAL stays, and is replayed at the next open
                log.warning("cannot checkpoint the catalogue %s at close: %s", self.path, exc)
            finally:
                self._writer.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- schema ------------------------------------------------------------

    def _migrate(self) -> None:
        with self._write_lock:
            try:
                schema.migrate(self._writer)
            except schema.NewerSchemaError as exc:
                raise CatalogError(
                    f"catalogue {self.path} has schema version {exc.version}, newer than "
                    f"this imgsearchd understands ({schema.VERSION}); upgrade imgsearchd"
                ) from None

    @property
    def schema_version(self) -> int:
        return self._reader().execute("PRAGMA user_version").fetchone()[0]

    # -- writes ------------------------------------------------------------

    @contextlib.contextmanager
    def _change(self) -> Iterator[tuple[sqlite3.Connection, int]]:
        """One write transaction with its new change number; rolled back on any error."""
        with self._write_lock:
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                seq = int(conn.execute("SELECT value FROM meta WHERE key='seq'").fetchone()[0]) + 1
                conn.execute("UPDATE meta SET value=? WHERE key='seq'", (str(seq),))
                yield conn, seq
                conn.execute("COMMIT")
                self.commits += 1
            except BaseException:
                # SQLite rolls back by itself after some errors (a full disk); a second
                # ROLLBACK would then raise "no transaction is active" and hide the cause.
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    @staticmethod
    def _forget(conn: sqlite3.Connection, file_id: int, seq: int) -> None:
        """Delete a file row and leave a tombstone for the indexes."""
        conn.execute("DELETE FROM files WHERE id=?", (file_id,))
        conn.execute("INSERT OR REPLACE INTO removed (file_id, seq) VALUES (?, ?)", (file_id, seq))

    def record_batch(self, results: Iterable[FileResult], keep_vectors: bool = False) -> int:
        """Write a batch of pipeline results in one transaction; return its change number.

        ``keep_vectors`` (an import's): a vector already stored for a (content hash,
        extractor) by the same model stays; only one of another model, which a scan would
        replace too (``missing_vectors``), is replaced. Without it (the indexer's, which
        embedded the bytes itself) the new vector replaces any stored one.
        """
        results = list(results)
        if not results:
            return self.current_seq()
        now = time.time()
        insert = _KEEP_VECTOR if keep_vectors else _PUT_VECTOR
        with self._change() as (conn, seq):
            for result in results:
                self._record_one(conn, result, seq, now, insert)
        return seq

    def _record_one(
        self, conn: sqlite3.Connection, result: FileResult, seq: int, now: float, insert: str = _PUT_VECTOR
    ) -> None:
        path = path_key(normalise_path(result.path))
        for name, (model_id, vector) in result.vectors.items():
            conn.execute(insert, (result.content_hash, name, model_id, int(vector.shape[-1]), _vector_blob(vector)))
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
            self._forget(conn, row[0], seq)
            row = None
        if row is None:
            conn.execute(
                "INSERT INTO files (path, size, mtime_ns, content_hash, state, error_reason,"
                " error_detail, seq, updated_at, failures) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    path,
                    result.size,
                    result.mtime_ns,
                    result.content_hash,
                    state,
                    result.error_reason,
                    detail,
                    seq,
                    now,
                    failures,
                ),
            )
        else:
            conn.execute(
                "UPDATE files SET size=?, mtime_ns=?, error_reason=?, error_detail=?, seq=?, updated_at=?, failures=?"
                " WHERE id=?",
                (result.size, result.mtime_ns, result.error_reason, detail, seq, now, failures, row[0]),
            )
        if result.metadata is not None:
            conn.execute(f"UPDATE files SET {_METADATA_SET} WHERE path=?", (*_metadata_row(result.metadata), path))

    def remove_paths(self, paths: Iterable[str]) -> int:
        """Forget these files (and everything under them when a path is a folder).

        Their vectors stay until ``prune_orphan_vectors``.
        """
        removed = 0
        with self._change() as (conn, seq):
            for raw in paths:
                ids = [r[0] for r in conn.execute(f"SELECT id FROM files WHERE {_SUBTREE}", _subtree(raw))]
                for file_id in ids:
                    self._forget(conn, file_id, seq)
                removed += len(ids)
        return removed

    def move(self, old: str, new: str) -> int:
        """Rename a file or a folder's files in place: ids and vectors are kept."""
        old_p, new_p = normalise_path(old), normalise_path(new)
        moved = 0
        with self._change() as (conn, seq):
            rows = conn.execute(f"SELECT id, path FROM files WHERE {_SUBTREE}", _subtree(old_p)).fetchall()
            old_b, new_b = path_key(old_p), path_key(new_p)
            for file_id, path in rows:
                target = new_b + bytes(path)[len(old_b) :]
                clash = conn.execute("SELECT id FROM files WHERE path=?", (target,)).fetchone()
                if clash is not None:
                    self._forget(conn, clash[0], seq)
                conn.execute("UPDATE files SET path=? WHERE id=?", (target, file_id))
                moved += 1
        return moved

    def set_offline(self, root: str) -> int:
        """Mark the indexed files at or below ``root`` offline: kept with their vectors, not searchable.

        For a watched folder that vanished as a whole (an unmounted disk); returns how many.
        """
        return self._set_state(f"state='indexed' AND {_SUBTREE}", [_subtree(root)], FileState.OFFLINE)

    def set_online(self, paths: Iterable[str]) -> int:
        """Make offline files searchable again (they came back unchanged); returns how many."""
        return self._set_state(
            "state='offline' AND path=?", [(path_key(normalise_path(p)),) for p in paths], FileState.INDEXED
        )

    def _set_state(self, where: str, params: list[tuple[bytes, ...]], state: str) -> int:
        if not params:
            return 0
        changed = 0
        now = time.time()
        with self._change() as (conn, seq):
            for values in params:
                changed += conn.execute(
                    f"UPDATE files SET state=?, seq=?, updated_at=? WHERE {where}", (state, seq, now, *values)
                ).rowcount
        return changed

    def probe_write(self) -> None:
        """One empty write transaction: raises when the catalogue cannot be written now."""
        with self._change():
            pass

    def set_note(self, key: str, value: str) -> None:
        """Keep a small text under ``key`` (e.g. the backfill's progress); no change number."""
        if key == "seq":
            raise ValueError("the change number is not a note")
        with self._write_lock:
            self._writer.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))
            self.commits += 1

    def note(self, key: str) -> str | None:
        """The text kept under ``key`` by ``set_note`` (this process or another), or None."""
        row = self._reader().execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return str(row[0]) if row else None

    def hashes_with_vectors(self, models: dict[str, str]) -> list[str]:
        """Content hashes that have a vector from every one of these extractor -> model id pairs."""
        if not models:
            return []
        sql = " INTERSECT ".join("SELECT content_hash FROM vectors WHERE extractor=? AND model_id=?" for _ in models)
        params = [value for pair in models.items() for value in pair]
        return [r[0] for r in self._reader().execute(sql, params)]

    def failed_everywhere(self) -> list[FailedFile]:
        """Every failed file, for the retry timer."""
        rows = self._reader().execute("SELECT path, error_reason, failures, updated_at FROM files WHERE state='failed'")
        return [FailedFile(path_from_key(r[0]), r[1] or "", r[2], r[3]) for r in rows]

    def prune_orphan_vectors(self) -> int:
        """Drop vectors no file has any more.

        Removing a file keeps its vector until this runs, so a file that reappears
        elsewhere (a move seen as delete + create) reuses it instead of re-embedding.
        """
        with self._write_lock:
            cursor = self._writer.execute(
                "DELETE FROM vectors WHERE content_hash NOT IN"
                " (SELECT content_hash FROM files WHERE content_hash IS NOT NULL)"
            )
            return cursor.rowcount

    def _rows_in(self, sql: str, keys: Iterable[Any], after: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        """The rows of ``sql`` whose ``IN ({})`` takes ``keys``, asked 500 at a time (under
        SQLite's limit of bound parameters); ``after`` binds the parameters that follow it."""
        keys = list(keys)
        conn = self._reader()
        rows: list[tuple[Any, ...]] = []
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            rows += conn.execute(sql.format(",".join("?" * len(chunk))), (*chunk, *after)).fetchall()
        return rows

    def unused_hashes(self, hashes: Iterable[str]) -> set[str]:
        """Those of ``hashes`` that no file has any more (their thumbnails can go)."""
        wanted = list(dict.fromkeys(hashes))
        used = {
            r[0] for r in self._rows_in("SELECT DISTINCT content_hash FROM files WHERE content_hash IN ({})", wanted)
        }
        return set(wanted) - used

    # -- reads -------------------------------------------------------------

    def current_seq(self) -> int:
        row = self._reader().execute("SELECT value FROM meta WHERE key='seq'").fetchone()
        return int(row[0])

    def get(self, path: str) -> FileRecord | None:
        row = (
            self._reader()
            .execute(
                "SELECT id, path, size, mtime_ns, content_hash, state, error_reason, error_detail, seq,"
                " failures, updated_at FROM files WHERE path=?",
                (path_key(normalise_path(path)),),
            )
            .fetchone()
        )
        return FileRecord(row[0], path_from_key(row[1]), *row[2:]) if row else None

    def files_under(self, root: str) -> dict[str, tuple[int, int, str]]:
        """path -> (size, mtime_ns, state) for every file at or below ``root``."""
        rows = self._reader().execute(f"SELECT path, size, mtime_ns, state FROM files WHERE {_SUBTREE}", _subtree(root))
        return {path_from_key(r[0]): (r[1], r[2], r[3]) for r in rows}

    def count_under(self, root: str, states: Iterable[str] = (FileState.INDEXED, FileState.OFFLINE)) -> int:
        """How many files at or below ``root`` are in one of ``states``."""
        states = list(states)
        marks = ",".join("?" * len(states))
        return (
            self._reader()
            .execute(f"SELECT COUNT(*) FROM files WHERE state IN ({marks}) AND {_SUBTREE}", (*states, *_subtree(root)))
            .fetchone()[0]
        )

    def count_in(self, scope: SearchScope) -> int:
        """How many indexed (or offline) files a search scope holds."""
        where, params = _scope_where(scope)
        sql = f"SELECT COUNT(*) FROM files WHERE state IN ('indexed', 'offline') AND {where}"
        if scope.folder is None and scope.by_date:
            # Only indexed (then maybe offline) rows hold metadata: a failed file's row never
            # gets any, and a file that fails after being indexed gets a new row. So the state
            # test can go, and the count is read from the taken_at index alone: at 1M files a
            # range holding 900k took 2.5-2.7 s with it (a row read each) and 46 ms without.
            sql = f"SELECT COUNT(*) FROM files WHERE {where}"
        return int(self._reader().execute(sql, params).fetchone()[0])

    def vectors_under(self, root: str, extractor: str, model_id: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of the indexed files at or below ``root`` with a vector from this model."""
        return self.vectors_in(SearchScope(folder=root), extractor, model_id, dim)

    def vectors_in(self, scope: SearchScope, extractor: str, model_id: str, dim: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, vectors) of the indexed files in a search scope with a vector from this model.

        One read, so one change number; what the indexes still hold as fresh is in it too.
        """
        where, params = _scope_where(scope)
        sql = "SELECT f.id, v.vector FROM files f JOIN vectors v ON v.content_hash=f.content_hash"
        sql += f" AND v.extractor=? AND v.model_id=? WHERE f.state='indexed' AND {where}"
        rows = self._reader().execute(sql, (extractor, model_id, *params)).fetchall()
        ids = np.array([r[0] for r in rows], dtype=np.int64)
        return ids, np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4").reshape(len(rows), dim).astype(np.float32)

    def models_present(self, content_hash: str) -> dict[str, str]:
        """extractor -> model_id of the vectors stored for this content."""
        rows = self._reader().execute("SELECT extractor, model_id FROM vectors WHERE content_hash=?", (content_hash,))
        return {r[0]: r[1] for r in rows}

    def vector_for_hash(self, content_hash: str, extractor: str, model_id: str) -> np.ndarray | None:
        row = (
            self._reader()
            .execute(
                "SELECT vector FROM vectors WHERE content_hash=? AND extractor=? AND model_id=?",
                (content_hash, extractor, model_id),
            )
            .fetchone()
        )
        return np.frombuffer(row[0], dtype="<f4").copy() if row else None

    def vector_for_path(self, path: str, extractor: str, model_id: str) -> tuple[FileRecord, np.ndarray] | None:
        """The stored vector of an indexed file, or None."""
        record = self.get(path)
        if record is None or record.state != FileState.INDEXED or record.content_hash is None:
            return None
        vector = self.vector_for_hash(record.content_hash, extractor, model_id)
        return (record, vector) if vector is not None else None

    def missing_vectors(self, extractor: str, model_id: str) -> list[str]:
        """Paths of indexed files that have no vector from this extractor and model."""
        rows = self._reader().execute(
            "SELECT f.path FROM files f WHERE f.state='indexed' AND NOT EXISTS ("
            " SELECT 1 FROM vectors v WHERE v.content_hash=f.content_hash"
            " AND v.extractor=? AND v.model_id=?)",
            (extractor, model_id),
        )
        return [path_from_key(r[0]) for r in rows]

    def paths_for(self, ids: Iterable[int], scope: SearchScope | None = None) -> dict[int, str]:
        """id -> path for the ids that still exist, are indexed and lie in ``scope`` (when given)."""
        where, params = _scope_where(scope)
        sql = f"SELECT id, path FROM files WHERE state='indexed' AND id IN ({{}}) AND {where}"
        rows = self._rows_in(sql, [int(i) for i in ids], params)
        return {file_id: path_from_key(path) for file_id, path in rows}

    def content_hashes(self, paths: Iterable[str]) -> dict[str, str]:
        """path -> content hash for the catalogued paths (normalised) that have one."""
        sql = "SELECT path, content_hash FROM files WHERE content_hash IS NOT NULL AND path IN ({})"
        return {path_from_key(path): content_hash for path, content_hash in self._rows_in(sql, map(path_key, paths))}

    def result_facts(self, paths: Iterable[str]) -> dict[str, tuple[str | None, PhotoMetadata | None]]:
        """path -> (content hash, metadata) for the catalogued paths (normalised): what a result shows."""
        sql = f"SELECT path, content_hash, {', '.join(_METADATA_COLUMNS)} FROM files WHERE path IN ({{}})"
        return {path_from_key(r[0]): (r[1], _metadata_of(r[2:])) for r in self._rows_in(sql, map(path_key, paths))}

    def metadata_for(self, ids: Iterable[int]) -> dict[int, PhotoMetadata]:
        """id -> metadata for the ids whose metadata is filled in."""
        sql = f"SELECT id, {', '.join(_METADATA_COLUMNS)} FROM files WHERE id IN ({{}}) AND taken_at IS NOT NULL"
        return {r[0]: m for r in self._rows_in(sql, [int(i) for i in ids]) if (m := _metadata_of(r[1:])) is not None}

    def without_metadata(self, limit: int) -> list[tuple[int, str, int]]:
        """(id, path, mtime_ns) of up to ``limit`` indexed files whose metadata is not filled in
        (catalogued before schema version 3)."""
        rows = self._reader().execute(
            "SELECT id, path, mtime_ns FROM files WHERE state='indexed' AND taken_at IS NULL LIMIT ?", (limit,)
        )
        return [(r[0], path_from_key(r[1]), r[2]) for r in rows]

    def count_without_metadata(self) -> int:
        sql = "SELECT COUNT(*) FROM files WHERE state='indexed' AND taken_at IS NULL"
        return int(self._reader().execute(sql).fetchone()[0])

    def fill_metadata(self, rows: Iterable[tuple[int, PhotoMetadata]]) -> None:
        """Store metadata read for (id, metadata) files catalogued without it.

        No change number: the indexes hold vectors, and the date filters read these columns
        at search time. A row the pipeline filled meanwhile (the file was touched or
        re-indexed) keeps what the pipeline read.
        """
        with self._write_lock:
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(
                    f"UPDATE files SET {_METADATA_SET} WHERE id=? AND taken_at IS NULL",
                    [(*_metadata_row(m), i) for i, m in rows],
                )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:  # see ``_change``
                    conn.execute("ROLLBACK")
                raise
            self.commits += 1

    def iter_vectors(
        self, extractor: str, model_id: str, chunk: int = 10000
    ) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Yield (seq, ids, vectors) chunks of every indexed vector, from one consistent read.

        ``seq`` is the catalogue change number the whole read reflects.
        """
        conn = self._connect()
        try:
            conn.execute("BEGIN")
            seq = int(conn.execute("SELECT value FROM meta WHERE key='seq'").fetchone()[0])
            cursor = conn.execute(
                "SELECT f.id, v.vector, v.dim FROM files f JOIN vectors v"
                " ON v.content_hash=f.content_hash AND v.extractor=? AND v.model_id=?"
                " WHERE f.state='indexed' ORDER BY f.id",
                (extractor, model_id),
            )
            while True:
                rows = cursor.fetchmany(chunk)
                if not rows:
                    break
                ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
                vectors = np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4").reshape(len(rows), rows[0][2])
                yield seq, ids, vectors
            conn.execute("COMMIT")
        finally:
            conn.close()

    def all_vectors(self, extractor: str, model_id: str, dim: int) -> tuple[int, np.ndarray, np.ndarray]:
        """(seq, ids, vectors) of every indexed vector for this extractor and model."""
        seq = self.current_seq()  # what an empty read reflects
        ids_parts, vec_parts = [], []
        for chunk_seq, ids, vectors in self.iter_vectors(extractor, model_id):
            seq = chunk_seq
            ids_parts.append(ids)
            vec_parts.append(vectors)
        if not ids_parts:
            return seq, np.zeros(0, dtype=np.int64), np.zeros((0, dim), dtype=np.float32)
        return seq, np.concatenate(ids_parts), np.concatenate(vec_parts).astype(np.float32, copy=False)

    def changes_since(self, extractor: str, model_id: str, seq: int, dim: int) -> Changes:
        """Vectors added or changed, and files removed, after change number ``seq``."""
        conn = self._reader()
        conn.execute("BEGIN")
        try:
            now_seq = int(conn.execute("SELECT value FROM meta WHERE key='seq'").fetchone()[0])
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
        vectors = (
            np.frombuffer(b"".join(r[1] for r in live), dtype="<f4").reshape(len(live), dim).copy()
            if live
            else np.zeros((0, dim), dtype=np.float32)
        )
        return Changes(ids=ids, vectors=vectors, removed_ids=np.array(removed, dtype=np.int64), seq=now_seq)

    def counts(self) -> Counts:
        """Files by state, failures by reason, and vectors by extractor."""
        conn = self._reader()
        by_state = dict(conn.execute("SELECT state, COUNT(*) FROM files GROUP BY state").fetchall())
        failed = dict(
            conn.execute(
                "SELECT error_reason, COUNT(*) FROM files WHERE state='failed' GROUP BY error_reason"
            ).fetchall()
        )
        vectors = dict(
            conn.execute(
                "SELECT v.extractor, COUNT(*) FROM files f JOIN vectors v ON v.content_hash=f.content_hash"
                " WHERE f.state='indexed' GROUP BY v.extractor"
            ).fetchall()
        )
        return Counts(files=sum(by_state.values()), by_state=by_state, failed_by_reason=failed, vectors=vectors)

    def recent_failures(self, limit: int = 10) -> list[dict[str, str]]:
        rows = self._reader().execute(
            "SELECT path, error_reason, error_detail FROM files WHERE state='failed' ORDER BY updated_at DESC LIMIT ?",
            (limit,),
        )
        return [{"path": path_from_key(r[0]), "reason": r[1], "detail": r[2]} for r in rows]

    def shared_contents(self) -> list[tuple[str, int, str, int]]:
        """(content hash, id, path, size) of every indexed file whose bytes another indexed file shares."""
        rows = self._reader().execute(
            "SELECT content_hash, id, path, size FROM files WHERE state='indexed' AND content_hash IN"
            " (SELECT content_hash FROM files WHERE state='indexed' AND content_hash IS NOT NULL"
            " GROUP BY content_hash HAVING COUNT(*) > 1) ORDER BY content_hash, id"
        )
        return [(r[0], r[1], path_from_key(r[2]), r[3]) for r in rows]

    def path_and_size(self, ids: Iterable[int]) -> dict[int, tuple[str, int]]:
        """id -> (path, size) for the ids that still exist and are indexed."""
        sql = "SELECT id, path, size FROM files WHERE state='indexed' AND id IN ({})"
        return {r[0]: (path_from_key(r[1]), r[2]) for r in self._rows_in(sql, [int(i) for i in ids])}

    def integrity_check(self) -> str:
        return self._reader().execute("PRAGMA integrity_check").fetchone()[0]

    # -- export and import (vectors_io) ------------------------------------------------------

    def iter_export(self, extractors: Sequence[str], chunk: int = 10000) -> Iterator[tuple[str, str, list[Any]]]:
        """Yield (extractor, model_id, rows) chunks of every indexed file's vectors, from one read.

        A row is (content_hash, path bytes, size, mtime_ns, dim, vector blob, *metadata
        columns). One read transaction on a connection of its own: the daemon may write
        meanwhile, and the whole export reflects one change number.
        """
        conn = self._connect()
        try:
            conn.execute("BEGIN")
            sql = (
                "SELECT f.content_hash, f.path, f.size, f.mtime_ns, v.dim, v.vector, "
                + ", ".join(f"f.{c}" for c in _METADATA_COLUMNS)
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
        finally:
            conn.close()

    def import_facts(
        self, paths: Sequence[str], extractor: str, model_id: str
    ) -> dict[str, tuple[int, int, str, bool]]:
        """path -> (size, mtime_ns, content_hash, has a vector of this extractor and model) for
        the indexed paths (normalised) among ``paths``."""
        sql = "SELECT path, size, mtime_ns, content_hash FROM files WHERE state='indexed' AND path IN ({})"
        rows = self._rows_in(sql, map(path_key, paths))
        hashes = {r[3] for r in rows if r[3] is not None}
        sql = "SELECT content_hash FROM vectors WHERE content_hash IN ({}) AND extractor=? AND model_id=?"
        with_vector = {r[0] for r in self._rows_in(sql, hashes, (extractor, model_id))}
        return {path_from_key(r[0]): (r[1], r[2], r[3], r[3] in with_vector) for r in rows}
