"""The pipeline's idle duties: metadata for older rows, retries of failed files, pruning.

Run by ``Pipeline.run`` only when no work is queued, in its one loop, so they never race a
batch for the catalogue: the metadata fill of files catalogued before it was kept
(``fill_metadata``), failed files whose retry is due (``queue_due_retries``), and the
vectors and thumbnails no file uses any more (``prune_unused``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ..media import photo_metadata
from ..media.photo_metadata import PhotoMetadata
from ..media.thumbnails import ThumbnailStore
from ..store.catalog import Catalog
from ..store.disk_health import is_storage_error
from .folders import retry_due
from .workqueue import Intent, WorkQueue

log = logging.getLogger("imgsearchd.ingest.pipeline")


class Upkeep:
    """What the pipeline does when idle, on its catalogue (and thumbnail store)."""

    def __init__(self, catalog: Catalog, max_file_bytes: Callable[[], int], thumbnails: ThumbnailStore | None) -> None:
        self.catalog = catalog
        self.max_file_bytes = max_file_bytes  # the current cap: a reload may change it
        self.thumbnails = thumbnails
        self.metadata_left = True  # until a look finds no file catalogued without metadata
        self._metadata_filled = 0

    def fill_metadata_once(self) -> None:
        """One turn of the fill; a failure other than the disk's stops it (the loop does not
        sleep while it fills, so a fill failing each turn would spin and flood the log)."""
        try:
            self.fill_metadata()
        except Exception as exc:
            if is_storage_error(exc):
                raise
            log.exception("reading the metadata of older files failed; it is tried again at the next start")
            self.metadata_left = False

    def fill_metadata(self, batch: int = 200, budget_s: float = 0.25) -> int:
        """Read the metadata of up to ``batch`` files catalogued without it (before schema 3).

        Headers only (``photo_metadata.read_metadata_file``), a batch per idle turn of the
        loop, and no longer than ``budget_s`` (at least one file), so queued work and a stop
        wait at most that long: 200 RAW files, each read whole at 77-95 ms (bench_formats, page
        cache), would hold them 15-19 s, minutes from a disk. Returns how many rows were filled.
        Measured here (bench/bench_formats.py): 0.3-0.7 ms a JPEG whose bytes are cached (100k
        files: about a minute, plus the disk reads); a RAW is read whole (77-95 ms for 50 MB).
        """
        rows = self.catalog.without_metadata(batch)
        if not rows:
            if self._metadata_filled:
                log.info("metadata read for %d files catalogued before it was kept", self._metadata_filled)
            self.metadata_left = False
            return 0
        if not self._metadata_filled:
            left = self.catalog.count_without_metadata()
            log.info("reading capture dates and sizes of %d files catalogued without them", left)
        # A file gone or unreadable gets its catalogued mtime: every row is filled, so the
        # loop ends; the watcher or a retry deals with the file itself.
        deadline = time.monotonic() + budget_s
        read: list[tuple[int, PhotoMetadata]] = []
        for file_id, path, mtime_ns in rows:
            read.append((file_id, photo_metadata.read_metadata_file(path, mtime_ns, self.max_file_bytes())))
            if time.monotonic() >= deadline:
                break
        self.catalog.fill_metadata(read)
        self._metadata_filled += len(read)
        return len(read)

    def prune_unused(self) -> tuple[int, int]:
        """Drop the vectors and thumbnails no file has any more; returns how many of each.

        Run when idle, minutes after removals: a move seen as delete + create keeps both.
        """
        pruned = self.catalog.prune_orphan_vectors()
        store = self.thumbnails
        thumbnails = store.remove(self.catalog.unused_hashes(store.hashes())) if store is not None else 0
        if pruned or thumbnails:
            log.info("dropped %d vectors and %d thumbnails no file uses any more", pruned, thumbnails)
        return pruned, thumbnails

    def queue_due_retries(self, queue: WorkQueue) -> int:
        """Queue the failed files whose reason may have passed and whose retry time has come."""
        now = time.time()
        due = [failed.path for failed in self.catalog.failed_everywhere() if retry_due(failed, now)]
        if due:
            log.info("trying %d failed files again", len(due))
            queue.put_many(due, Intent.ADD)
        return len(due)
