"""The indexing pipeline: paths in, vectors in the catalogue out.

``Pipeline.run`` takes work from the ``WorkQueue`` (see ``workqueue``). For each path the
pipeline skips files whose size and mtime are unchanged, reads and hashes the rest
on a small thread pool (``prepare``), reuses stored vectors for content it has seen (moved
or copied files), decodes and preprocesses what is new, runs one batched forward pass
per extractor, and writes each batch in one catalogue transaction (``batch``). One bad file
is recorded with its reason and never stops the run. After each commit the indexes are
told (``on_commit``) and then the listener hears a typed ``Outcome`` per path.
Each file's metadata (``photo_metadata``) is read from the bytes already in memory.
When idle, the loop does the pipeline's upkeep (``upkeep``: retries, pruning, the metadata
fill of older rows), so it never races a batch for the catalogue.
"""

from __future__ import annotations

import collections
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
from PIL import Image

from ..extractors import Extractor
from ..media import files
from ..media.failures import ImageError, Reason
from ..media.limits import ImageLimits
from ..media.thumbnails import ThumbnailStore
from ..paths import normalise_path
from ..store.catalog import Catalog
from ..store.disk_health import StorageHealth, is_storage_error
from ..store.rows import FileResult, FileState
from .batch import batch_rows, embed_batch
from .folders import OnError, may_pass, plan_folder
from .outcomes import Listener, Outcome
from .prepare import Loaded, load_file
from .progress import Bar, Progress
from .stream import Stream, Waiters
from .upkeep import Upkeep
from .workqueue import Intent, Work, WorkQueue

log = logging.getLogger("imgsearchd.ingest.pipeline")


