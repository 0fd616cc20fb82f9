"""One daemon per data folder: ``DATA_DIR/daemon.lock``, held (``flock``) while a daemon runs.

The daemon takes the lock before it imports a model library or binds its port, and writes its
pid and address into the file; a second ``serve`` (or ``search --local``) reads them and says
in one line who serves the folder, instead of loading models for seconds and then failing on
an index's own lock with a traceback. The kernel drops a ``flock`` when its holder dies, so a
killed daemon leaves no stale lock: the file stays, its lock does not.
"""

from __future__ import annotations

import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path

LOCK_NAME = "daemon.lock"


@dataclass(frozen=True)
class Holder:
    """The daemon holding a data folder, as its lock file says (either may be unknown)."""

    pid: int | None
    url: str | None


class DataFolderBusy(Exception):
    """A daemon already serves the data folder."""

    def __init__(self, data_dir: Path, holder: Holder) -> None:
        where = ", ".join(part for part in (holder.url, f"pid {holder.pid}" if holder.pid else None) if part)
        super().__init__(f"a daemon already serves this data folder {data_dir}" + (f" ({where})" if where else ""))
        self.data_dir = data_dir
        self.holder = holder


def _read(fd: int) -> Holder:
    """What the holder wrote; a file half-written (just taken) reads as unknown."""
    try:
        data = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return Holder(None, None)
    pid, url = data.get("pid"), data.get("url")
    return Holder(pid if isinstance(pid, int) else None, url if isinstance(url, str) else None)


class DataLock:
    """The daemon's hold on ``data_dir``: ``acquire`` at start, ``record`` once listening, ``release`` at exit."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.path = data_dir / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock (creating the folder); ``DataFolderBusy`` naming the holder when another has it."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise DataFolderBusy(self.data_dir, holder) from None
        self._fd = fd
        self.record(None)

    def record(self, url: str | None) -> None:
        """Write this process's pid and the address it serves at into the lock file."""
        if self._fd is None:
            return
        data = json.dumps({"pid": os.getpid(), "url": url}).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # drops the flock; the file stays (removing it would race a new holder)
            self._fd = None


def holder_of(data_dir: Path) -> Holder | None:
    """The daemon serving ``data_dir`` now, or None; takes nothing (a shared lock, at once let go)."""
    try:
        fd = os.open(data_dir / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:  # no lock file (no daemon ever ran here), or a folder we cannot read
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return _read(fd)
    finally:
        os.close(fd)
    return None
