"""Thumbnails: small pictures keyed by content hash, in the data folder, bounded in size.

One thumbnail per content hash, so moved and copied files share one. Made by the
pipeline's loader threads from the picture they already decoded for the model
(``add_picture``: no second decode), or on demand for files indexed before thumbnails
existed (``make_from_file``: one decode through ``images``, same caps).

Kept as rows of their own SQLite file, ``thumbnails/thumbnails.sqlite3`` (WAL; not the
catalogue, whose write lock the loader threads must not take): a file per thumbnail cost
1.5-1.9 ms of CPU to create on this machine's ext4 (0.03 ms on tmpfs), a third of the
pipeline's 5% budget, where a row costs 0.1 ms. Each write is one transaction, so a crash
leaves whole thumbnails or none; a damaged file is a cache and is started afresh.

Least recently used first out when the total passes ``max_bytes``. Recency lives in
memory (an ordered dict, O(1) per use and per eviction) and in each row's ``used`` time,
written at most once an hour per thumbnail, so it survives a restart without a write per
request. The start reads hashes, sizes and times (not the pictures) once.
"""

from __future__ import annotations

import collections
import contextlib
import io
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from PIL import Image, features

from . import files, images
from .limits import ImageLimits

if TYPE_CHECKING:
    from ..config import ThumbnailSettings

log = logging.getLogger("imgsearchd.media.thumbnails")

