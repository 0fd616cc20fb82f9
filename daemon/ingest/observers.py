"""Starting and stopping one folder's watchdog observer, with the troubles watchdog hides.

inotify on Linux (watchdog's ``InotifyFullEmitter``, so close-after-write and unpaired
moves are seen), the platform's own observer elsewhere, and polling when inotify is
out of watches or instances, or when the settings force it. An inotify instance that
later runs out of watches for a new sub-folder, or overflows its event queue, says so
through ``on_trouble``: the watcher then falls back to polling and rescans.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable
from enum import StrEnum
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

from ..paths import is_under

log = logging.getLogger("imgsearchd.ingest.watcher")

# The events we act on. Not subscribing to opens and read-only closes keeps our own
# reads (and any photo viewer's) from waking the watcher.
EVENTS: list[type[FileSystemEvent]] = [
    FileCreatedEvent,
    FileModifiedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileDeletedEvent,
    FileMovedEvent,
    DirDeletedEvent,
    DirMovedEvent,
]

Trouble = Callable[[str], None]
# (event, source path, destination path), both put back under the configured folder
EventCallback = Callable[[FileSystemEvent, str, str], None]


class ObserverKind(StrEnum):
    """How a folder is watched, as ``/stats`` shows it."""

    INOTIFY = "inotify"
    NATIVE = "native"  # the platform's own observer (not Linux)
    POLLING = "polling"


try:  # inotify exists on Linux only
    from watchdog.observers.inotify import InotifyFullEmitter
    from watchdog.observers.inotify_c import InotifyEvent, InotifyFD

    HAVE_INOTIFY = True
except (ImportError, OSError, AttributeError):  # pragma: no cover - not Linux
    HAVE_INOTIFY = False

if HAVE_INOTIFY:

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
                    self.on_trouble(
                        f"out of inotify watches at {os.fsdecode(path)} (raise fs.inotify.max_user_watches)"
                    )
                raise  # watchdog ignores it for sub-folders, which is why we report it

        def handle_event(self, event: InotifyEvent) -> None:
            if event.is_queue_overflow:
                self.on_trouble(
                    "the inotify event queue overflowed and events were lost (raise fs.inotify.max_queued_events)"
                )
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


def inotify_error(exc: OSError) -> str:
    """Why inotify could not watch a folder, with the setting that helps."""
    if exc.errno == errno.ENOSPC:
        return "out of inotify watches (raise fs.inotify.max_user_watches)"
    if exc.errno == errno.EMFILE:
        return "out of inotify instances (raise fs.inotify.max_user_instances)"
    return f"inotify failed: {exc.strerror or exc}"


class EventForwarder(FileSystemEventHandler):
    """Hands one observer's events on, with paths put back under the configured folder.

    The observer watches the folder's real path (inotify does not follow a symbolic
    link at the root); ``root`` is the folder as configured.
    """

    def __init__(self, root: str, watched: str, callback: EventCallback) -> None:
        self.root, self.watched, self.callback = root, watched, callback

    def _path(self, raw: bytes | str) -> str:
        path = os.fsdecode(raw)
        if path and self.watched != self.root and is_under(path, self.watched):
            path = self.root + path[len(self.watched) :]
        return path

    def dispatch(self, event: FileSystemEvent) -> None:
        try:
            self.callback(event, self._path(event.src_path), self._path(event.dest_path))
        except Exception:  # an observer thread must survive anything
            log.exception("could not handle %r", event)


def start_observer(
    root: str,
    callback: EventCallback,
    on_trouble: Trouble,
    *,
    recursive: bool,
    poll_seconds: float,
    polling_reason: str | None,
    on_fallback: Trouble,
) -> tuple[BaseObserver, ObserverKind, str | None]:
    """A running observer of ``root`` and why it polls (None for inotify or native).

    ``polling_reason`` set: poll for that reason. Otherwise inotify, falling back to
    polling when inotify cannot watch the folder: ``on_fallback`` hears inotify's error
    before the poller starts (so it is known even if the poller fails too). OSError when
    the folder cannot be watched at all.
    """
    watched = os.path.realpath(root)
    handler = EventForwarder(root, watched, callback)
    if polling_reason is None:
        observer: BaseObserver | None = None
        try:
            if HAVE_INOTIFY:
                observer, kind = _InotifyObserver(on_trouble), ObserverKind.INOTIFY
            else:  # pragma: no cover - not Linux
                from watchdog.observers import Observer

                observer, kind = Observer(), ObserverKind.NATIVE
            observer.schedule(handler, watched, recursive=recursive, event_filter=EVENTS)
            observer.start()
            return observer, kind, None
        except OSError as exc:
            if observer is not None:
                stop_observer(observer)
            polling_reason = inotify_error(exc)
            log.warning(
                "cannot watch %s with inotify: %s; polling it every %.0f s instead", root, polling_reason, poll_seconds
            )
            on_fallback(polling_reason)
    poller = PollingObserver(timeout=poll_seconds)
    poller.schedule(handler, watched, recursive=recursive, event_filter=EVENTS)
    poller.start()
    return poller, ObserverKind.POLLING, polling_reason


def stop_observer(observer: BaseObserver) -> None:
    """Stop an observer and wait for its thread (at most 10 s); never raises."""
    try:
        observer.stop()
        if observer.is_alive():
            observer.join(timeout=10)
    except Exception:
        log.exception("could not stop a folder observer")
