"""The de-duplicating queue of work for the pipeline: (path, intent), newest intent wins.

The watcher, the HTTP facade and folder jobs put work here; the pipeline takes it. A
path queued again replaces its earlier entry (a file written, deleted and written again
is indexed once); moves are never merged and keep their place, so a rename applies
between the changes queued before and after it.
"""

from __future__ import annotations

import collections
import itertools
import threading
from collections.abc import Container, Iterable
from dataclasses import dataclass
from enum import StrEnum

from ..paths import is_under, normalise_path


class Intent(StrEnum):
    """What to do with a queued path."""

    ADD = "add"  # index it (skipped when unchanged)
    RECHECK = "recheck"  # index it, and try again even if it failed before unchanged (an explicit /add)
    REMOVE = "remove"  # forget the file, or every file below a folder
    RESTORE = "restore"  # an offline file is back, unchanged: searchable again, nothing is read
    MOVE = "move"  # ``old``'s catalogue rows become ``path``'s; ids and vectors kept
    MARK_OFFLINE = "mark_offline"  # a watched folder is gone as a whole: keep its files, unsearchable


# Intents keyed by path, where a newer one replaces an older one.
PATH_INTENTS = (Intent.ADD, Intent.RECHECK, Intent.REMOVE, Intent.RESTORE)


@dataclass(frozen=True, slots=True)
class Work:
    """One unit of queued work; ``old`` is the source of a MOVE and None otherwise."""

    path: str
    intent: Intent
    old: str | None = None


class WorkQueue:
    """A FIFO of ``Work`` where the latest intent for a path replaces earlier ones."""

    def __init__(self) -> None:
        self._items: collections.OrderedDict[object, Work] = collections.OrderedDict()
        self._moves = itertools.count()
        self._taken = 0  # items taken and not yet reported done
        self._cond = threading.Condition()

    def put(self, path: str, intent: Intent = Intent.ADD, front: bool = False) -> None:
        """Queue one path; ``front`` puts it ahead of everything (a request waiting on it)."""
        with self._cond:
            key = self._store(path, intent)
            if front:
                self._items.move_to_end(key, last=False)
            self._cond.notify_all()

    def put_many(self, paths: Iterable[str], intent: Intent = Intent.ADD) -> int:
        """Queue many paths with one intent; returns how many."""
        count = 0
        with self._cond:
            for path in paths:
                self._store(path, intent)
                count += 1
            self._cond.notify_all()
        return count

    def _store(self, path: str, intent: Intent) -> str:
        """Replace any queued work for this path (the caller holds the lock); returns its key."""
        if intent not in PATH_INTENTS:
            raise ValueError(f"unknown intent {intent!r}")
        key = normalise_path(path)
        self._items.pop(key, None)
        self._items[key] = Work(key, intent)
        return key

    def put_move(self, old: str, new: str) -> None:
        """Queue a rename of a file or folder: its catalogue rows keep their ids and vectors."""
        with self._cond:
            self._items[(Intent.MOVE, next(self._moves))] = Work(normalise_path(new), Intent.MOVE, normalise_path(old))
            self._cond.notify_all()

    def put_offline(self, root: str) -> None:
        """Queue marking a folder's files offline; drops queued adds and restores below it.

        Those files cannot be reached now, and an add for a vanished file would forget it.
        """
        root = normalise_path(root)
        key = (Intent.MARK_OFFLINE, root)
        with self._cond:
            for queued_key, item in list(self._items.items()):
                if item.intent in (Intent.ADD, Intent.RECHECK, Intent.RESTORE) and is_under(item.path, root):
                    del self._items[queued_key]
            self._items.pop(key, None)
            self._items[key] = Work(root, Intent.MARK_OFFLINE)
            self._cond.notify_all()

    def give_back(self, items: list[Work]) -> int:
        """Put taken work back at the front, in its order (the pipeline could not write it).

        A path queued again since it was taken keeps its newer intent; moves always go
        back, ahead of whatever was queued after them. Returns how many went back.
        """
        with self._cond:
            back: list[tuple[object, Work]] = []
            for item in items:
                if item.intent in PATH_INTENTS:
                    if item.path not in self._items:
                        back.append((item.path, item))
                elif item.intent == Intent.MARK_OFFLINE:
                    # keyed by its folder as ``put_offline`` keys it, so a later mark replaces it
                    if (Intent.MARK_OFFLINE, item.path) not in self._items:
                        back.append(((Intent.MARK_OFFLINE, item.path), item))
                else:
                    back.append(((item.intent, next(self._moves)), item))
            for key, item in reversed(back):
                self._items[key] = item
                self._items.move_to_end(key, last=False)
            self._cond.notify_all()
            return len(back)

    def take(self, max_items: int, timeout: float | None = None) -> list[Work]:
        """Up to ``max_items`` entries, oldest first; waits up to ``timeout`` for the first."""
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            taken: list[Work] = []
            while self._items and len(taken) < max_items:
                taken.append(self._items.popitem(last=False)[1])
            self._taken += len(taken)
            return taken

    def take_while(self, intent: Intent, max_items: int, unless: Container[str] = ()) -> list[Work]:
        """Up to ``max_items`` entries at the front while they have ``intent`` and a path not in ``unless``.

        Never waits; what does not qualify stays where it is (a run going on takes only its own kind).
        """
        with self._cond:
            taken: list[Work] = []
            while self._items and len(taken) < max_items:
                key, item = next(iter(self._items.items()))
                if item.intent != intent or item.path in unless:
                    break
                del self._items[key]
                taken.append(item)
            self._taken += len(taken)
            return taken

    def task_done(self, count: int) -> None:
        """The taker finished ``count`` items it took."""
        with self._cond:
            self._taken = max(0, self._taken - count)
            self._cond.notify_all()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until nothing is queued and all taken work is done; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._items and not self._taken, timeout)

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)