# format name in the config -> (Pillow format, content type)
FORMATS = {"webp": ("WEBP", "image/webp"), "jpeg": ("JPEG", "image/jpeg")}
# Encoder settings, for the pipeline's budget (5%: about 2 ms of CPU per picture with
# efficientnet). WebP method 0 is libwebp's fastest: 2.2-3.3 ms of CPU for a 256x171 picture
# here, method 4 (Pillow's default) 7.1 ms and method 6 17 ms, for files 3-4% smaller;
# quality 75 costs as much as 60 and 70, and makes 8.9 KB files (80: 10.3 KB). JPEG at
# quality 85: 0.2-0.3 ms, 14-15 KB.
ENCODE: dict[str, dict[str, int | bool]] = {
    "WEBP": {"quality": 75, "method": 0},
    "JPEG": {"quality": 85, "optimize": False},
}
DB_NAME = "thumbnails.sqlite3"
# A thumbnail's ``used`` time is written at most this often when it is served.
TOUCH_EVERY = 3600.0
# Past the bound, the least recently used go until the total is this share of it.
EVICT_TO = 0.9
# On-demand thumbnails decode at most this many pictures at once, the rest wait their turn
# (a page of a hundred old files must not take every HTTP worker, nor get 503s).
ON_DEMAND_AT_ONCE = max(2, os.cpu_count() or 1)
ON_DEMAND_WAIT = 60.0
_WARN_EVERY = 60.0
_SCHEMA = (
    "PRAGMA auto_vacuum=INCREMENTAL",  # only takes effect on a new file: removals give space back
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS thumbnails (hash TEXT PRIMARY KEY, size INTEGER NOT NULL, used REAL NOT NULL,"
    " data BLOB NOT NULL)",
    # The start reads this index alone: a 9 KB row fills a page of its own in the table.
    "CREATE INDEX IF NOT EXISTS thumbnails_by_use ON thumbnails (used, hash, size)",
)


class ThumbnailStats(TypedDict):
    """The store as ``/stats`` shows it."""

    count: int
    bytes: int
    max_bytes: int
    dir: str


class ThumbnailBusy(Exception):
    """Too many thumbnails are being made on demand; the caller may try again shortly."""


@dataclass(frozen=True)
class Thumbnail:
    """A thumbnail's bytes, its content type and its validator."""

    content_hash: str
    data: bytes
    content_type: str
    etag: str  # quoted: the content hash and a tag of size and format


@dataclass
class _Entry:
    size: int  # bytes
    used: float  # the ``used`` time as last written


def webp_available() -> bool:
    return bool(features.check("webp"))


class ThumbnailStore:
    """The thumbnails database: make, read, bound and forget thumbnails by content hash."""

    def __init__(self, folder: str | os.PathLike[str], size: int = 256, max_bytes: int = 2 << 30, fmt: str = "jpeg"):
        if fmt == "webp" and not webp_available():
            log.warning("this Pillow cannot write WebP; thumbnails are JPEG")
            fmt = "jpeg"
        self.folder = Path(folder)
        self.size = size
        self.max_bytes = max_bytes
        self.pillow_format, self.content_type = FORMATS[fmt]
        self.tag = f"{size}-{fmt}"
        self.made = 0  # thumbnails made by this process (tests and benchmarks read it)
        self._lock = threading.Lock()  # the entries and the connection
        self._entries: collections.OrderedDict[str, _Entry] = collections.OrderedDict()  # least recent first
        self._total = 0
        self._making: dict[str, threading.Event] = {}
        self._on_demand = threading.BoundedSemaphore(ON_DEMAND_AT_ONCE)
        self._last_warning = 0.0
        self._db: sqlite3.Connection | None = None
        try:
            self._open()
        except (OSError, sqlite3.Error) as exc:  # a read-only data folder: thumbnails are made and served, not kept
            log.warning("cannot use the thumbnails in %s: %s", self.folder, exc)
            self._db = None

    @classmethod
    def from_settings(cls, data_dir: str | os.PathLike[str], settings: ThumbnailSettings) -> ThumbnailStore:
        """The store in ``data_dir/thumbnails`` with the config's [thumbnails] settings."""
        return cls(Path(data_dir) / "thumbnails", settings.size, int(settings.max_mb * 1024 * 1024), settings.format)

    # -- the database

    @property
    def db_path(self) -> Path:
        return self.folder / DB_NAME

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.db_path, timeout=30.0, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # a crash may lose the last thumbnails, never corrupt
        for statement in _SCHEMA:
            db.execute(statement)
        return db

    def _open(self) -> None:
        """Open (or start afresh) the database; drop other sizes and formats; learn what is there."""
        self.folder.mkdir(parents=True, exist_ok=True)
        try:
            db = self._connect()
            db.execute("PRAGMA quick_check").fetchone()
        except sqlite3.DatabaseError as exc:  # damaged: a cache, so start again
            log.warning("thumbnails database %s is damaged (%s); starting a new one", self.db_path, exc)
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.db_path}{suffix}").unlink(missing_ok=True)
            db = self._connect()
        made_as = db.execute("SELECT value FROM meta WHERE key='tag'").fetchone()
        if made_as is None or made_as[0] != self.tag:  # a new file, or another size or format
            stale = db.execute("DELETE FROM thumbnails").rowcount
            db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('tag', ?)", (self.tag,))
            if stale:
                log.info("removed %d thumbnails of another size or format (%s)", stale, made_as[0] if made_as else "")
                db.execute("PRAGMA incremental_vacuum")
        rows = db.execute("SELECT hash, size, used FROM thumbnails ORDER BY used").fetchall()
        for content_hash, size, used in rows:
            self._entries[content_hash] = _Entry(size, used)
            self._total += size
        self._db = db
        self._evict()

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    # -- reading

    def has(self, content_hash: str) -> bool:
        with self._lock:
            return content_hash in self._entries

    def get(self, content_hash: str) -> Thumbnail | None:
        """The stored thumbnail, marked as just used; None when there is none."""
        with self._lock:
            entry = self._entries.get(content_hash)
            if entry is None or self._db is None:
                return None
            self._entries.move_to_end(content_hash)
            row = self._db.execute("SELECT data FROM thumbnails WHERE hash=?", (content_hash,)).fetchone()
            now = time.time()
            if row is not None and now - entry.used > TOUCH_EVERY:
                entry.used = now
                self._db.execute("UPDATE thumbnails SET used=? WHERE hash=?", (now, content_hash))
        if row is None:  # gone meanwhile
            self._drop([content_hash])
            return None
        return self._thumbnail(content_hash, bytes(row[0]))

    def _thumbnail(self, content_hash: str, data: bytes) -> Thumbnail:
        return Thumbnail(content_hash, data, self.content_type, f'"{content_hash}-{self.tag}"')

    def hashes(self) -> list[str]:
        with self._lock:
            return list(self._entries)

    def stats(self) -> ThumbnailStats:
        with self._lock:
            return {
                "count": len(self._entries),
                "bytes": self._total,
                "max_bytes": self.max_bytes,
                "dir": str(self.folder),
            }

    # -- making

    def add_picture(self, content_hash: str, picture: Image.Image) -> bool:
        """Make the thumbnail from an already decoded RGB picture unless it exists; never raises.

        For the loader threads: a thumbnail that cannot be written (a full disk) is logged
        (at most once a minute) and skipped, never costing the file its place in the index.
        """
        if not self._claim(content_hash):
            return False
        try:
            return self._store(content_hash, self._encode(picture))
        except Exception as exc:
            self._warn(f"cannot make the thumbnail of {content_hash}: {exc}")
            return False
        finally:
            self._release(content_hash)

    def make_from_file(
        self,
        path: str,
        limits: ImageLimits = ImageLimits(),
        roots: Sequence[str] | None = None,
        slot: Callable[[], AbstractContextManager[object]] = contextlib.nullcontext,
    ) -> Thumbnail:
        """The thumbnail of a file's current content, made now if needed (one decode).

        ``slot`` is entered once this call's turn has come (the service's slow-work slot:
        waiting for a turn does not hold one). Raises ImageError when the file cannot be
        used, ThumbnailBusy when too many are being made at once for longer than
        ``ON_DEMAND_WAIT`` seconds.
        """
        if not self._on_demand.acquire(timeout=ON_DEMAND_WAIT):
            raise ThumbnailBusy(f"{ON_DEMAND_AT_ONCE} thumbnails are being made; try again shortly")
        try:
            with slot():
                return self._make_from_file(path, limits, roots)
        finally:
            self._on_demand.release()

    def _make_from_file(self, path: str, limits: ImageLimits, roots: Sequence[str] | None) -> Thumbnail:
        file = files.read_file(path, limits, roots)
        content_hash = file.content_hash
        found = self.get(content_hash)
        if found is not None:
            return found
        claimed = self._claim(content_hash)
        if not claimed:  # being made by another thread right now: wait for it
            self._wait(content_hash)
            found = self.get(content_hash)
            if found is not None:
                return found
            claimed = self._claim(content_hash)
        try:
            # The shorter side at least ``size`` makes the longer one at least ``size``.
            data = self._encode(images.decode(file.data, self.size, limits))
            try:
                self._store(content_hash, data)
            except sqlite3.Error as exc:  # served all the same; made again next time
                self._warn(f"cannot store the thumbnail of {path}: {exc}")
            return self._thumbnail(content_hash, data)
        finally:
            if claimed:
                self._release(content_hash)

    def _claim(self, content_hash: str) -> bool:
        """True when the caller is to make this thumbnail (none stored, nobody making it)."""
        with self._lock:
            if content_hash in self._entries or content_hash in self._making:
                return False
            self._making[content_hash] = threading.Event()
            return True

    def _release(self, content_hash: str) -> None:
        with self._lock:
            event = self._making.pop(content_hash, None)
        if event is not None:
            event.set()

    def _wait(self, content_hash: str) -> None:
        with self._lock:
            event = self._making.get(content_hash)
        if event is not None:
            event.wait(ON_DEMAND_WAIT)

    def _encode(self, picture: Image.Image) -> bytes:
        """The picture shrunk to fit ``size`` x ``size`` (never enlarged), encoded."""
        width, height = picture.size
        scale = self.size / max(width, height)
        if scale < 1:
            target = (max(1, round(width * scale)), max(1, round(height * scale)))
            # A box reduce by the whole factor, then bilinear for the rest (Pillow filters
            # antialias when shrinking): 0.4-1.3 ms of CPU from the 448-896 px pictures the
            # models' decode gives, where bicubic took 1.8-5.0 ms.
            picture = picture.resize(target, Image.Resampling.BILINEAR, reducing_gap=1.0)
        out = io.BytesIO()
        picture.save(out, self.pillow_format, **ENCODE[self.pillow_format])
        return out.getvalue()

    def _store(self, content_hash: str, data: bytes) -> bool:
        """Write in one transaction, count it, and evict the least recently used beyond the bound."""
        now = time.time()
        with self._lock:
            if self._db is None:
                return False
            self._db.execute(
                "INSERT OR REPLACE INTO thumbnails (hash, size, used, data) VALUES (?, ?, ?, ?)",
                (content_hash, len(data), now, data),
            )
            old = self._entries.pop(content_hash, None)
            self._total += len(data) - (old.size if old else 0)
            self._entries[content_hash] = _Entry(len(data), now)
            self.made += 1
        self._evict()
        return True

    # -- forgetting

    def _evict(self) -> int:
        """Over ``max_bytes``: remove the least recently used down to ``EVICT_TO`` of it at once
        (one delete per few hundred new thumbnails, not one per thumbnail; the newest stays).
        The file keeps the freed pages for the next thumbnails (no vacuum)."""
        victims: list[str] = []
        with self._lock:
            if self._total <= self.max_bytes:
                return 0
            while self._total > self.max_bytes * EVICT_TO and len(self._entries) > 1:
                content_hash, entry = self._entries.popitem(last=False)
                self._total -= entry.size
                victims.append(content_hash)
        self._delete(victims, vacuum=False)
        return len(victims)

    def set_max_bytes(self, max_bytes: int) -> None:
        """A new bound (a reloaded config), applied at once."""
        self.max_bytes = max_bytes
        self._evict()

    def remove(self, hashes: Iterable[str]) -> int:
        """Forget these thumbnails (their last file is gone); returns how many went."""
        return len(self._delete(self._drop(hashes)))

    def _drop(self, hashes: Iterable[str]) -> list[str]:
        dropped: list[str] = []
        with self._lock:
            for content_hash in hashes:
                entry = self._entries.pop(content_hash, None)
                if entry is not None:
                    self._total -= entry.size
                    dropped.append(content_hash)
        return dropped

    def _delete(self, hashes: list[str], vacuum: bool = True) -> list[str]:
        if not hashes:
            return hashes
        with self._lock:
            db = self._db
            if db is None:
                return hashes
            try:
                db.execute("BEGIN IMMEDIATE")
                db.executemany("DELETE FROM thumbnails WHERE hash=?", [(h,) for h in hashes])
                db.execute("COMMIT")
                if vacuum:  # removed for good: the file shrinks with its content
                    db.execute("PRAGMA incremental_vacuum")
            except sqlite3.Error as exc:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                self._warn(f"cannot remove {len(hashes)} thumbnails: {exc}")
        return hashes

    def _warn(self, message: str) -> None:
        now = time.monotonic()
        if now - self._last_warning >= _WARN_EVERY:
            self._last_warning = now
            log.warning("%s (further thumbnail warnings for a minute are not logged)", message)