class Pipeline:
    """Turns paths into catalogue rows, batch by batch.

    ``on_commit(seq)`` runs after every catalogue write (indexes catch up there);
    ``listener(path, outcome, error)`` hears what happened to each path; ``roots()``
    gives the real paths files must lie in (None: anywhere), checked on the open file.
    """

    def __init__(
        self,
        catalog: Catalog,
        extractors: dict[str, Extractor],
        limits: ImageLimits = ImageLimits(),
        loader_threads: int = 0,
        on_commit: Callable[[int], None] | None = None,
        listener: Listener | None = None,
        roots: Callable[[], Sequence[str] | None] | None = None,
        thumbnails: ThumbnailStore | None = None,
    ) -> None:
        if not extractors:
            raise ValueError("an indexing pipeline needs at least one extractor")
        self.catalog = catalog
        self.extractors = dict(extractors)  # its own: ``use_extractor`` changes it, not the caller's
        self.limits = limits
        # One per core, at least 2: loading is GIL-free C work (12-MP JPEG 31 ms CPU, forward 9) that must
        # fill the cores between forwards (issue 31: 94% busy, 1.9 of 2 cores); more would only queue.
        self.loader_threads = loader_threads or max(2, os.cpu_count() or 1)
        self.on_commit = on_commit
        self.listener = listener
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self.batch_size = max(e.batch_size for e in extractors.values())
        self.progress = Progress()
        self.storage = StorageHealth()
        self._applied = 0  # items of the batch in hand whose work is committed (``_apply``)
        self.roots = roots or (lambda: None)
        self._wanted = {name: e.model_id for name, e in extractors.items()}
        self._work_lock = threading.RLock()  # held by a ``process`` run: models change only between runs
        self._switches = Waiters()  # ``use_extractor`` calls waiting for ``_work_lock``
        self.thumbnails = thumbnails
        self.upkeep = Upkeep(catalog, lambda: self.limits.max_file_bytes, thumbnails)

    # -- planning

    def needs_work(self, path: str, retry_failed: bool = False) -> bool:
        """False when the catalogue already holds this file, unchanged, with every vector.

        A failed file, unchanged, is tried again when ``retry_failed`` (an explicit /add)
        or when its reason says nothing about its content (unreadable: a chmod changes
        neither size nor mtime).
        """
        record = self.catalog.get(path)
        if record is None:
            return True
        try:
            st = files.stat_file(path)
        except ImageError:
            return True  # let the pipeline record why (or drop a vanished file)
        if (st.st_size, st.st_mtime_ns) != (record.size, record.mtime_ns):
            return True
        if record.state == FileState.FAILED:
            return retry_failed or may_pass(path, record.error_reason, record.updated_at)
        if record.state != FileState.INDEXED or record.content_hash is None:
            return True
        return self.catalog.lacks_vectors(record.content_hash, self._wanted)

    def use_extractor(self, name: str, extractor: Extractor) -> None:
        """Embed with ``extractor`` as ``name`` from the next batch on (a model change's switch).

        Waits for a ``process`` run in progress, so no batch mixes the two models' tensors.
        """
        with self._switches, self._work_lock:
            self.extractors[name] = extractor
            self._wanted[name] = extractor.model_id
            self.batch_size = max(e.batch_size for e in self.extractors.values())

    # -- loading (runs on the loader threads)

    def _load(self, path: str) -> Loaded:
        return load_file(path, self.extractors, self.limits, self.roots(), self._reuse, self._keep_thumbnail)

    def _reuse(self, content_hash: str, name: str) -> tuple[str, np.ndarray] | None:
        model_id = self._wanted[name]
        vector = self.catalog.vector_for_hash(content_hash, name, model_id)
        return (model_id, vector) if vector is not None else None

    def _keep_thumbnail(self, content_hash: str, picture: Image.Image) -> None:
        if self.thumbnails is not None:
            self.thumbnails.add_picture(content_hash, picture)

    # -- running

    def process(
        self, paths: Iterable[str], show_progress: bool = False, total: int | None = None, retry_failed: bool = False
    ) -> dict[str, object]:
        """Index these files (skipping unchanged ones) and return a summary of this run."""
        with self._work_lock:
            return self._process(paths, show_progress, total, retry_failed)

    def _process(
        self,
        paths: Iterable[str],
        show_progress: bool,
        total: int | None,
        retry_failed: bool,
        stream: Stream | None = None,
    ) -> dict[str, object]:
        started = time.monotonic()
        run = Progress()
        bar = Bar(total, show_progress)
        pending: list[Loaded] = []
        in_flight: collections.deque[Future[Loaded]] = collections.deque()
        # Files loading ahead. A stream's window is a batch and a file per loader, so a request put in
        # front of it waits about 2 batches (this window and the batch pending), as it did behind a take.
        window = self.batch_size + self.loader_threads if stream else max(4 * self.batch_size, 2 * self.loader_threads)
        # Taken out only when the window is full: taking every loaded file flushed batches back to back
        # with nothing new submitted, the loaders idle (issue 31, CLIP, 12-MP: 0.9-1.5 s waits after).
        pool = self._loader_pool()

        def collect(block: bool) -> None:
            nonlocal pending
            while in_flight and (block or len(in_flight) >= window):
                pending.append(in_flight.popleft().result())
                if self._batch_full(pending):
                    self._flush(pending, bar, run, stream)
                    pending = []

        try:
            for raw in paths:
                path = normalise_path(raw)
                for counter in (self.progress, run):
                    counter.add_queued()
                if not self.needs_work(path, retry_failed):
                    for counter in (self.progress, run):
                        counter.add_done(unchanged=1)
                    bar.update(1)
                    if stream is not None:
                        stream.wrote([path])
                    self._tell(path, Outcome.UNCHANGED, None)
                    continue
                in_flight.append(pool.submit(self._load, path))
                collect(block=False)
            collect(block=True)
            self._flush(pending, bar, run, stream)
        except BaseException:
            # The paths not written go back to the queue (or are retried one by one): they
            # are no longer "taken", or /stats would count them as pending for ever.
            self.progress.add_queued(run.done - run.queued)
            raise
        finally:
            bar.close()
        return _summary(run, time.monotonic() - started)

    def _loader_pool(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.loader_threads, thread_name_prefix="imgsearchd-loader")
            return self._pool

    def close(self) -> None:
        """Stop the loader threads."""
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=True, cancel_futures=True)
                self._pool = None

    def __enter__(self) -> Pipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _tell(self, path: str, outcome: Outcome, error: ImageError | None) -> None:
        if self.listener is not None:
            try:
                self.listener(path, outcome, error)
            except Exception:
                log.exception("progress listener failed for %s", path)

    def _batch_full(self, pending: list[Loaded]) -> bool:
        to_embed = sum(1 for item in pending if item.tensors)
        return to_embed >= self.batch_size or len(pending) >= 8 * self.batch_size

    def _flush(self, pending: list[Loaded], bar: Bar, run: Progress, stream: Stream | None = None) -> None:
        """Embed what needs it, then write the whole batch in one transaction."""
        if not pending:
            return
        vectors = embed_batch(pending, self.extractors)
        rows = batch_rows(pending, vectors)
        seq = self.catalog.record_batch(rows.results)
        # A file whose folder went too may sit on a disk that was just unmounted: only a
        # deletion event, a folder removal or a reconcile scan forgets it.
        forget = [path for path in rows.vanished if os.path.isdir(os.path.dirname(path))]
        removed = self.catalog.remove_paths(forget) if forget else 0
        for counter in (self.progress, run):
            counter.add_done(
                embedded=rows.embedded,
                reused=rows.reused,
                failed=rows.failures,
                vanished=len(rows.vanished),
                removed=removed,
            )
        bar.update(len(pending))
        bar.set_rate(self.progress.images_per_second())
        self._committed(seq)
        for i, item in enumerate(pending):
            if item.error is None:
                self._tell(item.path, Outcome.EMBEDDED if i in vectors else Outcome.REUSED, None)
            elif item.error.reason == Reason.MISSING:
                self._tell(item.path, Outcome.REMOVED, item.error)
            else:
                self._tell(item.path, Outcome.FAILED, item.error)
        # Marked written only once told: a failure after the commit (a vanished file's remove_paths
        # on a full disk) replays the batch, so each file is told (UNCHANGED) and the row forgotten.
        if stream is not None:
            stream.wrote(item.path for item in pending)

    def prune_folder(
        self,
        root: str,
        extensions: Iterable[str],
        recursive: bool = True,
        on_error: OnError | None = None,
    ) -> list[str]:
        """Forget the catalogue entries under a folder that are gone from disk; return every image found.

        A folder that is missing or unreadable as a whole removes nothing (FileNotFoundError).
        """
        root = normalise_path(root)
        if not os.path.isdir(root) or not os.access(root, os.R_OK | os.X_OK):
            raise FileNotFoundError(f"folder {root} is missing or unreadable; nothing was removed")
        plan = plan_folder(self.catalog, root, extensions, recursive, on_error=on_error, roots=self.roots())
        if plan.outside:
            log.warning("%s: skipped %d links that lead outside the allowed folders", root, len(plan.outside))
        if plan.vanished:
            self.remove(plan.vanished)
        return plan.paths

    def remove(self, paths: Iterable[str]) -> int:
        """Forget files or folders; returns how many catalogue entries went."""
        paths = list(paths)
        removed = self.catalog.remove_paths(paths)
        self.progress.add_done(removed=removed)
        if removed:
            self._committed()
        for path in paths:
            self._tell(normalise_path(path), Outcome.REMOVED, None)
        return removed

    def run(
        self,
        queue: WorkQueue,
        stop: threading.Event,
        idle_timeout: float = 0.5,
        prune_every: float = 600.0,
        retry_every: float = 60.0,
    ) -> None:
        """The daemon's loop: take queued work until ``stop`` is set.

        When idle: files catalogued before metadata was read get theirs (``fill_metadata``);
        every ``retry_every`` seconds, failed files whose retry is due are queued again
        (``folders.retry_due``); at most every ``prune_every`` seconds, vectors that no
        file uses any more are dropped (the delay lets a move seen as delete + create keep
        its vector); and while the catalogue cannot be written, an empty write probes it.
        """
        last_prune = last_retry = time.monotonic()
        while not stop.is_set():
            # Small takes keep a request that jumped the queue from waiting behind a long run: the
            # take's run streams on (``Stream``), but an entry of another kind at the front, or a
            # path the pass holds, ends it at the next pull.
            # While older rows wait for their metadata, the loop does not sleep between fills:
            # 200 rows per 0.5 s wait made 100k files take 500 waits (over 4 minutes) on top
            # of about one minute of reading (derived from bench_formats' 0.3-0.7 ms a JPEG).
            filling = self.upkeep.metadata_left and self.storage.ok
            items = queue.take(2 * self.batch_size, timeout=0.0 if filling else idle_timeout)
            commits = self.catalog.commits
            self._applied = 0
            stream = Stream(queue, stop, items, self.batch_size, lambda: bool(self._switches))
            try:
                if items:
                    self._apply(items, stream)
                elif not self.storage.ok and time.monotonic() >= self.storage.retry_at:
                    self.catalog.probe_write()  # nothing queued to try it with (a failed /remove)
                elif self.upkeep.metadata_left:
                    self.upkeep.fill_metadata_once()
                elif time.monotonic() - last_retry >= retry_every:
                    last_retry = time.monotonic()
                    self._queue_due_retries(queue)
                elif time.monotonic() - last_prune >= prune_every:
                    last_prune = time.monotonic()
                    self.prune_unused()
                if self.catalog.commits > commits and self.storage.succeeded():
                    log.warning("the catalogue can be written again; indexing goes on")
            except Exception as exc:  # the loop must survive anything one batch does
                unfinished = stream.unfinished(items[self._applied :])  # finished moves, written files: not replayed
                if is_storage_error(exc):
                    self._wait_for_storage(exc, unfinished, queue, stop)
                else:
                    log.exception("indexing batch failed; trying its %d items one by one", len(unfinished))
                    self._apply_one_by_one(unfinished, queue, stop)
            finally:
                if items:
                    queue.task_done(len(items))

    # -- the idle duties (``upkeep``)

    def fill_metadata(self, batch: int = 200, budget_s: float = 0.25) -> int:
        """Read the metadata of up to ``batch`` files catalogued without it (``Upkeep.fill_metadata``)."""
        return self.upkeep.fill_metadata(batch, budget_s)

    def prune_unused(self) -> tuple[int, int]:
        """Drop the vectors and thumbnails no file has any more (``Upkeep.prune_unused``)."""
        return self.upkeep.prune_unused()

    def _queue_due_retries(self, queue: WorkQueue) -> int:
        return self.upkeep.queue_due_retries(queue)

    # -- failures of a whole batch

    def _wait_for_storage(self, exc: BaseException, items: list[Work], queue: WorkQueue, stop: threading.Event) -> None:
        """Keep the work queued, tell waiters it is deferred, and back off before the next try."""
        delay = self.storage.failed(exc)
        kept = queue.give_back(items)
        log.error(
            "cannot write the catalogue in %s (%s): %d items stay queued; trying again in %.0f s",
            self.catalog.path.parent,
            exc,
            kept,
            delay,
        )
        for item in items:
            if item.intent in (Intent.ADD, Intent.RECHECK):
                self._tell(item.path, Outcome.DEFERRED, None)
        stop.wait(delay)

    def _apply_one_by_one(self, items: list[Work], queue: WorkQueue, stop: threading.Event) -> None:
        """After a batch failed for no storage reason: find the item at fault, record it, go on."""
        for position, item in enumerate(items):
            try:
                self._apply([item])
            except Exception as exc:
                if is_storage_error(exc):
                    self._wait_for_storage(exc, items[position:], queue, stop)
                    return
                log.exception("cannot index %s (%s)", item.path, item.intent)
                self._record_internal_error(item, exc)

    def _record_internal_error(self, item: Work, exc: BaseException) -> None:
        """Record a path whose work raised as failed (``internal_error``), and tell its waiters."""
        error = ImageError(Reason.INTERNAL, f"{type(exc).__name__}: {exc}")
        if item.intent in (Intent.ADD, Intent.RECHECK):
            try:
                st = os.stat(item.path)
                result = FileResult(item.path, st.st_size, st.st_mtime_ns, None, {}, error.reason, error.detail)
                self._committed(self.catalog.record_batch([result]))
                self.progress.add_queued()
                self.progress.add_done(failed=[error.reason])
            except Exception:
                log.exception("cannot record the failure of %s either", item.path)
        self._tell(item.path, Outcome.FAILED, error)

    # -- moves, restores and offline folders

    def _committed(self, seq: int | None = None) -> None:
        """Tell the indexes about a commit (``seq``, else the catalogue's current one)."""
        if self.on_commit is not None:
            self.on_commit(self.catalog.current_seq() if seq is None else seq)

    def move(self, old: str, new: str) -> int:
        """Rename a file or a folder's files in the catalogue; nothing is read or re-embedded."""
        moved = self.catalog.move(old, new)
        if moved:
            self._committed()
        self._tell(normalise_path(old), Outcome.REMOVED, None)
        return moved

    def restore(self, paths: Iterable[str]) -> int:
        """Make offline files that came back unchanged searchable again; returns how many."""
        restored = self.catalog.set_online(paths)
        if restored:
            self._committed()
            self.upkeep.metadata_left = True  # offline files are not filled: some may still lack metadata
        return restored

    def set_offline(self, root: str) -> int:
        """Keep a vanished folder's files, vectors and ids, but stop returning them."""
        count = self.catalog.set_offline(root)
        if count:
            self._committed()
        log.info("%d files under %s marked offline", count, root)
        return count

    def _apply(self, items: list[Work], stream: Stream | None = None) -> None:
        """Apply queued work in order; a move or an offline folder splits the batch (the last part streams)."""
        run: list[Work] = []
        for item in items:
            if item.intent not in (Intent.MOVE, Intent.MARK_OFFLINE):
                run.append(item)
                continue
            self._apply_paths(run)
            self._applied += len(run)
            run = []
            if item.intent == Intent.MOVE:
                assert item.old is not None
                self.move(item.old, item.path)
            else:
                self.set_offline(item.path)
            self._applied += 1
        self._apply_paths(run, stream)
        self._applied += len(run)

    def _apply_paths(self, items: list[Work], stream: Stream | None = None) -> None:
        removals = [item.path for item in items if item.intent == Intent.REMOVE]
        restores = [item.path for item in items if item.intent == Intent.RESTORE]
        additions = [item.path for item in items if item.intent == Intent.ADD]
        rechecks = [item.path for item in items if item.intent == Intent.RECHECK]
        if removals:
            self.remove(removals)
        if restores:
            self.restore(restores)
        # Taken here, not per run as ``process`` does: held across the rechecks and the additions, a
        # model switch cannot come between them and no batch mixes two models' vectors (a switch
        # that waits ends the stream at its next pull instead).
        with self._work_lock:
            if rechecks:
                paths = stream.paths(rechecks, Intent.RECHECK) if stream and not additions else rechecks
                self._process(paths, show_progress=False, total=None, retry_failed=True, stream=stream)
            if additions:
                paths = stream.paths(additions, Intent.ADD) if stream else additions
                self._process(paths, show_progress=False, total=None, retry_failed=False, stream=stream)


def _summary(run: Progress, elapsed: float) -> dict[str, object]:
    """What ``process`` answers: the run's counts, its files, seconds and rate."""
    summary: dict[str, object] = dict(run.snapshot())
    summary.pop("queued")
    summary.pop("done")
    summary["files"] = run.queued
    summary["seconds"] = round(elapsed, 3)
    summary["images_per_second"] = round(run.embedded / elapsed, 2) if elapsed > 0 else 0.0
    return summary
