"""When the data folder cannot be written: a state of the daemon, not a lost batch.

A full disk, a read-only remount or an I/O error makes every catalogue write fail until
someone frees space. The indexer then keeps its work queued, waits with back-off, and
tries again; ``StorageHealth`` holds that state for ``/health``, ``/stats`` and the log.
"""

from __future__ import annotations

import errno
import sqlite3
import threading
import time
from typing import NotRequired, TypedDict

from ..timestamps import iso_utc

# Errors of the disk or the file system under the data folder, as opposed to our bugs.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO, errno.EACCES, errno.EPERM})
# Back-off between attempts: 1 s, doubling, at most 60 s, so freed space is noticed
# within a minute while a full disk costs one failed transaction a minute.
FIRST_DELAY = 1.0
MAX_DELAY = 60.0


class StorageState(TypedDict):
    """``StorageHealth`` as ``/health`` and ``/stats`` show it; the failure's keys only while failing."""

    state: str  # "ok" or "failing"
    recoveries: int  # failing spells that ended
    error: NotRequired[str]
    since: NotRequired[str | None]  # ISO 8601, UTC
    attempts: NotRequired[int]
    retry_in_s: NotRequired[float]


def is_storage_error(exc: BaseException) -> bool:
    """True for a failure to write the data folder (full, read-only, I/O error, locked)."""
    if isinstance(exc, sqlite3.OperationalError):
        return True  # "database or disk is full", "attempt to write a readonly database", "disk I/O error", ...
    if isinstance(exc, sqlite3.DatabaseError) and not isinstance(
        exc, sqlite3.IntegrityError | sqlite3.ProgrammingError
    ):
        return True
    return isinstance(exc, OSError) and exc.errno in STORAGE_ERRNOS


class StorageHealth:
    """Whether writes to the data folder work, and when to try again if they do not."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.error: str | None = None
        self.since: float | None = None
        self.attempts = 0
        self.retry_at = 0.0
        self.recoveries = 0

    @property
    def ok(self) -> bool:
        return self.error is None

    def failed(self, exc: BaseException) -> float:
        """Note a failed write; returns the seconds to wait before the next attempt."""
        with self._lock:
            self.error = f"{type(exc).__name__}: {exc}"
            self.since = self.since or time.time()
            self.attempts += 1
            delay = min(MAX_DELAY, FIRST_DELAY * 2 ** min(self.attempts - 1, 10))
            self.retry_at = time.monotonic() + delay
            return delay

    def succeeded(self) -> bool:
        """Note a write that worked; True when it ends a failing spell."""
        with self._lock:
            if self.error is None:
                return False
            self.error, self.since, self.attempts = None, None, 0
            self.recoveries += 1
            return True

    def as_dict(self) -> StorageState:
        with self._lock:
            if self.error is None:
                return {"state": "ok", "recoveries": self.recoveries}
            return {
                "state": "failing",
                "error": self.error,
                "since": iso_utc(self.since) if self.since else None,
                "attempts": self.attempts,
                "retry_in_s": round(max(0.0, self.retry_at - time.monotonic()), 1),
                "recoveries": self.recoveries,
            }
