"""Deciding when a written file is complete, so that a half-copied file is never read.

Like watchdog's own debouncer, but per path and with a notion of "complete": a file is
ready once no event came for ``debounce_seconds`` and either it was closed after
writing (Linux), renamed into place, or its size and mtime held still for
``settle_seconds`` (a file never seen closed: network shares, polling). A burst of
writes becomes one entry, so a file written 50 times in a second is embedded once.

``Settler`` is plain data with no lock of its own: the watcher calls it under its
lock, and stats files (``look``) outside it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

from ..paths import is_under

Seen = tuple[int, int] | None  # (size, mtime_ns), (-1, -1) when unreadable, None when gone


@dataclass
class _Pending:
    """A written file waiting to be complete."""

    last_event: float
    complete: bool  # closed after writing or moved into place since the last write
    seen: Seen = None  # (size, mtime_ns) at the last look
    stable_since: float = 0.0
    next_look: float = 0.0


@dataclass(frozen=True)
class Due:
    """A pending file quiet for long enough to decide on (or, if incomplete, to look at)."""

    path: str
    last_event: float
    complete: bool


class Settler:
    """The files written lately that are not yet complete, and when each will be."""

    def __init__(self, debounce_seconds: float, settle_seconds: float) -> None:
        self.debounce_seconds = debounce_seconds  # quiet time after the last event
        self.settle_seconds = settle_seconds  # unchanged size and mtime for a file never seen closed
        self._pending: dict[str, _Pending] = {}

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, path: object) -> bool:
        return path in self._pending

    @property
    def wait_hint(self) -> float:
        """How long the caller may sleep while files are pending."""
        return self.debounce_seconds / 3

    def touch(self, path: str, complete: bool | None, now: float) -> None:
        """Note a write; ``complete`` None (an attribute change) keeps what was known."""
        entry = self._pending.get(path)
        if entry is None:
            self._pending[path] = _Pending(last_event=now, complete=complete is not False)
            return
        entry.last_event = now
        if complete is not None:
            entry.complete = complete
        entry.seen, entry.next_look = None, 0.0

    def discard(self, path: str) -> bool:
        """Forget a path (deleted, or moved out of sight); True if it was pending."""
        return self._pending.pop(path, None) is not None

    def rename(self, src: str, dest: str, now: float) -> bool:
        """A pending file was renamed: keep waiting for it under ``dest``. False if it was not pending."""
        entry = self._pending.pop(src, None)
        if entry is None:
            return False
        entry.last_event = now
        self._pending[dest] = entry
        return True

    def rename_folder(self, src: str, dest: str | None) -> None:
        """A folder was renamed (``dest`` None: out of sight): its pending files follow it."""
        for path in [p for p in self._pending if is_under(p, src)]:
            entry = self._pending.pop(path)
            if dest is not None:
                self._pending[dest + path[len(src) :]] = entry

    def forget_under(self, root: str) -> None:
        """Forget every pending file at or below ``root``."""
        for path in [p for p in self._pending if is_under(p, root)]:
            del self._pending[path]

    def count_under(self, root: str) -> int:
        return sum(1 for p in self._pending if is_under(p, root))

    def due(self, now: float) -> list[Due]:
        """Pending files quiet for ``debounce_seconds`` that are complete or due for a look."""
        return [
            Due(path, entry.last_event, entry.complete)
            for path, entry in self._pending.items()
            if now - entry.last_event >= self.debounce_seconds and (entry.complete or now >= entry.next_look)
        ]

    def decide(self, due: Iterable[Due], looked: dict[str, Seen], now: float) -> list[str]:
        """The due files that are ready (now forgotten here); the others wait and are looked at again.

        ``looked`` holds ``look``'s answer for each incomplete file; an entry written again
        since ``due`` was taken is left alone.
        """
        ready: list[str] = []
        for item in due:
            entry = self._pending.get(item.path)
            if entry is None or entry.last_event != item.last_event:
                continue  # written again meanwhile
            if item.complete:
                ready.append(item.path)
                continue
            seen = looked[item.path]
            if seen is None:
                del self._pending[item.path]  # gone: its deletion event says so
            elif seen != entry.seen:
                entry.seen, entry.stable_since = seen, now
                entry.next_look = now + self.settle_seconds / 4
            elif now - entry.stable_since >= self.settle_seconds:
                ready.append(item.path)
            else:
                entry.next_look = now + self.settle_seconds / 4
        for path in ready:
            del self._pending[path]
        return ready


def look(due: Iterable[Due]) -> dict[str, Seen]:
    """Size and mtime of each incomplete due file (done outside the watcher's lock)."""
    looked: dict[str, Seen] = {}
    for item in due:
        if item.complete:
            continue
        try:
            st = os.stat(item.path)
            looked[item.path] = (st.st_size, st.st_mtime_ns)
        except FileNotFoundError:
            looked[item.path] = None
        except OSError:
            looked[item.path] = (-1, -1)  # let the pipeline record why it cannot be read
    return looked
