"""Watch the configured folders and turn file-system changes into queued work.

One watchdog observer per folder: inotify on Linux (recursive by default), the
platform's own elsewhere, polling where inotify runs out of watches, overflows its
event queue or is not available. Events become queue intents:

* written files (created, modified, closed) are debounced per path and queued as
  adds only once complete: closed after writing (Linux), moved into place, or with
  size and mtime unchanged for ``settle_seconds``; so a burst of writes is embedded
  once and a half-copied file is never read;
* deletions become removals, renames become moves (ids and vectors are kept), and a
  move across the edge of the watched folders an add or a removal; a folder's move or
  deletion applies to every file below it;
* hidden and temporary names (``.part``, ``.tmp``, dotfiles...) are ignored until they
  are renamed to a real name.

A reconcile scan at start, every ``rescan_seconds``, and after any lost events
compares each folder with the catalogue by size and mtime only (no image is opened).

A watched folder that vanishes, becomes unreadable, or turns up empty while the
catalogue holds files below it (an unmounted disk, a network share gone) deletes
nothing: its files are marked offline (kept, not searchable) and come back, without
re-embedding, when it returns.

Data flows one way: watcher -> WorkQueue -> Indexer -> catalogue -> index. The
watcher reads the catalogue to compare and never writes it.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from watchdog.events import (
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import BaseObserver
from watchdog.observers.polling import PollingObserver

from .catalog import Catalog, is_under, normalise_path
from .indexer import ADD, REMOVE, RESTORE, WorkQueue, is_hidden_or_temporary, plan_folder, walk_images

log = logging.getLogger("imgsearchd.watcher")

# Folder states, as /stats shows them.
STARTING = "starting"
WATCHING = "watching"
POLLING = "polling"
OFFLINE = "offline"

# The events we act on. Not subscribing to opens and read-only closes keeps our own
# reads (and any photo viewer's) from waking the watcher.
EVENTS: list[type[FileSystemEvent]] = [
    FileCreatedEvent, FileModifiedEvent, FileAttribEvent, FileClosedEvent, FileDeletedEvent,
    FileMovedEvent, DirDeletedEvent, DirMovedEvent,
]

try:  # inotify exists on Linux only
    from watchdog.observers.inotify import InotifyFullEmitter
    from watchdog.observers.inotify_c import InotifyEvent, InotifyFD
except (ImportError, OSError, AttributeError):  # pragma: no cover - not Linux
    InotifyFD = None  # type: ignore[assignment,misc]


@dataclass(frozen=True)
class WatchOptions:
    """How folders are watched; ``from_config`` reads the ``[watch]`` section."""

    recursive: bool = True
    extensions: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")
    rescan_seconds: float = 3600.0  # 0: only at start and after lost events
    debounce_seconds: float = 0.25  # quiet time after the last event before a file is queued
    settle_seconds: float = 2.0  # a file never seen closed must keep its size and mtime this long
    poll_seconds: float = 5.0  # interval of the polling fallback
    check_seconds: float = 1.0  # how often each folder's root is checked (vanished, unmounted)
    force_polling: bool = False  # poll every folder, never inotify

    @classmethod
    def from_config(cls, watch: dict[str, Any], **overrides: Any) -> WatchOptions:
        return cls(
            recursive=bool(watch["recursive"]),
            extensions=tuple(e.lower() for e in watch["extensions"]),
            rescan_seconds=float(watch["rescan_seconds"]),
            **{"settle_seconds": float(watch["settle_seconds"]), "poll_seconds": float(watch["poll_seconds"]),
               "force_polling": bool(watch["force_polling"]), **overrides},
        )


# -- inotify that reports its troubles -------------------------------------------

Trouble = Callable[[str], None]

if InotifyFD is not None:

    class _ReportingInotifyFD(InotifyFD):
        """watchdog's inotify reader, also reporting what watchdog only logs or swallows:
        a watch that cannot be added for lack of inotify watches, and a queue overflow."""

        def __init__(self, on_trouble: Trouble) -> None:
            super().__init__()
            self.on_trouble = on_trouble

        def add_callback(self, path: bytes, mask: Any, callback: Any, id_: Any) -> Any:
            try:
                return super().add_callback(path, mask, callback, id_)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    self.on_trouble(f"out of inotify watches at {os.fsdecode(path)} "
                                    "(raise fs.inotify.max_user_watches)")
                raise  # watchdog ignores it for sub-folders, which is why we report it

        def handle_event(self, event: InotifyEvent) -> None:
            if event.is_queue_overflow:
                self.on_trouble("the inotify event queue overflowed and events were lost "
                                "(raise fs.inotify.max_queued_events)")
            super().handle_event(event)

    class _InotifyObserver(BaseObserver):
        """An inotify observer of its own inotify instance, with unpaired moves reported as
        moves (``src`` or ``dest`` empty), so a move into the folder is known complete."""

        def __init__(self, on_trouble: Trouble, timeout: float = 1.0) -> None:
            self._fd = _ReportingInotifyFD(on_trouble)
            self._fd.start()
            super().__init__(InotifyFullEmitter, timeout=timeout, inotify_fd=self._fd)

        def on_thread_stop(self) -> None:
            super().on_thread_stop()
            self._fd.stop()
            if self._fd.is_alive():
                self._fd.join()


def _inotify_error(exc: OSError) -> str:
    if exc.errno == errno.ENOSPC:
        return "out of inotify watches (raise fs.inotify.max_user_watches)"
    if exc.errno == errno.EMFILE:
        return "out of inotify instances (raise fs.inotify.max_user_instances)"
    return f"inotify failed: {exc.strerror or exc}"


# -- one folder ---------------------------------------------------------------------


@dataclass
class _Pending:
    """A written file waiting to be complete."""

    last_event: float
    complete: bool  # closed after writing or moved into place since the last write
    seen: tuple[int, int] | None = None  # (size, mtime_ns) at the last look
    stable_since: float = 0.0
    next_look: float = 0.0


@dataclass
class _Folder:
    root: str
    state: str = STARTING
    reason: str | None = None
    since: float = field(default_factory=time.time)
    observer: BaseObserver | None = None
    kind: str | None = None  # "inotify", "polling" or "native"
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
    last_scan: dict[str, Any] | None = None


def _probe(root: str) -> tuple[tuple[int, int] | None, str | None]:
    """((st_dev, st_ino), None) for a usable folder, else (None, why not)."""
    try:
        st = os.stat(root)
        if not stat.S_ISDIR(st.st_mode):
            return None, "not a folder"
        if not os.access(root, os.R_OK | os.X_OK):
            return None, "unreadable (permission denied)"
        with os.scandir(root) as entries:
            next(entries, None)
    except FileNotFoundError:
        return None, "missing"
    except OSError as exc:
        return None, f"unreadable ({exc.strerror or exc})"
    return (st.st_dev, st.st_ino), None


def _without_images(held: int) -> str:
    return (f"without images while the catalogue holds {held} files below it (an unmounted disk?); "
            "if they are really gone, forget them with /remove")


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


class _Handler(FileSystemEventHandler):
    """Hands one observer's events to the watcher, tagged with the folder and generation.

    The observer watches the folder's real path (inotify does not follow a symbolic
    link at the root); event paths are put back under the configured one.
    """

    def __init__(self, watcher: Watcher, root: str, watched: str, generation: int) -> None:
        self.watcher, self.root, self.watched, self.generation = watcher, root, watched, generation

    def _path(self, raw: bytes | str) -> str:
        path = os.fsdecode(raw)
        if path and self.watched != self.root and is_under(path, self.watched):
            path = self.root + path[len(self.watched):]
        return path

    def dispatch(self, event: FileSystemEvent) -> None:
        try:
            self.watcher._on_event(self.root, self.generation, event,
                                   self._path(event.src_path), self._path(event.dest_path))
        except Exception:  # an observer thread must survive anything
            log.exception("could not handle %r", event)


# -- the watcher ------------------------------------------------------------------------


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
    ) -> None:
        self.queue = queue
        self.catalog = catalog
        self.options = options
        self.models = dict(models or {})
        self._cond = threading.Condition()  # guards everything below; never held while an observer stops
        self._folders: dict[str, _Folder] = {}
        for root in _roots(folders):
            self._folders[root] = _Folder(root)
        self._pending: dict[str, _Pending] = {}
        self._scan_requests: list[str] = []
        self._retired: list[_Folder] = []  # removed by a reload; the control thread stops them
        self._urgent = False
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # -- life cycle

    def start(self) -> None:
        """Start the control and scanner threads; folders come up on them."""
        if self._threads:
            return
        for target, name in ((self._control_loop, "imgsearchd-watcher"), (self._scan_loop, "imgsearchd-watch-scan")):
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
        roots = _roots(folders)
        with self._cond:
            options = options or self.options
            restart = options != self.options
            self.options = options
            old = self._folders
            self._folders = {root: old.get(root) or _Folder(root) for root in roots}
            for root, folder in old.items():
                if root in self._folders:
                    folder.restart = folder.restart or restart
                    continue
                folder.generation += 1  # its events are dropped from now on
                self._forget_pending(root)
                if root in self._scan_requests:
                    self._scan_requests.remove(root)
                self._retired.append(folder)
                log.info("stopped watching %s; its files stay in the catalogue (forget them with /remove)", root)
            for root in roots:
                if root not in old:
                    log.info("now also watching %s", root)
            if restart and old:
                log.info("watch settings changed: restarting the watch on every folder")
            self._kick_locked()

    def rescan(self, root: str | None = None) -> None:
        """Ask for a reconcile scan of one folder, or of all."""
        with self._cond:
            for folder in self._folders.values():
                if root is None or folder.root == normalise_path(root):
                    self._request_scan(folder)

    # -- reading

    def status(self) -> list[dict[str, Any]]:
        """One entry per folder, in configuration order, for ``/stats``."""
        with self._cond:
            out = []
            for folder in self._folders.values():
                out.append({
                    "folder": folder.root,
                    "state": folder.state,
                    "observer": folder.kind,
                    "reason": folder.reason,
                    "since": _iso(folder.since),
                    "events": folder.events,
                    "settling": sum(1 for p in self._pending if is_under(p, folder.root)),
                    "scanning": folder.scanning or folder.root in self._scan_requests,
                    "last_scan": dict(folder.last_scan) if folder.last_scan else None,
                })
            return out

    def idle(self) -> bool:
        """True when no file is settling, no scan is due or running and every folder is up."""
        with self._cond:
            return not self._pending and not self._scan_requests and not self._retired and all(
                not f.scanning and f.state != STARTING and not f.check_now and not f.restart
                and f.trouble is None and f.offline_wanted is None
                for f in self._folders.values()
            )

    # -- events (observer threads)

    def _on_event(self, root: str, generation: int, event: FileSystemEvent, src: str, dest: str) -> None:
        """Turn one event into pending writes or queued work; ``src``/``dest`` are under ``root``."""
        with self._cond:
            folder = self._folders.get(root)
            if folder is None or folder.generation != generation:
                return  # from an observer replaced or stopped since
            folder.events += 1
            if isinstance(event, (DirDeletedEvent, DirMovedEvent)) and src == root:
                folder.check_now = True  # the root itself went: offline, never a deletion
                self._kick_locked()
            elif isinstance(event, FileClosedEvent):
                self._touch(root, src, complete=True)
            elif isinstance(event, FileCreatedEvent):
                self._touch(root, src, complete=event.is_synthetic)  # synthetic: inside a folder moved in
            elif isinstance(event, FileModifiedEvent):
                self._touch(root, src, complete=False)
            elif isinstance(event, FileAttribEvent):
                self._touch(root, src, complete=None)
            elif isinstance(event, FileDeletedEvent):
                self._pending.pop(src, None)
                if self._wanted(root, src):
                    self.queue.put(src, REMOVE)
            elif isinstance(event, DirDeletedEvent):
                self._forget_pending(src)
                if self._visible(root, src):
                    self.queue.put(src, REMOVE)
            elif isinstance(event, FileMovedEvent):
                self._file_moved(root, src, dest, event.is_synthetic)
            elif isinstance(event, DirMovedEvent) and not event.is_synthetic:
                self._folder_moved(root, src, dest)

    def _file_moved(self, root: str, src: str, dest: str, synthetic: bool) -> None:
        entry = self._pending.pop(src, None) if src else None
        src_ok = bool(src) and self._wanted(root, src)
        dest_ok = bool(dest) and self._wanted(root, dest)
        if not synthetic:  # synthetic: inside a moved folder, whose own move covers the catalogue
            if src_ok and dest_ok:
                self.queue.put_move(src, dest)
            elif src_ok:
                self.queue.put(src, REMOVE)
        if dest_ok:
            if entry is not None:  # still being written: keep waiting for it under its new name
                entry.last_event = time.monotonic()
                self._pending[dest] = entry
            else:  # renamed into place (from a temporary name, or from outside): complete
                self._touch(root, dest, complete=True)

    def _folder_moved(self, root: str, src: str, dest: str) -> None:
        src_ok = bool(src) and is_under(src, root) and self._visible(root, src)
        dest_ok = bool(dest) and is_under(dest, root) and self._visible(root, dest)
        if src_ok:
            for path in [p for p in self._pending if is_under(p, src)]:
                entry = self._pending.pop(path)
                if dest_ok:
                    self._pending[dest + path[len(src):]] = entry
        if src_ok and dest_ok:
            self.queue.put_move(src, dest)
        elif src_ok:
            self.queue.put(src, REMOVE)
        # Files inside a folder moved in arrive as their own (synthetic) events.

    def _touch(self, root: str, path: str, complete: bool | None) -> None:
        """Note a write to ``path``; ``complete`` None (an attribute change) keeps what was known."""
        if not self._wanted(root, path):
            return
        now = time.monotonic()
        entry = self._pending.get(path)
        if entry is None:
            self._pending[path] = _Pending(last_event=now, complete=complete is not False)
            self._cond.notify_all()
            return
        entry.last_event = now
        if complete is not None:
            entry.complete = complete
        entry.seen, entry.next_look = None, 0.0

    def _visible(self, root: str, path: str) -> bool:
        """Inside ``root`` with no hidden or temporary name on the way."""
        if not is_under(path, root):
            return False
        rel = os.path.relpath(path, root)
        if rel == ".":
            return True
        parts = rel.split(os.sep)
        return not any(is_hidden_or_temporary(p) for p in parts)

    def _wanted(self, root: str, path: str) -> bool:
        if not path.lower().endswith(self.options.extensions) or not self._visible(root, path):
            return False
        return self.options.recursive or os.path.dirname(path) == root

    def _forget_pending(self, root: str) -> None:
        for path in [p for p in self._pending if is_under(p, root)]:
            del self._pending[path]

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
                if self._pending:
                    timeout = min(timeout, self.options.debounce_seconds / 3)
                self._cond.wait(max(0.0, timeout))

    def _settle(self, now: float) -> None:
        """Queue the pending files that are complete and quiet; look at the others' size and mtime."""
        debounce, settle = self.options.debounce_seconds, self.options.settle_seconds
        with self._cond:
            due = [(path, entry.last_event, entry.complete) for path, entry in self._pending.items()
                   if now - entry.last_event >= debounce and (entry.complete or now >= entry.next_look)]
        if not due:
            return
        looked: dict[str, tuple[int, int] | None] = {}
        for path, _, complete in due:
            if not complete:
                try:
                    st = os.stat(path)
                    looked[path] = (st.st_size, st.st_mtime_ns)
                except FileNotFoundError:
                    looked[path] = None
                except OSError:
                    looked[path] = (-1, -1)  # let the pipeline record why it cannot be read
        ready: list[str] = []
        with self._cond:
            for path, last_event, complete in due:
                entry = self._pending.get(path)
                if entry is None or entry.last_event != last_event:
                    continue  # written again meanwhile
                if complete:
                    ready.append(path)
                    continue
                seen = looked[path]
                if seen is None:
                    del self._pending[path]  # gone: its deletion event says so
                elif seen != entry.seen:
                    entry.seen, entry.stable_since = seen, now
                    entry.next_look = now + settle / 4
                elif now - entry.stable_since >= settle:
                    ready.append(path)
                else:
                    entry.next_look = now + settle / 4
            for path in ready:
                del self._pending[path]
            if ready:  # under the lock, so that idle() never sees a file in neither place
                self.queue.put_many(ready, ADD)
            if not self._pending:
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
            if restart and folder.state != STARTING:
                self._stop_observer(folder)
                with self._cond:
                    folder.generation += 1
                    folder.fallback = None
                    if folder.state != OFFLINE:
                        folder.state = STARTING
            identity, problem = _probe(folder.root)
            if folder.state in (STARTING, OFFLINE):
                self._try_online(folder, identity, problem)
            elif problem is not None or unfound is not None:
                self._go_offline(folder, problem or unfound or "")
            elif identity != folder.identity:
                self._go_offline(folder, "replaced by another folder (a disk mounted or unmounted there?)")
                self._try_online(folder, *_probe(folder.root))
            elif trouble is not None:
                self._fall_back(folder, trouble)
            elif self.options.rescan_seconds > 0 and now >= folder.next_scan:
                with self._cond:
                    self._request_scan(folder)

    def _try_online(self, folder: _Folder, identity: tuple[int, int] | None, problem: str | None) -> None:
        """Start watching a folder that is starting or offline, if it is usable and has its images."""
        if problem is None:
            problem = self._looks_unmounted(folder.root)
        if problem is not None:
            if folder.state == STARTING:
                self._go_offline(folder, problem)
            elif folder.reason != problem:
                log.warning("watched folder %s is still offline: %s", folder.root, problem)
                with self._cond:
                    folder.reason = problem
            return
        was_offline = folder.state == OFFLINE
        try:
            observer, kind, reason = self._start_observer(folder)
        except OSError as exc:  # it went while we started watching it
            self._go_offline(folder, f"unreadable ({exc.strerror or exc})")
            return
        with self._cond:
            folder.observer, folder.kind, folder.identity = observer, kind, identity
            folder.state = POLLING if kind == "polling" else WATCHING
            folder.reason, folder.since = reason, time.time()
            self._request_scan(folder)
        if was_offline:
            log.warning("watched folder %s is back (%s): its offline files become searchable again; "
                        "rescanning it for changes", folder.root, kind)
        else:
            log.info("watching %s (%s%s)", folder.root, kind, f": {reason}" if reason else "")

    def _looks_unmounted(self, root: str) -> str | None:
        """Why a folder without a single image, while the catalogue holds files below it, is offline."""
        if next(walk_images(root, self.options.extensions, self.options.recursive), None) is not None:
            return None
        held = self.catalog.count_under(root)
        return _without_images(held) if held else None

    def _go_offline(self, folder: _Folder, why: str) -> None:
        """Stop watching a folder that went as a whole; its files are kept, marked offline."""
        self._stop_observer(folder)
        count = self.catalog.count_under(folder.root, ("indexed",))
        with self._cond:
            folder.generation += 1
            folder.state, folder.reason, folder.since, folder.kind = OFFLINE, why, time.time(), None
            folder.identity = None
            self._forget_pending(folder.root)
            if folder.root in self._scan_requests:
                self._scan_requests.remove(folder.root)
            self.queue.put_offline(folder.root)
        log.warning("watched folder %s is %s: its %d indexed files are kept but marked offline "
                    "(not searchable); nothing is deleted; waiting for it to come back", folder.root, why, count)

    def _fall_back(self, folder: _Folder, why: str) -> None:
        if folder.kind == "polling":
            log.warning("%s: %s; rescanning it", folder.root, why)
            with self._cond:
                self._request_scan(folder)
            return
        log.warning("%s: %s; polling it every %.0f s instead and rescanning it so no change is missed",
                    folder.root, why, self.options.poll_seconds)
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
            folder.state, folder.reason, folder.since = POLLING, reason, time.time()
            self._request_scan(folder)

    def _start_observer(self, folder: _Folder) -> tuple[BaseObserver, str, str | None]:
        """A running observer for the folder: inotify if it can, else polling; with the reason."""
        with self._cond:
            folder.generation += 1
            generation = folder.generation
            options, fallback = self.options, folder.fallback
        watched = os.path.realpath(folder.root)
        handler = _Handler(self, folder.root, watched, generation)
        schedule = {"recursive": options.recursive, "event_filter": EVENTS}
        if not options.force_polling and fallback is None:
            observer: BaseObserver | None = None
            try:
                if InotifyFD is not None:
                    observer = _InotifyObserver(lambda why: self._report(folder.root, generation, why))
                    kind = "inotify"
                else:  # pragma: no cover - not Linux
                    from watchdog.observers import Observer

                    observer, kind = Observer(), "native"
                observer.schedule(handler, watched, **schedule)
                observer.start()
                return observer, kind, None
            except OSError as exc:
                if observer is not None:
                    self._stop_observer_now(observer)
                fallback = _inotify_error(exc)
                with self._cond:
                    folder.fallback = fallback
                    folder.trouble = None  # reported by the attempt that just failed: handled here
                log.warning("cannot watch %s with inotify: %s; polling it every %.0f s instead",
                            folder.root, fallback, options.poll_seconds)
        poller = PollingObserver(timeout=options.poll_seconds)
        poller.schedule(handler, watched, **schedule)
        poller.start()
        return poller, "polling", fallback or "polling forced by the settings"

    def _stop_observer(self, folder: _Folder) -> None:
        with self._cond:
            observer, folder.observer = folder.observer, None
        if observer is not None:
            self._stop_observer_now(observer)

    @staticmethod
    def _stop_observer_now(observer: BaseObserver) -> None:
        try:
            observer.stop()
            if observer.is_alive():
                observer.join(timeout=10)
        except Exception:
            log.exception("could not stop a folder observer")

    # -- the scanner thread: reconcile scans

    def _request_scan(self, folder: _Folder) -> None:
        """Under the lock: queue a reconcile scan of an online folder."""
        if folder.state in (WATCHING, POLLING) and folder.root not in self._scan_requests:
            self._scan_requests.append(folder.root)
            self._cond.notify_all()

    def _scan_loop(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                while not self._scan_requests and not self._stop.is_set():
                    self._cond.wait()
                if self._stop.is_set():
                    return
                folder = self._folders.get(self._scan_requests.pop(0))
                if folder is None or folder.state not in (WATCHING, POLLING):
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
                    folder.next_scan = time.monotonic() + (self.options.rescan_seconds or float("inf"))
                    self._cond.notify_all()

    def _reconcile(self, folder: _Folder, generation: int) -> None:
        """Compare the folder with the catalogue (size and mtime) and queue the differences."""
        started = time.monotonic()
        options = self.options
        try:
            plan = plan_folder(self.catalog, folder.root, options.extensions, options.recursive, self.models,
                               on_error=lambda path, exc: log.warning("cannot read %s: %s", path, exc))
        except FileNotFoundError:
            self._kick()  # the folder went while we looked: the control thread takes it offline
            return
        identity, problem = _probe(folder.root)
        with self._cond:
            current = (self._folders.get(folder.root) is folder and folder.generation == generation
                       and folder.identity == identity and problem is None)
        if not current:
            log.info("scan of %s dropped: the folder changed while it was being scanned", folder.root)
            self._kick()
            return
        if plan.vanished and plan.found == 0:  # the control thread takes it offline; nothing is removed
            with self._cond:
                folder.offline_wanted = _without_images(len(plan.vanished))
                self._kick_locked()
            return
        fresh_after = time.time_ns() - int(options.settle_seconds * 1e9)
        ready = [path for path, mtime_ns in plan.to_add if mtime_ns < fresh_after]
        with self._cond:
            for path, mtime_ns in plan.to_add:
                if mtime_ns >= fresh_after:  # written moments ago: maybe still being written
                    self._touch(folder.root, path, complete=False)
            self.queue.put_many(plan.to_restore, RESTORE)
            self.queue.put_many(plan.vanished, REMOVE)
            self.queue.put_many(ready, ADD)
        seconds = time.monotonic() - started
        summary = {"at": _iso(time.time()), "seconds": round(seconds, 3), "found": plan.found,
                   "queued": len(plan.to_add), "restored": len(plan.to_restore), "removed": len(plan.vanished),
                   "unchanged": plan.unchanged, "unreadable": len(plan.unreadable)}
        with self._cond:
            folder.last_scan = summary
        level = logging.INFO if (plan.to_add or plan.to_restore or plan.vanished) else logging.DEBUG
        log.log(level, "scanned %s in %.2f s: %d images, %d new or changed, %d back online, %d gone, %d unchanged",
                folder.root, seconds, plan.found, len(plan.to_add), len(plan.to_restore), len(plan.vanished),
                plan.unchanged)


def _roots(folders: Iterable[str | os.PathLike[str]]) -> list[str]:
    """Normalised folder paths, each once, in order."""
    out: list[str] = []
    for folder in folders:
        root = normalise_path(Path(folder).expanduser())
        if root not in out:
            out.append(root)
    return out
