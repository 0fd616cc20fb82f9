"""A watched folder as the watcher keeps it: its options, its state, and what ``/stats`` shows of it.

``WatchOptions`` are how folders are watched (the ``[watch]`` section); ``Folder`` is one
folder's record, read and written only under the watcher's lock; ``FolderStatus`` and
``ScanSummary`` are the entries of ``/stats``'s ``watch`` list. The states and the moves
between them are the watcher's (``watcher``'s table).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, TypedDict

from watchdog.observers.api import BaseObserver

from ..config import DEFAULT_EXTENSIONS, WatchSettings
from ..paths import normalise_path
from ..timestamps import iso_utc
from .folders import FolderPlan
from .observers import ObserverKind


class FolderState(StrEnum):
    """A watched folder's state (see the table in ``watcher``)."""

    STARTING = "starting"
    WATCHING = "watching"
    POLLING = "polling"
    OFFLINE = "offline"


@dataclass(frozen=True)
class WatchOptions:
    """How folders are watched; ``from_config`` reads the ``[watch]`` section."""

    recursive: bool = True
    extensions: tuple[str, ...] = DEFAULT_EXTENSIONS
    rescan_seconds: float = 3600.0  # 0: only at start and after lost events
    debounce_seconds: float = 0.25  # quiet time after the last event before a file is queued
    settle_seconds: float = 2.0  # a file never seen closed must keep its size and mtime this long
    poll_seconds: float = 5.0  # interval of the polling fallback
    check_seconds: float = 1.0  # how often each folder's root is checked (vanished, unmounted)
    force_polling: bool = False  # poll every folder, never inotify

    @classmethod
    def from_config(cls, watch: WatchSettings, **overrides: Any) -> WatchOptions:
        """The ``[watch]`` section's options; ``overrides`` (tests, benchmarks) replace any of them."""
        return cls(
            recursive=watch.recursive,
            extensions=tuple(e.lower() for e in watch.extensions),
            rescan_seconds=float(watch.rescan_seconds),
            **{
                "settle_seconds": float(watch.settle_seconds),
                "poll_seconds": float(watch.poll_seconds),
                "force_polling": watch.force_polling,
                **overrides,
            },
        )


class ScanSummary(TypedDict):
    """The last reconcile scan of a folder, as ``/stats`` shows it."""

    at: str
    seconds: float
    found: int
    queued: int
    restored: int
    removed: int
    unchanged: int
    unreadable: int
    outside_links: int


class FolderStatus(TypedDict):
    """One entry of ``/stats``'s ``watch`` list."""

    folder: str
    state: FolderState
    observer: ObserverKind | None
    reason: str | None
    since: str
    events: int
    settling: int
    scanning: bool
    last_scan: ScanSummary | None


def scan_summary(plan: FolderPlan, seconds: float) -> ScanSummary:
    """What a reconcile scan found and queued."""
    return {
        "at": iso_utc(time.time()),
        "seconds": round(seconds, 3),
        "found": plan.found,
        "queued": len(plan.to_add),
        "restored": len(plan.to_restore),
        "removed": len(plan.vanished),
        "unchanged": plan.unchanged,
        "unreadable": len(plan.unreadable),
        "outside_links": len(plan.outside),
    }


@dataclass
class Folder:
    """One watched folder: its state, its observer, and what the threads asked of each other."""

    root: str
    state: FolderState = FolderState.STARTING
    reason: str | None = None
    since: float = field(default_factory=time.time)
    observer: BaseObserver | None = None
    kind: ObserverKind | None = None
    generation: int = 0  # bumped with every observer, so a replaced one's events are dropped
    identity: tuple[int, int] | None = None  # (st_dev, st_ino) of the root while online
    fallback: str | None = None  # why this folder is polled rather than watched
    trouble: str | None = None  # reported by an observer thread, acted on by the control thread
    offline_wanted: str | None = None  # the scanner found the folder without its images
    restart: bool = False  # the options changed: new observer and scan
    check_now: bool = False
    events: int = 0
    next_scan: float = 0.0
    scanning: bool = False
    last_scan: ScanSummary | None = None

    @property
    def online(self) -> bool:
        """Watched or polled: a folder a reconcile scan may look at."""
        return self.state in (FolderState.WATCHING, FolderState.POLLING)

    @property
    def settled(self) -> bool:
        """Up, with nothing asked of the control thread and no scan running."""
        return (
            not self.scanning
            and self.state != FolderState.STARTING
            and not self.check_now
            and not self.restart
            and self.trouble is None
            and self.offline_wanted is None
        )

    def status(self, settling: int, scan_due: bool) -> FolderStatus:
        """Its ``/stats`` entry; ``settling``: files written below it and not yet complete."""
        return {
            "folder": self.root,
            "state": self.state,
            "observer": self.kind,
            "reason": self.reason,
            "since": iso_utc(self.since),
            "events": self.events,
            "settling": settling,
            "scanning": self.scanning or scan_due,
            "last_scan": ScanSummary(**self.last_scan) if self.last_scan else None,
        }


def without_images(held: int) -> str:
    """Why a folder found without a single image, while the catalogue holds ``held`` files below it, is offline."""
    return (
        f"without images while the catalogue holds {held} files below it (an unmounted disk?); "
        "if they are really gone, forget them with /remove"
    )


def normalised_roots(folders: Iterable[str | os.PathLike[str]]) -> list[str]:
    """Normalised folder paths, each once, in order."""
    out: list[str] = []
    for folder in folders:
        root = normalise_path(Path(folder).expanduser())
        if root not in out:
            out.append(root)
    return out
