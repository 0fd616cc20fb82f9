"""Watch the configured folders: one observer per folder, reconcile scans, folder health.

Events from each folder's observer (``observers``) are routed by ``event_router.EventRouter``:
written files wait in the ``settling.Settler`` until complete, deletions and renames
become removals and moves. A reconcile scan at start, every ``rescan_seconds`` and after
lost events compares each folder with the catalogue by size and mtime only
(``scans.Scanner``, with ``folders.plan_folder``; no image is opened). A folder that
vanishes, becomes unreadable, or turns up empty while the catalogue holds files below it
(an unmounted disk, a share gone) deletes nothing: its files are marked offline (kept, not
searchable) and come back, without re-embedding, when it returns. A folder's record and
its ``/stats`` entry are ``watched``'s.

Each folder's state, as ``/stats`` shows it, and what moves it. The control thread makes
every move; observer and scanner threads only leave it a note (``trouble``,
``check_now``, ``offline_wanted``):

========  ===========================================================  ================
from      when                                                         to
========  ===========================================================  ================
starting  usable, and not empty while the catalogue holds files below   watching/polling
starting  missing, unreadable, or empty while the catalogue holds      offline
          files below it
watching  inotify runs out of watches or overflows (``trouble``)       polling
polling   the same again (``trouble``): rescanned                      polling
watching  the root is gone, unreadable, replaced by another folder,    offline
polling   or found without its images by a scan
offline   back, usable, with its images                                watching/polling
watching  the watch settings change on reload (``restart``); an        starting
polling   offline folder stays offline
========  ===========================================================  ================

Every change of observer bumps the folder's ``generation``, so events from a replaced
observer are dropped. The watcher reads the catalogue and never writes it; data flows one
way: watcher -> WorkQueue -> Pipeline -> catalogue -> index.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence

from watchdog.events import FileSystemEvent
from watchdog.observers.api import BaseObserver

from ..store.catalog import Catalog
from ..store.rows import FileState
from .event_router import EventRouter
from .folders import probe_folder, walk_images
from .observers import ObserverKind, start_observer, stop_observer
from .scans import Scanner
from .settling import Settler, look
from .watched import Folder, FolderState, FolderStatus, WatchOptions, normalised_roots, without_images
from .workqueue import Intent, WorkQueue

__all__ = ["FolderState", "Watcher"]  # FolderState: the API (api.app, api.models.stats) still reads it here

log = logging.getLogger("imgsearchd.ingest.watcher")


class Watcher:
    """Keeps the work queue told about every change in the watched folders.

    ``start`` returns at once: folders come up (observer, then a reconcile scan) on the
    watcher's own threads. ``configure`` changes folders and options at run time;
    ``status`` is the ``watch`` list of ``/stats``.
    """

    def __init__(
        self,
        queue: WorkQueue,
        catalog: Catalog,
        folders: Iterable[str | os.PathLike[str]],
        options: WatchOptions = WatchOptions(),
        models: dict[str, str] | None = None,
        roots: Callable[[], Sequence[str] | None] | None = None,
    ) -> None:
        self.queue = queue
        self.catalog = catalog
        self.models = dict(models or {})
        allowed_roots = roots or (lambda: None)  # real paths files must lie in; links out are skipped
        self._cond = threading.Condition()  # guards everything below; never held while an observer stops
        self._folders: dict[str, Folder] = {}
        for root in normalised_roots(folders):
            self._folders[root] = Folder(root)
        self._settler = Settler(options.debounce_seconds, options.settle_seconds)
        self._router = EventRouter(self._settler, queue, options.extensions, options.recursive)
        self.options = options
        self._scans = Scanner(
            self._cond,
            lambda root: self._folders.get(root),  # the dict is replaced on reload
            lambda: self.options,
            self._kick,
            catalog,
            self.models,
            allowed_roots,
            (self._settler, self._router, queue),
        )
        self._retired: list[Folder] = []  # removed by a reload; the control thread stops them
        self._urgent = False
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    @property
    def options(self) -> WatchOptions:
        return self._options

    @options.setter
    def options(self, options: WatchOptions) -> None:
        """Use these options from now on (the settler and the event router follow)."""
        self._options = options
        self._settler.debounce_seconds, self._settler.settle_seconds = options.debounce_seconds, options.settle_seconds
        self._router.extensions, self._router.recursive = options.extensions, options.recursive

    def use_model(self, name: str, model_id: str) -> None:
        """Scans mark files lacking this model's vector from now on (a model change's switch)."""
        with self._cond:
            self.models[name] = model_id  # the scanner holds this same dict

    # -- life cycle

    def start(self) -> None:
        """Start the control and scanner threads; folders come up on them."""
        if self._threads:
            return
        threads: tuple[tuple[Callable[[], None], str], ...] = (
            (self._control_loop, "imgsearchd-watcher"),
            (lambda: self._scans.loop(self._stop), "imgsearchd-watch-scan"),
        )
        for target, name in threads:
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self) -> None:
        """Stop every observer and the watcher's threads; queued work stays queued."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=30)
        self._threads = []
        with self._cond:
            folders = [*self._folders.values(), *self._retired]
            self._retired = []
        for folder in folders:
            self._stop_observer(folder)

    def configure(self, folders: Iterable[str | os.PathLike[str]], options: WatchOptions | None = None) -> None:
        """Watch these folders with these options from now on (a config reload); returns at once.

        A folder no longer listed stops being watched; its files stay in the catalogue.
        Changed options restart every folder (new observer, reconcile scan).
        """
        roots = normalised_roots(folders)
        with self._cond:
            options = options or self.options
            restart = options != self.options
            self.options = options
            old = self._folders
            self._folders = {root: old.get(root) or Folder(root) for root in roots}
            for root, folder in old.items():
                if root in self._folders:
                    folder.restart = folder.restart or restart
                    continue
                folder.generation += 1  # its events are dropped from now on
                self._settler.forget_under(root)
                self._scans.forget(root)
                self._retired.append(folder)
                log.info("stopped watching %s; its files stay in the catalogue (forget them with /remove)", root)
            for root in roots:
                if root not in old:
                    log.info("now also watching %s", root)
            if restart and old:
                log.info("watch settings changed: restarting the watch on every folder")
            self._kick_locked()

    # -- reading

    def status(self) -> list[FolderStatus]:
        """One entry per folder, in configuration order, for ``/stats``."""
        with self._cond:
            return [
                folder.status(self._settler.count_under(folder.root), self._scans.requested(folder.root))
                for folder in self._folders.values()
            ]

    def idle(self) -> bool:
        """True when no file is settling, no scan is due or running and every folder is up."""
        with self._cond:
            return (
                not self._settler
                and not self._scans
                and not self._retired
                and all(folder.settled for folder in self._folders.values())
            )

    # -- events (observer threads)

    def _on_event(self, root: str, generation: int, event: FileSystemEvent, src: str, dest: str) -> None:
        """Turn one event into pending writes or queued work; ``src``/``dest`` are under ``root``."""
        with self._cond:
            folder = self._folders.get(root)
            if folder is None or folder.generation != generation:
                return  # from an observer replaced or stopped since
            folder.events += 1
            pending = len(self._settler)
            if self._router.route(root, event, src, dest):
                folder.check_now = True  # the root itself went: offline, never a deletion
                self._kick_locked()
            if len(self._settler) > pending:
                self._cond.notify_all()  # the control thread now wakes for the debounce

    # -- the control thread: settling files, folder health, observers

    def _kick(self) -> None:
        with self._cond:
            self._kick_locked()

    def _kick_locked(self) -> None:
        self._urgent = True
        self._cond.notify_all()

    def _report(self, root: str, generation: int, why: str) -> None:
        """An observer thread ran into trouble: the control thread will fall back and rescan."""
        with self._cond:
            folder = self._folders.get(root)
            if folder is not None and folder.generation == generation and folder.trouble is None:
                folder.trouble = why
                self._kick_locked()

    def _control_loop(self) -> None:
        next_check = 0.0
        while not self._stop.is_set():
            try:
                self._settle(time.monotonic())
                with self._cond:
                    urgent, self._urgent = self._urgent, False
                if urgent or time.monotonic() >= next_check:
                    next_check = time.monotonic() + self.options.check_seconds
                    self._check_folders()
            except Exception:  # the watcher must outlive any one bad moment
                log.exception("watcher step failed; retrying")
                next_check = time.monotonic() + self.options.check_seconds
            with self._cond:
                if self._stop.is_set() or self._urgent:
                    continue
                timeout = next_check - time.monotonic()
                if self._settler:
                    timeout = min(timeout, self._settler.wait_hint)
                self._cond.wait(max(0.0, timeout))

    def _settle(self, now: float) -> None:
        """Queue the pending files that are complete and quiet; look at the others' size and mtime."""
        with self._cond:
            due = self._settler.due(now)
        if not due:
            return
        looked = look(due)
        with self._cond:
            ready = self._settler.decide(due, looked, now)
            if ready:  # under the lock, so that idle() never sees a file in neither place
                self.queue.put_many(ready, Intent.ADD)
            if not self._settler:
                self._cond.notify_all()

    def _check_folders(self) -> None:
        """Bring folders up, take them offline and back, fall back to polling, start due scans."""
        with self._cond:
            folders = list(self._folders.values())
            retired, self._retired = self._retired, []
        for folder in retired:
            self._stop_observer(folder)
        now = time.monotonic()
        for folder in folders:
            if self._stop.is_set():
                return
            with self._cond:
                if self._folders.get(folder.root) is not folder:
                    continue  # removed by a reload meanwhile
                folder.check_now = False
                trouble, folder.trouble = folder.trouble, None
                unfound, folder.offline_wanted = folder.offline_wanted, None
                restart, folder.restart = folder.restart, False
            if restart and folder.state != FolderState.STARTING:
                self._restart(folder)
            identity, problem = probe_folder(folder.root)
            if folder.state in (FolderState.STARTING, FolderState.OFFLINE):
                self._try_online(folder, identity, problem)
            elif problem is not None or unfound is not None:
                self._go_offline(folder, problem or unfound or "")
            elif identity != folder.identity:
                self._go_offline(folder, "replaced by another folder (a disk mounted or unmounted there?)")
                self._try_online(folder, *probe_folder(folder.root))
            elif trouble is not None:
                self._fall_back(folder, trouble)
            elif self.options.rescan_seconds > 0 and now >= folder.next_scan:
                with self._cond:
                    self._scans.request(folder)

    def _restart(self, folder: Folder) -> None:
        """The watch settings changed: stop the observer; the folder starts again (offline stays offline)."""
        self._stop_observer(folder)
        with self._cond:
            folder.generation += 1
            folder.fallback = None
            if folder.state != FolderState.OFFLINE:
                folder.state = FolderState.STARTING

    def _try_online(self, folder: Folder, identity: tuple[int, int] | None, problem: str | None) -> None:
        """Start watching a folder that is starting or offline, if it is usable and has its images."""
        if problem is None:
            problem = self._looks_unmounted(folder.root)
        if problem is not None:
            if folder.state == FolderState.STARTING:
                self._go_offline(folder, problem)
            elif folder.reason != problem:
                log.warning("watched folder %s is still offline: %s", folder.root, problem)
                with self._cond:
                    folder.reason = problem
            return
        was_offline = folder.state == FolderState.OFFLINE
        try:
            observer, kind, reason = self._start_observer(folder)
        except OSError as exc:  # it went while we started watching it
            self._go_offline(folder, f"unreadable ({exc.strerror or exc})")
            return
        with self._cond:
            folder.observer, folder.kind, folder.identity = observer, kind, identity
            folder.state = FolderState.POLLING if kind == ObserverKind.POLLING else FolderState.WATCHING
            folder.reason, folder.since = reason, time.time()
            self._scans.request(folder)
        if was_offline:
            log.warning(
                "watched folder %s is back (%s): its offline files become searchable again; rescanning it for changes",
                folder.root,
                kind,
            )
        else:
            log.info("watching %s (%s%s)", folder.root, kind, f": {reason}" if reason else "")

    def _looks_unmounted(self, root: str) -> str | None:
        """Why a folder without a single image, while the catalogue holds files below it, is offline."""
        if next(walk_images(root, self.options.extensions, self.options.recursive), None) is not None:
            return None
        held = self.catalog.count_under(root)
        return without_images(held) if held else None

    def _go_offline(self, folder: Folder, why: str) -> None:
        """Stop watching a folder that went as a whole; its files are kept, marked offline."""
        self._stop_observer(folder)
        count = self.catalog.count_under(folder.root, (FileState.INDEXED,))
        with self._cond:
            folder.generation += 1
            folder.state, folder.reason, folder.since, folder.kind = FolderState.OFFLINE, why, time.time(), None
            folder.identity = None
            self._settler.forget_under(folder.root)
            self._scans.forget(folder.root)
            self.queue.put_offline(folder.root)
        log.warning(
            "watched folder %s is %s: its %d indexed files are kept but marked offline "
            "(not searchable); nothing is deleted; waiting for it to come back",
            folder.root,
            why,
            count,
        )

    def _fall_back(self, folder: Folder, why: str) -> None:
        if folder.kind == ObserverKind.POLLING:
            log.warning("%s: %s; rescanning it", folder.root, why)
            with self._cond:
                self._scans.request(folder)
            return
        log.warning(
            "%s: %s; polling it every %.0f s instead and rescanning it so no change is missed",
            folder.root,
            why,
            self.options.poll_seconds,
        )
        self._stop_observer(folder)
        with self._cond:
            folder.fallback = why
        try:
            observer, kind, reason = self._start_observer(folder)
        except OSError as exc:
            self._go_offline(folder, f"unreadable ({exc.strerror or exc})")
            return
        with self._cond:
            folder.observer, folder.kind = observer, kind
            folder.state, folder.reason, folder.since = FolderState.POLLING, reason, time.time()
            self._scans.request(folder)

    def _start_observer(self, folder: Folder) -> tuple[BaseObserver, ObserverKind, str | None]:
        """A running observer for the folder: inotify if it can, else polling; with the reason."""
        with self._cond:
            folder.generation += 1
            generation = folder.generation
            options, fallback = self.options, folder.fallback
        forced = "polling forced by the settings" if options.force_polling else None
        root = folder.root

        def inotify_failed(why: str) -> None:
            with self._cond:
                folder.fallback = why  # poll this folder from now on
                folder.trouble = None  # reported by the attempt that just failed: handled here

        return start_observer(
            root,
            lambda event, src, dest: self._on_event(root, generation, event, src, dest),
            lambda why: self._report(root, generation, why),
            recursive=options.recursive,
            poll_seconds=options.poll_seconds,
            polling_reason=fallback or forced,
            on_fallback=inotify_failed,
        )

    def _stop_observer(self, folder: Folder) -> None:
        with self._cond:
            observer, folder.observer = folder.observer, None
        if observer is not None:
            stop_observer(observer)
