"""Reconcile scans of watched folders, one at a time, on the watcher's scanner thread.

The control thread asks for a scan of an online folder (``request``, under the watcher's
lock); the scanner compares the folder with the catalogue by size and mtime only
(``folders.plan_folder``; no image is opened) and queues the differences. It never moves a
folder's state: a folder found without its images gets a note (``offline_wanted``) for the
control thread, and a scan of a folder that changed meanwhile (``generation``, identity) is
dropped.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

from ..store.catalog import Catalog
from .event_router import EventRouter
from .folders import FolderPlan, plan_folder, probe_folder
from .settling import Settler
from .watched import Folder, WatchOptions, scan_summary, without_images
from .workqueue import Intent, WorkQueue

log = logging.getLogger("imgsearchd.ingest.watcher")


class Scanner:
    """The queue of folders to scan and the thread that scans them.

    Shares the watcher's lock (``cond``) and its settler, router and work queue; ``folder_of``
    finds a folder's current record, ``kick`` wakes the control thread.
    """

    def __init__(
        self,
        cond: threading.Condition,
        folder_of: Callable[[str], Folder | None],
        options: Callable[[], WatchOptions],
        kick: Callable[[], None],
        catalog: Catalog,
        models: dict[str, str],
        roots: Callable[[], Sequence[str] | None],
        intake: tuple[Settler, EventRouter, WorkQueue],
    ) -> None:
        self._cond = cond
        self._folder_of = folder_of
        self._options = options
        self._kick = kick
        self.catalog = catalog
        self.models = models
        self._allowed_roots = roots
        self._settler, self._router, self.queue = intake
        self._requests: list[str] = []

    # -- asked under the watcher's lock

    def request(self, folder: Folder) -> None:
        """Under the lock: queue a reconcile scan of an online folder."""
        if folder.online and folder.root not in self._requests:
            self._requests.append(folder.root)
            self._cond.notify_all()

    def forget(self, root: str) -> None:
        """Under the lock: drop a requested scan of a folder no longer watched or gone offline."""
        if root in self._requests:
            self._requests.remove(root)

    def requested(self, root: str) -> bool:
        return root in self._requests

    def __bool__(self) -> bool:
        """Whether any scan is requested and not started."""
        return bool(self._requests)

    # -- the scanner thread

    def loop(self, stop: threading.Event) -> None:
        """Scan the requested folders one at a time until ``stop`` is set."""
        while not stop.is_set():
            with self._cond:
                while not self._requests and not stop.is_set():
                    self._cond.wait()
                if stop.is_set():
                    return
                folder = self._folder_of(self._requests.pop(0))
                if folder is None or not folder.online:
                    continue
                folder.scanning = True
                generation = folder.generation
            try:
                self._reconcile(folder, generation)
            except Exception:
                log.exception("reconcile scan of %s failed; it will be retried", folder.root)
            finally:
                with self._cond:
                    folder.scanning = False
                    folder.next_scan = time.monotonic() + (self._options().rescan_seconds or float("inf"))
                    self._cond.notify_all()

    def _reconcile(self, folder: Folder, generation: int) -> None:
        """Compare the folder with the catalogue (size and mtime) and queue the differences."""
        started = time.monotonic()
        options = self._options()
        try:
            plan = plan_folder(
                self.catalog,
                folder.root,
                options.extensions,
                options.recursive,
                self.models,
                on_error=lambda path, exc: log.warning("cannot read %s: %s", path, exc),
                roots=self._allowed_roots(),
            )
        except FileNotFoundError:
            self._kick()  # the folder went while we looked: the control thread takes it offline
            return
        if not self._still_current(folder, generation):
            log.info("scan of %s dropped: the folder changed while it was being scanned", folder.root)
            self._kick()
            return
        if plan.vanished and plan.found == 0:  # the control thread takes it offline; nothing is removed
            with self._cond:
                folder.offline_wanted = without_images(len(plan.vanished))
                self._kick()
            return
        self._queue_plan(folder, plan, options)
        seconds = time.monotonic() - started
        with self._cond:
            folder.last_scan = scan_summary(plan, seconds)
        level = logging.INFO if (plan.to_add or plan.to_restore or plan.vanished) else logging.DEBUG
        log.log(
            level,
            "scanned %s in %.2f s: %d images, %d new or changed, %d back online, %d gone, %d unchanged",
            folder.root,
            seconds,
            plan.found,
            len(plan.to_add),
            len(plan.to_restore),
            len(plan.vanished),
            plan.unchanged,
        )

    def _still_current(self, folder: Folder, generation: int) -> bool:
        """Whether the folder scanned is still the one watched, unchanged since the scan began."""
        identity, problem = probe_folder(folder.root)
        with self._cond:
            return (
                self._folder_of(folder.root) is folder
                and folder.generation == generation
                and folder.identity == identity
                and problem is None
            )

    def _queue_plan(self, folder: Folder, plan: FolderPlan, options: WatchOptions) -> None:
        """Queue what the scan found; a file written moments ago settles first."""
        fresh_after = time.time_ns() - int(options.settle_seconds * 1e9)
        ready = [path for path, mtime_ns in plan.to_add if mtime_ns < fresh_after]
        with self._cond:
            pending = len(self._settler)
            for path, mtime_ns in plan.to_add:
                if mtime_ns >= fresh_after:  # written moments ago: maybe still being written
                    self._router.touch(folder.root, path, complete=False)
            self.queue.put_many(plan.to_restore, Intent.RESTORE)
            self.queue.put_many(plan.vanished, Intent.REMOVE)
            self.queue.put_many(ready, Intent.ADD)
            if len(self._settler) > pending:
                self._cond.notify_all()  # the control thread now wakes for the debounce
