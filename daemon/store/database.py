"""The catalogue's SQLite file: its connections, its write transactions, its schema migration.

Connections: one writer (guarded by a lock) and one reader per thread; WAL mode lets
readers run while a batch is being written. A write that changes what the indexes hold
runs in ``_change``, which bumps the monotonic change number (``seq``) the indexes catch
up from; the statements themselves live in ``file_writes``, ``file_reads`` and
``vector_reads`` as functions of a connection.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Self

from . import schema
from .sql import current_seq

log = logging.getLogger("imgsearchd.store.catalog")


class CatalogError(Exception):
    """The catalogue file cannot be opened or has an unknown schema."""


def folder_trouble(folder: Path) -> str:
    """Why a folder cannot hold a writable SQLite database, as a clause ("" when it looks fine)."""
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return f" (the file system of {folder} is mounted read-only)"
        if not os.access(folder, os.W_OK | os.X_OK):
            return f" ({folder} is not writable by this user)"
    except OSError as exc:
        return f" ({folder}: {exc.strerror or exc})"
    return ""


class Database:
    """One SQLite file in WAL mode, migrated to the current schema on open."""

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
            raise CatalogError(f"cannot open catalogue {self.path}: {exc}{folder_trouble(self.path.parent)}") from exc

    # -- connections -------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def _reader(self) -> sqlite3.Connection:
        """This thread's read-only connection."""
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

    @contextlib.contextmanager
    def _own_connection(self) -> Iterator[sqlite3.Connection]:
        """A connection of its own for one long read (an export, a builder's full read), closed after."""
        conn = self._connect()
        try:
            yield conn
        finally:
            conn.close()

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

    def __enter__(self) -> Self:
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
        return int(self._reader().execute("PRAGMA user_version").fetchone()[0])

    def integrity_check(self) -> str:
        return str(self._reader().execute("PRAGMA integrity_check").fetchone()[0])

    # -- transactions ------------------------------------------------------

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction without a change number; rolled back on any error."""
        with self._write_lock:
            conn = self._writer
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                # SQLite rolls back by itself after some errors (a full disk); a second
                # ROLLBACK would then raise "no transaction is active" and hide the cause.
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            self.commits += 1

    @contextlib.contextmanager
    def _change(self) -> Iterator[tuple[sqlite3.Connection, int]]:
        """One write transaction with its new change number; rolled back on any error."""
        with self._write() as conn:
            seq = current_seq(conn) + 1
            conn.execute("UPDATE meta SET value=? WHERE key='seq'", (str(seq),))
            yield conn, seq

    def probe_write(self) -> None:
        """One empty write transaction: raises when the catalogue cannot be written now."""
        with self._change():
            pass

    def current_seq(self) -> int:
        return current_seq(self._reader())

    # -- notes -------------------------------------------------------------

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
