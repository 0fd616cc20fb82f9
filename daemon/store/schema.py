"""The catalogue's SQLite schema and the migrations that bring an older file up to date.

``PRAGMA user_version`` holds the schema version; each migration runs in its own
transaction, so a crash mid-way leaves the previous version intact.
"""

from __future__ import annotations

import sqlite3

VERSION = 6

MIGRATIONS: dict[int, str] = {
    # version -> SQL that takes the schema from version-1 to version
    1: """
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    );
    CREATE TABLE files (
        id           INTEGER PRIMARY KEY AUTOINCREMENT,
        path         TEXT NOT NULL UNIQUE,
        size         INTEGER NOT NULL,
        mtime_ns     INTEGER NOT NULL,
        content_hash TEXT,
        state        TEXT NOT NULL CHECK (state IN ('indexed', 'failed', 'offline')),
        error_reason TEXT,
        error_detail TEXT,
        seq          INTEGER NOT NULL,
        updated_at   REAL NOT NULL
    );
    CREATE INDEX files_by_hash ON files (content_hash);
    CREATE INDEX files_by_seq ON files (seq);
    CREATE TABLE vectors (
        content_hash TEXT NOT NULL,
        extractor    TEXT NOT NULL,
        model_id     TEXT NOT NULL,
        dim          INTEGER NOT NULL,
        vector       BLOB NOT NULL,
        PRIMARY KEY (content_hash, extractor)
    ) WITHOUT ROWID;
    CREATE TABLE removed (
        file_id INTEGER PRIMARY KEY,
        seq     INTEGER NOT NULL
    );
    CREATE INDEX removed_by_seq ON removed (seq);
    INSERT INTO meta (key, value) VALUES ('seq', '0');
    """,
    # Paths as the file system's bytes (a name that is not UTF-8 cannot be TEXT), and the
    # count of failures in a row, which spaces out retries of a file that keeps failing.
    2: """
    UPDATE files SET path = CAST(path AS BLOB);
    ALTER TABLE files ADD COLUMN failures INTEGER NOT NULL DEFAULT 0;
    """,
    # What each photo says about itself (``photo_metadata``). Rows from before stay NULL until
    # the service's metadata fill reads their headers; ``taken_at`` is indexed for the date filters.
    3: """
    ALTER TABLE files ADD COLUMN taken_at REAL;
    ALTER TABLE files ADD COLUMN taken TEXT;
    ALTER TABLE files ADD COLUMN taken_from TEXT;
    ALTER TABLE files ADD COLUMN width INTEGER;
    ALTER TABLE files ADD COLUMN height INTEGER;
    ALTER TABLE files ADD COLUMN camera TEXT;
    ALTER TABLE files ADD COLUMN orientation INTEGER;
    ALTER TABLE files ADD COLUMN has_gps INTEGER;
    CREATE INDEX files_by_taken ON files (taken_at);
    """,
    # Folders watched because someone asked at run time (``POST /folders``, ``imgsearchd watch``),
    # besides the config's: paths as the file system's bytes, like ``files.path``. And the vectors
    # of pictures uploaded to search by (not library files), kept so a search's URL can name its
    # picture by content hash (``/search?hash=``); the least recently used go first beyond a bound.
    4: """
    CREATE TABLE watched_folders (
        path     BLOB PRIMARY KEY,
        added_at REAL NOT NULL
    );
    CREATE TABLE query_vectors (
        content_hash TEXT NOT NULL,
        extractor    TEXT NOT NULL,
        model_id     TEXT NOT NULL,
        dim          INTEGER NOT NULL,
        vector       BLOB NOT NULL,
        used_at      REAL NOT NULL,
        PRIMARY KEY (content_hash, extractor)
    ) WITHOUT ROWID;
    CREATE INDEX query_vectors_by_use ON query_vectors (used_at);
    """,
    # The journal of actions on duplicates (``resolutions``): each resolution and each file's plan
    # (its path, keeper, content hash and target) written before the file is touched, so a start
    # after a crash finishes or rolls back every file, and an undo knows where each one went.
    5: """
    CREATE TABLE resolutions (
        id         INTEGER PRIMARY KEY AUTOINCREMENT,
        action     TEXT NOT NULL CHECK (action IN ('trash', 'move', 'link')),
        dest       BLOB,
        created_at REAL NOT NULL,
        state      TEXT NOT NULL CHECK (state IN ('running', 'done', 'undoing', 'undone'))
    );
    CREATE TABLE resolution_files (
        resolution   INTEGER NOT NULL REFERENCES resolutions (id),
        n            INTEGER NOT NULL,
        path         BLOB NOT NULL,
        keep         BLOB NOT NULL,
        content_hash TEXT NOT NULL,
        target       BLOB NOT NULL,
        mode         INTEGER NOT NULL,
        mtime_ns     INTEGER NOT NULL,
        state        TEXT NOT NULL CHECK (state IN ('planned', 'done', 'untouched', 'undone', 'kept')),
        reason       TEXT,
        PRIMARY KEY (resolution, n)
    ) WITHOUT ROWID;
    """,
    # A model change without a gap: vectors keyed by model too, so the old model's stay (and
    # serve) while the new one embeds the library; ``models`` records per extractor the model
    # that serves, the one coming next, the settings that built each (JSON of its
    # ``[extractors.NAME]`` section: the old one is built again from them at start) and each
    # one's index folder under the data folder. A catalogue from before records its most used
    # model per extractor as serving, without settings (they were never stored). No index on
    # (extractor, model_id): it would count a change's progress 13x faster, but SQLite then reads
    # the full-index scans (``iter_vectors``) through it and sorts every 5 KB row in a temporary B-tree.
    6: """
    CREATE TABLE vectors_by_model (
        content_hash TEXT NOT NULL,
        extractor    TEXT NOT NULL,
        model_id     TEXT NOT NULL,
        dim          INTEGER NOT NULL,
        vector       BLOB NOT NULL,
        PRIMARY KEY (content_hash, extractor, model_id)
    ) WITHOUT ROWID;
    INSERT INTO vectors_by_model (content_hash, extractor, model_id, dim, vector)
        SELECT content_hash, extractor, model_id, dim, vector FROM vectors;
    DROP TABLE vectors;
    ALTER TABLE vectors_by_model RENAME TO vectors;
    CREATE TABLE models (
        extractor TEXT NOT NULL,
        state     TEXT NOT NULL CHECK (state IN ('serving', 'next')),
        model_id  TEXT NOT NULL,
        settings  TEXT,
        folder    TEXT NOT NULL,
        since     REAL NOT NULL,
        PRIMARY KEY (extractor, state)
    ) WITHOUT ROWID;
    INSERT INTO models (extractor, state, model_id, settings, folder, since)
        SELECT extractor, 'serving', model_id, NULL, extractor, CAST(strftime('%s', 'now') AS REAL) FROM (
            SELECT extractor, model_id, max(n) FROM (
                SELECT extractor, model_id, count(*) AS n FROM vectors GROUP BY extractor, model_id
            ) GROUP BY extractor
        );
    """,
}


class NewerSchemaError(Exception):
    """The file was written by a newer imgsearchd."""

    def __init__(self, version: int) -> None:
        super().__init__(f"schema version {version} is newer than {VERSION}")
        self.version = version


def migrate(conn: sqlite3.Connection) -> None:
    """Bring the schema of ``conn``'s database to ``VERSION`` (the caller holds the write lock)."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > VERSION:
        raise NewerSchemaError(version)
    for target in range(version + 1, VERSION + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _split_sql(MIGRATIONS[target]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version={target}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise


def _split_sql(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]
