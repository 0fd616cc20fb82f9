"""Background folder jobs and waiters: who is waiting for which path.

A folder ``/add`` becomes a ``Job``: a thread walks the folder, queues every image
and the job counts outcomes as the pipeline reports them. A single-file ``/add``
waits on a ``Waiter`` for its one path. ``JobTracker.on_file`` is the pipeline's
listener; it only updates counters and wakes waiters, it never calls back.
"""

from __future__ import annotations

import collections
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum

from ..media.failures import ImageError
from ..paths import normalise_path
from .outcomes import Outcome

log = logging.getLogger("imgsearchd.ingest.jobs")


class JobState(StrEnum):
    """A folder job's state, as ``/jobs`` shows it."""

    SCANNING = "scanning"  # walking the folder and queueing what it finds
    INDEXING = "indexing"  # walk done; waiting for the pipeline's outcomes
    DONE = "done"
    FAILED = "failed"  # the folder could not be walked


@dataclass
class Job:
    """One folder being added in the background."""

    id: str
    root: str
    state: JobState = JobState.SCANNING
    found: int = 0
    done: int = 0
    outcomes: collections.Counter[str] = field(default_factory=collections.Counter)
    error: str | None = None
    started: float = field(default_factory=time.time)
    last_logged: float = field(default_factory=time.monotonic)
    finished: float | None = None
    _remaining: set[str] = field(default_factory=set)
    scan_done: threading.Event = field(default_factory=threading.Event)

    def as_dict(self) -> dict[str, object]:
        elapsed = (self.finished or time.time()) - self.started
        return {
            "id": self.id,
            "folder": self.root,
            "state": self.state,
            "found": self.found,
            "done": self.done,
            "progress": round(self.done / self.found, 4)
            if self.found
            else (1.0 if self.state == JobState.DONE else 0.0),
            "outcomes": dict(self.outcomes),
            "error": self.error,
            "started": self.started,
            "finished": self.finished,
            "seconds": round(elapsed, 3),
        }


class Waiter:
    """A request waiting for one path's outcome."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self.outcome: Outcome | None = None
        self.error: ImageError | None = None


class JobTracker:
    """Jobs and waiters, keyed by the paths they wait for."""

    def __init__(self, keep_finished: int = 100) -> None:
        self._lock = threading.Lock()
        self._jobs: collections.OrderedDict[str, Job] = collections.OrderedDict()
        self._by_path: dict[str, list[Job]] = collections.defaultdict(list)
        self._waiters: dict[str, list[Waiter]] = collections.defaultdict(list)
        self._ids = itertools.count(1)
        self._keep_finished = keep_finished

    # -- the pipeline's listener

    def on_file(self, path: str, outcome: Outcome, error: ImageError | None) -> None:
        """The pipeline's listener: count the outcome for the path's jobs, wake its waiters.

        A DEFERRED path (the catalogue cannot be written now) stays in its jobs, which
        finish once it is written; a request waiting on it is woken to say so.
        """
        with self._lock:
            jobs = [] if outcome == Outcome.DEFERRED else self._by_path.pop(path, [])
            for job in jobs:
                if path in job._remaining:
                    job._remaining.discard(path)
                    job.done += 1
                    job.outcomes[_outcome_key(outcome, error)] += 1
                    self._log_progress(job)
                    self._maybe_finish(job)
            for waiter in self._waiters.pop(path, []):
                waiter.outcome, waiter.error = outcome, error
                waiter.event.set()

    # -- single files

    def waiter(self, path: str) -> Waiter:
        waiter = Waiter()
        with self._lock:
            self._waiters[normalise_path(path)].append(waiter)
        return waiter

    def forget(self, path: str, waiter: Waiter) -> None:
        with self._lock:
            waiting = self._waiters.get(normalise_path(path), [])
            if waiter in waiting:
                waiting.remove(waiter)

    # -- folders

    def start_folder(
        self,
        root: str,
        scan: Callable[[], Iterable[str]],
        enqueue: Callable[[list[str]], object],
    ) -> Job:
        """Walk ``root`` on a thread, queue what it finds, and track it as a job."""
        job = Job(id=f"job-{next(self._ids)}", root=normalise_path(root))
        with self._lock:
            self._jobs[job.id] = job
            self._trim()
        thread = threading.Thread(
            target=self._scan, args=(job, scan, enqueue), name=f"imgsearchd-{job.id}", daemon=True
        )
        thread.start()
        return job

    def _scan(self, job: Job, scan: Callable[[], Iterable[str]], enqueue: Callable[[list[str]], object]) -> None:
        chunk: list[str] = []
        try:
            for path in scan():
                path = normalise_path(path)
                with self._lock:
                    if path not in job._remaining:
                        job._remaining.add(path)
                        self._by_path[path].append(job)
                        job.found += 1
                chunk.append(path)
                if len(chunk) >= 512:
                    enqueue(chunk)
                    chunk = []
            if chunk:
                enqueue(chunk)
            with self._lock:
                job.state = JobState.INDEXING
                self._maybe_finish(job)
        except Exception as exc:  # an unreadable folder ends the job, not the daemon
            log.warning("folder job %s (%s) failed: %s", job.id, job.root, exc)
            with self._lock:
                job.state = JobState.FAILED
                job.error = str(exc)
                job.finished = time.time()
        finally:
            job.scan_done.set()

    def _log_progress(self, job: Job, every: float = 5.0) -> None:
        """A progress line on the console (and the journal) every few seconds of a long job."""
        now = time.monotonic()
        if now - job.last_logged >= every and job.state != JobState.DONE:
            job.last_logged = now
            total = f"{job.found}" if job.state == JobState.INDEXING else f"{job.found}+ (still scanning)"
            rate = job.done / max(1e-9, time.time() - job.started)
            log.info("folder job %s (%s): %d/%s files, %.1f files/s", job.id, job.root, job.done, total, rate)

    def _maybe_finish(self, job: Job) -> None:
        if job.state == JobState.INDEXING and not job._remaining:
            job.state = JobState.DONE
            job.finished = time.time()
            log.info("folder job %s done: %d files in %.1fs", job.id, job.found, job.finished - job.started)

    def _trim(self) -> None:
        finished = [j for j in self._jobs.values() if j.state in (JobState.DONE, JobState.FAILED)]
        for job in finished[: max(0, len(finished) - self._keep_finished)]:
            self._jobs.pop(job.id, None)

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def summary(self) -> list[dict[str, object]]:
        with self._lock:
            return [job.as_dict() for job in self._jobs.values()]


def _outcome_key(outcome: Outcome, error: ImageError | None) -> str:
    """How a job counts an outcome: failures by reason (``failed:too_large``)."""
    if outcome == Outcome.FAILED and error is not None:
        return f"failed:{error.reason}"
    return str(outcome)
