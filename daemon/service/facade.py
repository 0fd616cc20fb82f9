"""Wires the parts together from the config and runs them.

``Service`` owns the catalogue, the extractors, one index per extractor, the work
queue, the indexer thread, the watcher and the folder jobs. The HTTP server calls its
small facade (``add_file``, ``add_folder``, ``remove``, ``search_*``, ``stats``); the
indexer tells the indexes about each commit. The process around it (listening, signals,
systemd) is ``serve``.

Longer than most modules: it is the one facade the HTTP routes call (searches, folder
filters, combined queries, duplicates, stats), each a few lines over the parts it wires.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import Any, BinaryIO

import numpy as np

from .. import __version__
from ..bulk import status
from ..config import Config
from ..errors import ApiError, image_error
from ..extractors import Extractor, LoadedExtractors, load
from ..ingest.folders import canonical_path, leads_outside
from ..ingest.jobs import Job, JobTracker, Waiter
from ..ingest.outcomes import Outcome
from ..ingest.pipeline import Indexer
from ..ingest.watcher import FolderState, Watcher, WatchOptions
from ..ingest.workqueue import Intent, WorkQueue
from ..media import formats, images
from ..media.thumbnails import Thumbnail, ThumbnailBusy, ThumbnailStore
from ..paths import normalise_path
from ..search import combined, duplicates, query
from ..search.index import ExtractorIndex, index_for, query_many
from ..search.scoped import UnknownFolder
from ..store.catalog import Catalog, FileState
from ..store.disk_health import is_storage_error
from ..store.rows import SearchScope

log = logging.getLogger("imgsearchd.service")

ADD_FILE_TIMEOUT = 120.0
# Work that may wait for a model, the decode budget or the indexer (a search that embeds,
# a file /add) runs at most this many at once, so the HTTP server's 16 workers always have
# some free for /health, /stats and searches by stored vector; more get a 503 at once.
SLOW_SLOTS = 12


class LoadAborted(Exception):
    """The daemon was told to stop while it was still loading."""


class Service:
    """The running daemon's state, behind a small facade for the HTTP server."""

    def __init__(self, config: Config, slow_slots: int = SLOW_SLOTS) -> None:
        self.config = config
        config.resolve_roots()
        self.slow_slots = slow_slots
        self._slow_work = threading.BoundedSemaphore(slow_slots)
        self.started = time.time()
        self.phase = "starting"
        self._ready = threading.Event()
        self.jobs = JobTracker()
        self.queue = WorkQueue()
        self._stop = threading.Event()
        self.catalog: Catalog | None = None
        self.loaded: LoadedExtractors | None = None
        self.indexes: dict[str, ExtractorIndex] = {}
        self.indexer: Indexer | None = None
        self._worker: threading.Thread | None = None
        self.watcher: Watcher | None = None
        self.watch_overrides: dict[str, Any] = {}  # extra WatchOptions (tests, benchmarks), set before load
        self.limits = images.ImageLimits.from_config(config.images)
        self._burst_base = 0
        self._abort_load = threading.Event()
        self.duplicate_finder: duplicates.DuplicateFinder | None = None
        self.thumbnails: ThumbnailStore | None = None

    # -- life cycle ------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def abort_load(self) -> None:
        """Make a ``load`` in progress stop at its next step with LoadAborted."""
        self._abort_load.set()

    def _enter_phase(self, phase: str) -> None:
        if self._abort_load.is_set():
            raise LoadAborted(f"stopped while {self.phase}")
        self.phase = phase

    def load(self) -> None:
        """Open the catalogue, load the models and indexes, start the indexer thread.

        Raises LoadAborted between steps once ``abort_load`` was called.
        """
        data_dir = self.config.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        self._enter_phase("opening catalogue")
        self.catalog = Catalog(self.config.catalog_path)
        self._enter_phase("loading models")
        index_cfg = self.config.index
        self.loaded = load(index_cfg["extractors"], index_cfg["fallback_extractor"], self.config.extractor)
        self._enter_phase("loading indexes")
        for name, extractor in self.loaded.extractors.items():
            index = index_for(self.catalog, self.config, extractor)
            index.open()
            self.indexes[name] = index
        self._enter_phase("starting the indexer")
        for kind, note in formats.missing_notes().items():
            log.warning("%s files will fail with reason missing_library: %s", kind, note)
        self.thumbnails = ThumbnailStore.from_settings(data_dir, self.config.section("thumbnails"))
        self.indexer = Indexer(
            self.catalog,
            self.loaded.extractors,
            self.limits,
            index_cfg["loader_threads"],
            on_commit=self._on_commit,
            listener=self.jobs.on_file,
            roots=lambda: self.allowed_roots() or None,
            thumbnails=self.thumbnails,
        )
        self._worker = threading.Thread(
            target=self.indexer.run, args=(self.queue, self._stop), name="imgsearchd-indexer", daemon=True
        )
        self._worker.start()
        self.watcher = Watcher(
            self.queue,
            self.catalog,
            self.config.watch_dirs,
            self._watch_options(self.config),
            models={name: extractor.model_id for name, extractor in self.loaded.extractors.items()},
            roots=lambda: self.allowed_roots() or None,
        )
        self.watcher.start()
        self.duplicate_finder = duplicates.DuplicateFinder(self.catalog)
        self.phase = "ready"
        self._ready.set()
        log.info(
            "ready: %d images, extractors %s (default %s)",
            self.catalog.counts()["files"],
            ", ".join(self.loaded.extractors),
            self.loaded.primary,
        )

    def _on_commit(self, seq: int) -> None:
        for index in self.indexes.values():
            try:
                index.refresh()
            except Exception:
                log.exception("index %s could not catch up; it will retry on the next change", index.extractor)

    def close(self) -> None:
        """Stop the indexer after its batch in flight, close indexes and the catalogue."""
        self.phase = "stopping"
        self._ready.clear()
        if self.watcher is not None:
            self.watcher.stop()
        if self.duplicate_finder is not None:
            self.duplicate_finder.close()
        self._stop.set()
        if self._worker is not None:
            self._worker.join(timeout=60)
        if self.indexer is not None:
            self.indexer.close()
        for index in self.indexes.values():
            index.close()
        if self.thumbnails is not None:
            self.thumbnails.close()
        if self.catalog is not None:
            self.catalog.close()

    # -- paths -------------------------------------------------------------------------

    @property
    def max_upload_bytes(self) -> int:
        return int(self.config.server["max_upload_mb"] * 1024 * 1024)

    def allowed_roots(self) -> list[str]:
        return self.config.allowed_roots

    def canonical(self, path: str) -> str:
        """A checked path as a scan names the file (``folders.canonical_path``)."""
        return canonical_path(path, self.config.root_pairs())

    def check_path(self, raw: str) -> str:
        """A request's path, normalised; ApiError 400/403 when it is not usable."""
        if "\x00" in raw:
            raise ApiError(400, "path contains a NUL character")
        if not os.path.isabs(raw):
            raise ApiError(400, f"path must be absolute, not {raw!r}")
        path = normalise_path(raw)
        if leads_outside(path, self.allowed_roots()):
            raise ApiError(
                403,
                f"{path} is outside the watched folders and server.allowed_roots",
                reason=images.Reason.OUTSIDE_ROOTS,
                image=path,
            )
        return path

    # -- work ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _slow_slot(self) -> Iterator[None]:
        """One of the ``slow_slots``, or ApiError 503 at once when all are taken."""
        if not self._slow_work.acquire(blocking=False):
            raise ApiError(
                503, f"busy: {self.slow_slots} searches that embed and file adds are in progress; try again shortly"
            )
        try:
            yield
        finally:
            self._slow_work.release()

    def add_file(self, path: str, timeout: float = ADD_FILE_TIMEOUT) -> dict[str, Any]:
        """Index one file now (ahead of queued work) and say what happened to it.

        An image that cannot be used raises the ApiError for its reason (415, 413, ...).
        """
        with self._slow_slot():
            return self._add_file(path, timeout)

    def _add_file(self, path: str, timeout: float) -> dict[str, Any]:
        try:
            images.stat_file(path)
        except images.ImageError as exc:
            raise image_error(exc, path) from None
        assert self.indexer is not None
        waiter = self.jobs.waiter(path)
        self.queue.put(path, Intent.RECHECK, front=True)  # a failed file is tried again
        if not self.indexer.storage.ok:
            self.jobs.forget(path, waiter)
            raise self._storage_error(f"{path} is queued")
        if not self._wait_unless_storage_fails(waiter, timeout):
            self.jobs.forget(path, waiter)
            raise self._storage_error(f"{path} is queued")
        if not waiter.event.is_set():
            self.jobs.forget(path, waiter)
            raise ApiError(504, f"{path} is queued but was not indexed within {timeout:.0f} s", image=path)
        outcome = waiter.outcome
        if outcome == Outcome.FAILED:  # recorded in the catalogue with its reason; the answer is the 4xx
            raise image_error(waiter.error or images.ImageError(images.Reason.CORRUPT, "could not be indexed"), path)
        if outcome == Outcome.REMOVED:
            raise ApiError(404, f"{path}: the file vanished before it could be indexed", image=path)
        if outcome == Outcome.DEFERRED:
            raise self._storage_error(f"{path} is queued")
        status = "unchanged" if outcome == Outcome.UNCHANGED else "indexed"
        return {"image": path, "status": status, "embedded": outcome == Outcome.EMBEDDED}

    def _wait_unless_storage_fails(self, waiter: Waiter, timeout: float) -> bool:
        """Wait for the path's outcome; False at once if the catalogue stops being writable.

        The failing batch may not hold this path (it waits behind the batch given back), so
        the request must not sleep its whole timeout to learn that nothing can be written.
        """
        assert self.indexer is not None
        deadline = time.monotonic() + timeout
        while not waiter.event.wait(min(0.5, max(0.0, deadline - time.monotonic()))):
            if not self.indexer.storage.ok:
                return False
            if time.monotonic() >= deadline:
                break
        return True

    def add_folder(self, path: str, wait: float = 0.25) -> Job:
        """Walk a folder in the background and queue its images; returns at once."""
        watch = self.config.watch
        assert self.indexer is not None
        indexer = self.indexer

        def scan() -> list[str]:
            return indexer.prune_folder(
                path,
                watch["extensions"],
                watch["recursive"],
                on_error=lambda p, e: log.warning("cannot read %s: %s", p, e),
            )

        job = self.jobs.start_folder(path, scan, lambda chunk: self.queue.put_many(chunk, Intent.RECHECK))
        job.scan_done.wait(wait)  # small folders answer with their count
        return job

    def remove(self, path: str) -> int:
        assert self.indexer is not None
        try:
            return self.indexer.remove([path])
        except Exception as exc:
            if not is_storage_error(exc):
                raise
            self.indexer.storage.failed(exc)
            self.queue.put(path, Intent.REMOVE)  # done by the indexer once the disk allows
            raise self._storage_error(f"{path} is not removed yet: the removal is queued") from None

    def _storage_error(self, what: str) -> ApiError:
        """503: the catalogue cannot be written now (full or read-only disk); says what happens."""
        assert self.indexer is not None
        state = self.indexer.storage.as_dict()
        return ApiError(
            503,
            f"cannot write the catalogue in {self.config.data_dir} ({state.get('error', 'storage error')}); "
            f"{what}, and imgsearchd retries by itself once the disk allows",
            storage=state,
        )

    def rebuild(self, extractor: str | None = None) -> dict[str, Any]:
        names = [self._extractor(extractor).name] if extractor else list(self.indexes)
        for name in names:
            self.indexes[name].rebuild(wait=False)
        return {"rebuilding": names}

    # -- search ----------------------------------------------------------------------------

    def _extractor(self, name: str | None) -> Extractor:
        assert self.loaded is not None
        if name is None:
            return self.loaded.default
        if name not in self.loaded.extractors:
            running = ", ".join(self.loaded.extractors)
            raise ApiError(400, f"extractor {name!r} is not running; running: {running}")
        return self.loaded.extractors[name]

    def _answer(
        self,
        extractor: Extractor,
        vector: np.ndarray,
        limit: int,
        max_distance: float | None,
        scope: SearchScope | None = None,
    ) -> dict[str, Any]:
        try:
            return query.search_answer(self.indexes[extractor.name], vector, limit, max_distance, scope)
        except UnknownFolder as exc:
            raise ApiError(404, str(exc), folder=exc.folder) from None

    def search_path(
        self, path: str, extractor: str | None, limit: int, max_distance: float | None, scope: SearchScope | None = None
    ) -> dict[str, Any]:
        chosen = self._extractor(extractor)
        assert self.catalog is not None
        vector = query.stored_vector_for_path(self.catalog, chosen, path)
        if vector is None:
            with self._slow_slot():
                vector = query.embed_path(chosen, path, self.limits, self.allowed_roots() or None)
        return self._answer(chosen, vector, limit, max_distance, scope)

    def search_bytes(
        self,
        data: bytes,
        extractor: str | None,
        limit: int,
        max_distance: float | None,
        scope: SearchScope | None = None,
    ) -> dict[str, Any]:
        chosen = self._extractor(extractor)
        with self._slow_slot():
            vector = query.query_vector_for_bytes(chosen, data, self.limits)
        return self._answer(chosen, vector, limit, max_distance, scope)

    def search_text(
        self, text: str, extractor: str | None, limit: int, max_distance: float | None, scope: SearchScope | None = None
    ) -> dict[str, Any]:
        chosen = self._extractor(extractor)
        with self._slow_slot():
            vector = chosen.encode_text([text])[0]
        return self._answer(chosen, vector, limit, max_distance, scope)

    def search_combined(
        self,
        raw_query: Any,
        extractor: str | None,
        limit: int,
        max_distance: float | None,
        scope: SearchScope | None = None,
    ) -> dict[str, Any]:
        """A combined query (``combined``): the JSON list of weighted image and text parts."""
        chosen = self._extractor(extractor)
        assert self.catalog is not None
        parts = combined.parse_parts(raw_query, self.max_upload_bytes, self.check_path)
        vector = combined.query_vector(
            parts, chosen, self.catalog, self.limits, self.allowed_roots() or None, self._slow_slot
        )
        return self._answer(chosen, vector, limit, max_distance, scope)

    # -- duplicates ----------------------------------------------------------------------------

    def find_duplicates(
        self,
        extractor: str | None,
        threshold: float | None,
        kind: str,
        folder: str | None,
        offset: int,
        limit: int,
        sort: str = "similarity",
    ) -> tuple[int, dict[str, Any]]:
        """``/duplicates``: 200 with a page of groups, or 202 while the first join runs."""
        chosen = self._extractor(extractor)
        assert self.catalog is not None and self.duplicate_finder is not None
        if folder is not None:
            folder = self.check_path(folder)
            if not os.path.isdir(folder):
                raise ApiError(404, f"{folder} is not a folder", image=folder)
        if threshold is None:
            threshold = float(self.config.extractor(chosen.name)["duplicate_threshold"])
        index = self.indexes[chosen.name]
        mode = lambda: str(index.stats()["mode"])  # noqa: E731
        join = lambda rows, n: query_many(index, rows, n, duplicates.JOIN_SEARCH_K)  # noqa: E731
        source = duplicates.Source(self.catalog, chosen.model_id, chosen.dim, mode, join)
        return duplicates.respond(
            self.duplicate_finder,
            chosen.name,
            source,
            threshold,
            kind,
            folder,
            offset,
            limit,
            self.allowed_roots(),
            sort,
        )

    # -- thumbnails and originals ----------------------------------------------------------------

    def thumbnail(self, path: str) -> Thumbnail:
        """The thumbnail of a catalogued file: stored, or made now from the file (one decode)."""
        assert self.catalog is not None and self.thumbnails is not None
        record = self.catalog.get(path)
        if record is None or record.state != FileState.INDEXED:
            raise ApiError(404, f"{path} is not an indexed file in the catalogue", image=path)
        if record.content_hash is not None:
            found = self.thumbnails.get(record.content_hash)
            if found is not None:
                return found
        try:
            # One of the slow slots while it is made (the HTTP workers stay free for /health and
            # stored thumbnails), none while it waits for its turn.
            roots = self.allowed_roots() or None
            return self.thumbnails.make_from_file(path, self.limits, roots, slot=self._slow_slot)
        except images.ImageError as exc:
            raise image_error(exc, path) from None
        except ThumbnailBusy as exc:
            raise ApiError(503, str(exc), image=path) from None

    def original(self, path: str) -> tuple[BinaryIO, int, str]:
        """An indexed file opened to be sent as it is: (file, size, content type)."""
        assert self.catalog is not None
        record = self.catalog.get(path)
        if record is None or record.state != FileState.INDEXED:
            raise ApiError(404, f"{path} is not an indexed file in the catalogue", image=path)
        try:
            return images.open_original(path, self.limits, self.allowed_roots() or None)
        except images.ImageError as exc:
            raise image_error(exc, path) from None

    # -- reload and status --------------------------------------------------------------------

    RESTART_ONLY = (
        "server.host",
        "server.port",
        "index.data_dir",
        "index.extractors",
        "index.fallback_extractor",
        "index.loader_threads",
        "index.kind",  # the snapshot in use and the search effort it was loaded with
        "index.ef",
        "index.search_k",
        "thumbnails.size",  # the stored thumbnails were made at this size, in this format
        "thumbnails.format",
        "log.format",  # the handler is set up once, before the service exists
    )

    def apply_config(self, new: Config) -> None:
        """Take a reloaded config: folders, thresholds, limits, access and log level change live."""
        for dotted in self.RESTART_ONLY:
            section, key = dotted.split(".")
            if new.values[section][key] != self.config.values[section][key]:
                log.warning("%s changed: this takes effect at the next restart", dotted)
                new.values[section][key] = self.config.values[section][key]
        for name in self.config.values:
            if name.startswith("extractors.") and new.values[name] != self.config.values[name]:
                log.warning("[%s] changed: this takes effect at the next restart", name)
                new.values[name] = self.config.values[name]
        self.config = new
        new.resolve_roots()
        self.limits = images.ImageLimits.from_config(new.images)
        if self.indexer is not None:
            self.indexer.limits = self.limits
        if self.thumbnails is not None:
            self.thumbnails.set_max_bytes(int(new.section("thumbnails")["max_mb"] * 1024 * 1024))
        for index in self.indexes.values():
            index.rebuild_after_changes = new.index["rebuild_after_changes"]
            index.rebuild_after_seconds = new.index["rebuild_after_seconds"]
            index.trees = new.index["trees"]
            index.target_recall = new.index["target_recall"]  # both for the next build's measurement
            index.search_budget_ms = new.index["search_budget_ms"]
        logging.getLogger().setLevel(new.section("log")["level"].upper())
        self.reload_watch(new)
        log.info("configuration reloaded from %s", new.source or "defaults")

    def _watch_options(self, config: Config) -> WatchOptions:
        return WatchOptions.from_config(config.watch, **self.watch_overrides)

    def reload_watch(self, config: Config) -> None:
        """Watch the folders and use the [watch] settings of a reloaded config."""
        if self.watcher is not None:
            self.watcher.configure(config.watch_dirs, self._watch_options(config))

    def health(self) -> dict[str, Any]:
        """``/health``'s answer once ready: ok, or degraded with the reason (searches still work)."""
        if self.indexer is not None and not self.indexer.storage.ok:
            return {"status": "degraded", "storage": self.indexer.storage.as_dict()}
        return {"status": "ok"}

    def healthy(self) -> bool:
        """False when the indexer thread has died (the watchdog then stops being fed)."""
        return self._worker is None or self._worker.is_alive() or self._stop.is_set()

    def status_line(self) -> str:
        """One line for systemd's STATUS=: progress while indexing, else the size."""
        if not self.ready or self.catalog is None or self.indexer is None:
            return self.phase
        progress = self.indexer.progress.snapshot()
        pending = self._pending(progress)
        if pending:
            done = int(progress["done"]) - self._burst_base  # type: ignore[call-overload]
            return f"indexing {done}/{done + pending}, {progress['images_per_second']:.1f} img/s"
        self._burst_base = int(progress["done"])  # type: ignore[call-overload]
        return f"idle, {self.catalog.counts()['by_state'].get('indexed', 0)} images"

    # -- stats -------------------------------------------------------------------------------

    def _pending(self, progress: dict[str, Any]) -> int:
        """Work queued, plus paths the indexer has taken and not finished."""
        return len(self.queue) + max(0, int(progress["queued"]) - int(progress["done"]))

    def stats(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "version": __version__,
            "uptime_s": round(time.time() - self.started, 3),
            "ready": self.ready,
            "phase": self.phase,
            "watch": self.watcher.status()
            if self.watcher is not None
            else [{"folder": str(p), "state": FolderState.STARTING} for p in self.config.watch_dirs],
            "jobs": self.jobs.summary(),
            "duplicates": self.duplicate_finder.status() if self.duplicate_finder is not None else None,
            "thumbnails": self.thumbnails.stats() if self.thumbnails is not None else None,
            "decoders": formats.available(),
        }
        if not self.ready or self.catalog is None or self.loaded is None or self.indexer is None:
            out.update(
                {
                    "images": None,
                    "pending": len(self.queue),
                    "failed": {},
                    "extractors": {},
                    "active_extractor": None,
                    "fallback": None,
                }
            )
            return out
        counts = self.catalog.counts()
        progress = self.indexer.progress.snapshot()
        out.update(
            {
                "images": counts["by_state"].get(FileState.INDEXED, 0),
                "files": counts["files"],
                "metadata": {"missing": self.catalog.count_without_metadata()},
                "pending": self._pending(progress),
                "failed": {
                    "total": counts["by_state"].get(FileState.FAILED, 0),
                    "by_reason": counts["failed_by_reason"],
                    "recent": self.catalog.recent_failures(5),
                },
                "storage": self.indexer.storage.as_dict(),
                "backfill": status.status(self.catalog),
                "active_extractor": self.loaded.primary,
                "fallback": self.loaded.fallback.as_dict() if self.loaded.fallback else None,
                "indexing": progress,
                "extractors": {
                    name: {
                        **self.indexes[name].stats(),
                        "model": extractor.model_id,
                        "vectors": counts["vectors"].get(name, 0),
                        "dim": extractor.dim,
                        "device": str(extractor.device),
                        "precision": extractor.precision.as_dict(),
                        "channels_last": extractor.channels_last,
                        "text": extractor.supports_text,
                    }
                    for name, extractor in self.loaded.extractors.items()
                },
            }
        )
        return out
