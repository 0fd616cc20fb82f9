"""What ``/add`` and ``/remove`` do: index a file now, queue a folder, remove a path.

A file added is put at the front of the work queue and the request waits for its outcome
(``ADD_FILE_TIMEOUT``); a folder is walked in the background (a job). A full or read-only
disk is a state of the daemon, not a failure of the request's file: the work stays queued
and the answer (``StorageUnavailable``) says so.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

from ..errors import BadImage, NotFound, StorageUnavailable, TimedOut
from ..ingest.jobs import Job, JobTracker, Waiter
from ..ingest.outcomes import Outcome
from ..ingest.pipeline import Pipeline
from ..ingest.workqueue import Intent, WorkQueue
from ..media import files
from ..media.failures import ImageError, Reason
from ..store.disk_health import is_storage_error

log = logging.getLogger("imgsearchd.service")

ADD_FILE_TIMEOUT = 120.0


class Added(TypedDict):
    """``/add``'s answer for a file: whether it was indexed now or was already, and embedded."""

    image: str
    status: str  # "indexed" or "unchanged"
    embedded: bool


@dataclass(frozen=True)
class Intake:
    """The indexer, its queue and the jobs that report on folders, as ``/add`` and ``/remove`` use them."""

    pipeline: Pipeline
    queue: WorkQueue
    jobs: JobTracker
    data_dir: Path

    def add_file(self, path: str, timeout: float = ADD_FILE_TIMEOUT) -> Added:
        """Index one file now (ahead of queued work) and say what happened to it.

        An image that cannot be used raises ``BadImage`` with its reason.
        """
        try:
            files.stat_file(path)
        except ImageError as exc:
            raise BadImage.of(exc, path) from None
        waiter = self.jobs.waiter(path)
        self.queue.put(path, Intent.RECHECK, front=True)  # a failed file is tried again
        if not self.pipeline.storage.ok or not self._wait_unless_storage_fails(waiter, timeout):
            self.jobs.forget(path, waiter)
            raise self.storage_error(f"{path} is queued")
        if not waiter.event.is_set():
            self.jobs.forget(path, waiter)
            raise TimedOut(f"{path} is queued but was not indexed within {timeout:.0f} s", image=path)
        outcome = waiter.outcome
        if outcome == Outcome.FAILED:  # recorded in the catalogue with its reason; the answer is the 4xx
            raise BadImage.of(waiter.error or ImageError(Reason.CORRUPT, "could not be indexed"), path)
        if outcome == Outcome.REMOVED:
            raise NotFound(f"{path}: the file vanished before it could be indexed", image=path)
        if outcome == Outcome.DEFERRED:
            raise self.storage_error(f"{path} is queued")
        status = "unchanged" if outcome == Outcome.UNCHANGED else "indexed"
        return {"image": path, "status": status, "embedded": outcome == Outcome.EMBEDDED}

    def _wait_unless_storage_fails(self, waiter: Waiter, timeout: float) -> bool:
        """Wait for the path's outcome; False at once if the catalogue stops being writable.

        The failing batch may not hold this path (it waits behind the batch given back), so
        the request must not sleep its whole timeout to learn that nothing can be written.
        """
        deadline = time.monotonic() + timeout
        while not waiter.event.wait(min(0.5, max(0.0, deadline - time.monotonic()))):
            if not self.pipeline.storage.ok:
                return False
            if time.monotonic() >= deadline:
                break
        return True

    def add_folder(self, path: str, extensions: Iterable[str], recursive: bool, wait: float = 0.25) -> Job:
        """Walk a folder in the background and queue its images; returns at once."""
        pipeline = self.pipeline

        def scan() -> list[str]:
            return pipeline.prune_folder(
                path, extensions, recursive, on_error=lambda p, e: log.warning("cannot read %s: %s", p, e)
            )

        job = self.jobs.start_folder(path, scan, lambda chunk: self.queue.put_many(chunk, Intent.RECHECK))
        job.scan_done.wait(wait)  # small folders answer with their count
        return job

    def remove(self, path: str) -> int:
        """Forget a file or folder; how many catalogue entries went (queued when the disk refuses)."""
        try:
            return self.pipeline.remove([path])
        except Exception as exc:
            if not is_storage_error(exc):
                raise
            self.pipeline.storage.failed(exc)
            self.queue.put(path, Intent.REMOVE)  # done by the indexer once the disk allows
            raise self.storage_error(f"{path} is not removed yet: the removal is queued") from None

    def storage_error(self, what: str) -> StorageUnavailable:
        """The catalogue cannot be written now (full or read-only disk); says what happens."""
        state = self.pipeline.storage.as_dict()
        return StorageUnavailable(
            f"cannot write the catalogue in {self.data_dir} ({state.get('error', 'storage error')}); "
            f"{what}, and imgsearchd retries by itself once the disk allows",
            storage=state,
        )
