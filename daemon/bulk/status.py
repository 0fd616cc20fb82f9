"""The backfill's progress, kept in the catalogue so that a daemon on the same catalogue shows it.

``imgsearchd backfill`` runs in its own process (it drives a Ray cluster); it writes this
record under the note ``backfill`` at every batch and every ``HEARTBEAT_S`` seconds, and
the daemon's ``/stats`` reads it (``status``). A record that still says running but has
not been touched for ``STALE_AFTER_S`` belongs to a backfill that was killed: its state
reads ``interrupted``, and what it committed stays (a rerun does the rest).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Protocol, Required, TypedDict

from ..timestamps import iso_utc

log = logging.getLogger("imgsearchd.bulk.backfill")

NOTE_KEY = "backfill"
HEARTBEAT_S = 10.0
# Six missed heartbeats: a driver stalled that long (a swapped-out machine) is not taken for dead.
STALE_AFTER_S = 60.0


class State:
    PLANNING = "planning"
    RUNNING = "running"
    FINISHED = "finished"
    STOPPED = "stopped"  # Ctrl-C or SIGTERM: what was written stays
    FAILED = "failed"
    INTERRUPTED = "interrupted"  # read only: a running record nobody updates any more


class NoteStore(Protocol):
    def set_note(self, key: str, value: str) -> None: ...

    def note(self, key: str) -> str | None: ...


@dataclass
class BackfillProgress:
    """Where a backfill stands; counts are files."""

    folders: list[str]
    address: str
    state: str = State.PLANNING
    planned: int = 0  # files the catalogue lacks (or holds changed, or without every vector)
    done: int = 0  # files written to the catalogue (embedded, reused or failed)
    embedded: int = 0
    reused: int = 0  # content the catalogue already had a vector for (a copy or a move)
    failed: int = 0
    vanished: int = 0
    repeated: int = 0  # results the cluster delivered twice (written once)
    started: float = field(default_factory=time.time)
    updated: float = field(default_factory=time.time)
    pipeline_started: float | None = None  # when the cluster was asked for its actors
    error: str | None = None

    def images_per_second(self) -> float:
        """Files written per second since the cluster was asked for its actors (their start included)."""
        if self.pipeline_started is None:
            return 0.0
        elapsed = self.updated - self.pipeline_started
        return round(self.done / elapsed, 2) if elapsed > 0 else 0.0

    def save(self, store: NoteStore) -> None:
        self.updated = time.time()
        store.set_note(NOTE_KEY, json.dumps(asdict(self)))


class BackfillStatus(TypedDict, total=False):
    """The last backfill as ``/stats`` shows it: only ``state`` ("unreadable") when its record
    is from another version."""

    state: Required[str]
    folders: list[str]
    cluster: str
    planned: int
    done: int
    left: int
    embedded: int
    reused: int
    failed: int
    images_per_second: float
    eta_s: int | None
    started: str
    updated: str
    error: str | None


@contextlib.contextmanager
def heartbeat(save: Callable[[], None], every: float = HEARTBEAT_S) -> Iterator[None]:
    """``save()`` now, then every ``every`` seconds on a thread until the block ends: a plan of a
    large archive or a cluster's slow start must not read as a backfill that died."""
    save()
    done = threading.Event()

    def beat() -> None:
        while not done.wait(every):
            try:
                save()
            except Exception as exc:  # a busy or full disk: the next batch's write says so
                log.warning("cannot update the backfill's progress: %s", exc)

    thread = threading.Thread(target=beat, name="imgsearchd-backfill-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def status(store: NoteStore, now: float | None = None) -> BackfillStatus | None:
    """The last backfill's progress as ``/stats`` shows it, or None when there never was one."""
    text = store.note(NOTE_KEY)
    if text is None:
        return None
    try:
        record = BackfillProgress(**json.loads(text))
    except (ValueError, TypeError):
        return {"state": "unreadable"}  # a record from another version: say so, never fail /stats
    now = time.time() if now is None else now
    state = record.state
    if state in (State.PLANNING, State.RUNNING) and now - record.updated > STALE_AFTER_S:
        state = State.INTERRUPTED
    left = max(0, record.planned - record.done)
    rate = record.images_per_second()
    return {
        "state": state,
        "folders": record.folders,
        "cluster": record.address,
        "planned": record.planned,
        "done": record.done,
        "left": left,
        "embedded": record.embedded,
        "reused": record.reused,
        "failed": record.failed,
        "images_per_second": rate,
        "eta_s": round(left / rate) if rate > 0 and state == State.RUNNING else None,
        "started": iso_utc(record.started),
        "updated": iso_utc(record.updated),
        "error": record.error,
    }
