"""Wires the parts together from the config and runs them.

``Service`` owns the catalogue, the extractors, one index per extractor, the work
queue, the indexer thread, the watcher and the folder jobs. The HTTP routes and the CLI call
its small facade: ``add_file``, ``add_folder``, ``remove`` (``intake``), ``folders``,
``watch_folder``, ``unwatch_folder`` and ``browse`` (``watching``), ``search`` (the one
search entry point, ``search.run``), ``find_duplicates``, ``resolve_duplicates``,
``undo_resolution`` and ``resolutions`` (``tidying``), ``thumbnail`` and ``original``
(``files``), ``stats`` and ``health`` (``reports``), ``apply_config`` (``reload``); the
indexer tells the indexes about each commit. The process around it (listening, signals,
systemd) is ``process.serve``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterator
from typing import Any, BinaryIO, TypedDict

from ..config import Config
from ..errors import Busy, Invalid, NotFound, Refused
from ..extractors import Extractor, LoadedExtractors, load
from ..ingest.folders import canonical_path, leads_outside
from ..ingest.jobs import Job, JobTracker
from ..ingest.pipeline import Pipeline
from ..ingest.watched import WatchOptions
from ..ingest.watcher import Watcher
from ..ingest.workqueue import WorkQueue
from ..media import formats
from ..media.failures import Reason
from ..media.limits import ImageLimits
from ..media.thumbnails import Thumbnail, ThumbnailStore
from ..paths import normalise_path
from ..search import duplicate_page, duplicates, run
from ..search.background import Backgrounds
from ..search.duplicate_page import DuplicatesAnswer
from ..search.framing import use_one_blas_thread
from ..search.framing_prints import FramingChecker
from ..search.index import ExtractorIndex, index_for
from ..search.request import Query, SearchAnswer, SearchRequest
from ..search.self_join import query_many
from ..store.catalog import Catalog
from ..tidy.checks import Group
from .files import find_thumbnail, open_original
from .intake import ADD_FILE_TIMEOUT, Added, Intake
from .model_change import Change, load_models
from .model_switch import Switcher
from .reload import apply_live, keep_restart_only
from .reports import Health, health_answer, stats_answer, status_line
from .tidying import ResolutionList, Resolved, Tidying, UndoAnswer
from .watching import Browse, FolderList, Unwatched, Watched, Watching

log = logging.getLogger("imgsearchd.service")

# Work that may wait for a model, the decode budget or the indexer (a search that embeds,
# a file /add) runs at most this many at once, so the HTTP server's 16 workers always have
# some free for /health, /stats and searches by stored vector; more get a 503 at once.
SLOW_SLOTS = 12


class LoadAborted(Exception):
    """The daemon was told to stop while it was still loading."""


class Rebuilding(TypedDict):
    """``POST /rebuild``'s answer: the extractors whose index is being rebuilt."""

    rebuilding: list[str]


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
        self.pipeline: Pipeline | None = None
        self._worker: threading.Thread | None = None
        self.watcher: Watcher | None = None
        self.watch_overrides: dict[str, Any] = {}  # extra WatchOptions (tests, benchmarks), set before load
        self.change_overrides: dict[str, float] = {}  # {"pace": seconds between a model change's batches} (tests)
        self.changes: dict[str, Change] = {}  # model changes under way, by extractor (``model_change``)
        self.switcher: Switcher | None = None
        self.swap_lock = threading.Lock()  # a model change's switch swaps an extractor and its index under it
        self.limits = ImageLimits.from_config(config.images)
        self._burst_base = 0
        self._abort_load = threading.Event()
        self.duplicate_finder: duplicates.DuplicateFinder | None = None
        self.framing: FramingChecker | None = None  # the duplicates' pixel check, its caches across joins
        self.backgrounds = Backgrounds()  # the samples search scores are corrected against (match levels)
        self.thumbnails: ThumbnailStore | None = None
        self.intake: Intake | None = None
        self.watching = Watching(self)  # folders watched at run time, kept in the catalogue
        self.tidying = Tidying(self)  # acting on duplicates, journaled in the catalogue

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
        use_one_blas_thread()  # the framing check's small products (search.framing)
        self._enter_phase("opening catalogue")
        self.catalog = Catalog(self.config.catalog_path)
        self.watching.load()
        self.tidying.recover()  # a resolve or undo a crash interrupted: finished or rolled back
        self._enter_phase("loading models")
        index_cfg = self.config.index
        # the old model of an extractor whose model changed serves until the switch (``model_change``)
        self.loaded, self.changes = load_models(self.catalog, self.config, load)
        self._enter_phase("loading indexes")
        for name, extractor in self.loaded.extractors.items():
            index = index_for(self.catalog, self.config, extractor)
            index.open()
            self.indexes[name] = index
        self._enter_phase("starting the indexer")
        for kind, note in formats.missing_notes().items():
            log.warning("%s files will fail with reason missing_library: %s", kind, note)
        self.thumbnails = ThumbnailStore.from_settings(data_dir, self.config.thumbnails)
        self.pipeline = Pipeline(
            self.catalog,
            self.loaded.extractors,
            self.limits,
            index_cfg.loader_threads,
            on_commit=self._on_commit,
            listener=self.jobs.on_file,
            roots=lambda: self.allowed_roots() or None,
            thumbnails=self.thumbnails,
        )
        self._worker = threading.Thread(
            target=self.pipeline.run, args=(self.queue, self._stop), name="imgsearchd-indexer", daemon=True
        )
        self._worker.start()
        self.intake = Intake(self.pipeline, self.queue, self.jobs, data_dir)
        self.watcher = Watcher(
            self.queue,
            self.catalog,
            self.watching.roots(self.config),  # the config's folders and those added at run time
            self._watch_options(self.config),
            models={name: extractor.model_id for name, extractor in self.loaded.extractors.items()},
            roots=lambda: self.allowed_roots() or None,
        )
        self.watcher.start()
        self.framing = FramingChecker(self.catalog, self.allowed_roots() or None, self.thumbnails, self.limits)
        self.duplicate_finder = duplicates.DuplicateFinder(self.catalog, checker=self.framing.scores)
        self.switcher = Switcher(self, self.changes, float(self.change_overrides.get("pace", 0.0)))
        self.switcher.start()
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
        if self.switcher is not None:
            self.switcher.stop()
        if self.watcher is not None:
            self.watcher.stop()
        if self.duplicate_finder is not None:
            self.duplicate_finder.close()
        self.backgrounds.close()
        self._stop.set()
        if self._worker is not None:
            self._worker.join(timeout=60)
        if self.pipeline is not None:
            self.pipeline.close()
        for index in self.indexes.values():
            index.close()
        if self.thumbnails is not None:
            self.thumbnails.close()
        if self.catalog is not None:
            self.catalog.close()

    # -- paths -------------------------------------------------------------------------

    @property
    def max_upload_bytes(self) -> int:
        return int(self.config.server.max_upload_mb * 1024 * 1024)

    def allowed_roots(self) -> list[str]:
        return self.config.allowed_roots

    def canonical(self, path: str) -> str:
        """A checked path as a scan names the file (``folders.canonical_path``)."""
        return canonical_path(path, self.config.root_pairs())

    def check_path(self, raw: str) -> str:
        """A request's path, normalised; ``Invalid`` or ``Refused`` when it is not usable."""
        if "\x00" in raw:
            raise Invalid("path contains a NUL character")
        if not os.path.isabs(raw):
            raise Invalid(f"path must be absolute, not {raw!r}")
        path = normalise_path(raw)
        if leads_outside(path, self.allowed_roots()):
            raise Refused(
                f"{path} is outside the watched folders and server.allowed_roots",
                reason=Reason.OUTSIDE_ROOTS,
                image=path,
            )
        return path

    # -- work ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _slow_slot(self) -> Iterator[None]:
        """One of the ``slow_slots``, or ``Busy`` at once when all are taken."""
        if not self._slow_work.acquire(blocking=False):
            raise Busy(f"busy: {self.slow_slots} searches that embed and file adds are in progress; try again shortly")
        try:
            yield
        finally:
            self._slow_work.release()

    def _intake(self) -> Intake:
        assert self.intake is not None
        return self.intake

    def add_file(self, path: str, timeout: float = ADD_FILE_TIMEOUT) -> Added:
        """Index one file now (ahead of queued work) and say what happened to it (``Intake.add_file``)."""
        with self._slow_slot():
            return self._intake().add_file(path, timeout)

    def add_folder(self, path: str, wait: float = 0.25) -> Job:
        """Walk a folder in the background and queue its images; returns at once."""
        watch = self.config.watch
        return self._intake().add_folder(path, watch.extensions, watch.recursive, wait)

    def remove(self, path: str) -> int:
        """Forget a file or folder; how many catalogue entries went (``Intake.remove``)."""
        return self._intake().remove(path)

    # -- folders watched at run time (``watching``) ----------------------------------------

    def folders(self) -> FolderList:
        """``GET /folders``: every watched folder (the config's and those added), its state and counts."""
        return self.watching.folders()

    def watch_folder(self, path: str) -> tuple[int, Watched]:
        """Watch a folder from now on and index it now; 200 when watched already, else 201."""
        return self.watching.watch(path)

    def unwatch_folder(self, path: str) -> Unwatched:
        """Stop watching a folder added at run time and forget its pictures (the files stay)."""
        return self.watching.unwatch(path)

    def browse(self, path: str | None) -> Browse:
        """The sub-folders of a folder inside the allowed roots (without one: the roots)."""
        return self.watching.browse(path)

    def rebuild(self, extractor: str | None = None) -> Rebuilding:
        names = [self._extractor(extractor).name] if extractor else list(self.indexes)
        for name in names:
            self.indexes[name].rebuild(wait=False)
        return {"rebuilding": names}

    # -- search ----------------------------------------------------------------------------

    def _extractor(self, name: str | None) -> Extractor:
        """The running extractor named (None: the default); ``Invalid`` when it is not running."""
        assert self.loaded is not None
        return run.choose_extractor(self.loaded.extractors, self.loaded.default, name)

    def search(self, request: SearchRequest, what: Query) -> SearchAnswer:
        """The one search entry point (``search.run``): a path, an upload, a text or a combined query.

        A search that runs a model takes one of the slow slots (``Busy`` when all are taken).
        """
        assert self.catalog is not None and self.loaded is not None
        with self.swap_lock:  # one model's extractor and index, never one of each (``model_switch``)
            extractors, indexes, default = dict(self.loaded.extractors), dict(self.indexes), self.loaded.default
        searcher = run.Searcher(
            catalog=self.catalog,
            extractors=extractors,
            default=default,
            index=indexes.__getitem__,
            limits=self.limits,
            roots=self.allowed_roots() or None,
            check_path=self.check_path,
            max_upload_bytes=self.max_upload_bytes,
            slot=self._slow_slot,
            backgrounds=self.backgrounds,
            framing=self.framing,
            copy_floor=lambda name: float(self.config.extractor(name).duplicate_threshold),
        )
        return run.search(searcher, request, what)

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
        keep_in: str | None = None,
    ) -> DuplicatesAnswer:
        """``/duplicates``: a page of groups (``state`` "ready"), or the progress while the first join runs."""
        chosen = self._extractor(extractor)
        assert self.catalog is not None and self.duplicate_finder is not None and self.framing is not None
        folder, keep_in = (self._folder(f) if f is not None else None for f in (folder, keep_in))
        settings = self.config.extractor(chosen.name)
        if threshold is None:
            threshold = float(settings.similar_threshold)
        index = self.indexes[chosen.name]
        mode = lambda: str(index.stats()["mode"])  # noqa: E731
        join = lambda rows, n: query_many(index, rows, n, duplicates.JOIN_SEARCH_K)  # noqa: E731
        floor = float(settings.duplicate_threshold)
        source = duplicates.Source(self.catalog, chosen.model_id, chosen.dim, mode, join, floor)
        rules = self.config.duplicates
        prefer = tuple(normalise_path(os.path.expanduser(p)) for p in rules.prefer)
        keeping = duplicate_page.Keeping(rules.keep_rules, prefer, keep_in)
        return duplicate_page.answer(
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
            keeping,
        )

    def _folder(self, raw: str) -> str:
        """A folder a request names, inside the allowed roots (NotFound: not a folder)."""
        folder = self.check_path(raw)
        if not os.path.isdir(folder):
            raise NotFound(f"{folder} is not a folder", image=folder)
        return folder

    def resolve_duplicates(self, groups: list[Group], action: str, to: str | None, dry_run: bool) -> Resolved:
        """``POST /duplicates/resolve``: trash, move or link the others of each group (``tidying``)."""
        return self.tidying.resolve(groups, action, to, dry_run)

    def undo_resolution(self, rid: int) -> UndoAnswer:
        """``POST /duplicates/undo``: put a resolution's files back and index them again."""
        return self.tidying.undo(rid)

    def resolutions(self) -> ResolutionList:
        """``GET /duplicates/resolutions``: the latest resolutions, newest first."""
        return self.tidying.resolutions()

    # -- thumbnails and originals ----------------------------------------------------------------

    def thumbnail(self, path: str) -> Thumbnail:
        """The thumbnail of a catalogued file: stored, or made now from the file (one decode)."""
        assert self.catalog is not None and self.thumbnails is not None
        roots = self.allowed_roots() or None
        return find_thumbnail(self.catalog, self.thumbnails, path, self.limits, roots, self._slow_slot)

    def original(self, path: str) -> tuple[BinaryIO, int, str]:
        """An indexed file opened to be sent as it is: (file, size, content type)."""
        assert self.catalog is not None
        return open_original(self.catalog, path, self.limits, self.allowed_roots() or None)

    # -- reload and status --------------------------------------------------------------------

    def apply_config(self, new: Config) -> None:
        """Take a reloaded config: folders, thresholds, limits, access and log level change live
        (``reload``); what only a restart changes keeps its running value, with a warning."""
        keep_restart_only(new, self.config)
        self.config = new
        new.resolve_roots()
        self.limits = ImageLimits.from_config(new.images)
        if self.framing is not None:  # the pixel check of searches and duplicates reads files as /add does
            self.framing.roots, self.framing.limits = self.allowed_roots() or None, self.limits
        apply_live(new, self.limits, self.pipeline, self.thumbnails, self.indexes.values())
        self.reload_watch(new)
        log.info("configuration reloaded from %s", new.source or "defaults")

    def _watch_options(self, config: Config) -> WatchOptions:
        return WatchOptions.from_config(config.watch, **self.watch_overrides)

    def reload_watch(self, config: Config) -> None:
        """Watch the folders and use the [watch] settings of a reloaded config."""
        if self.watcher is not None:
            self.watching.apply(config, self._watch_options(config))  # the added folders stay watched

    def health(self) -> Health:
        """``/health``'s answer once ready: ok, or degraded with the reason (searches still work)."""
        return health_answer(self.pipeline, self.loaded, self.changes)

    def healthy(self) -> bool:
        """False when the indexer thread has died (the watchdog then stops being fed)."""
        return self._worker is None or self._worker.is_alive() or self._stop.is_set()

    def status_line(self) -> str:
        """One line for systemd's STATUS=: progress while indexing, else the size."""
        line, self._burst_base = status_line(self, self._burst_base)
        return line

    def stats(self) -> dict[str, Any]:
        """``/stats``' answer (``reports.stats_answer``)."""
        return stats_answer(self)
