"""What one file-system event in a watched folder means for the work queue.

Written files go to the ``Settler`` until they are complete; deletions become removals;
renames become moves (ids and vectors kept), and a move across the edge of the watched
folder an add or a removal; a folder's move or deletion applies to every file below it.
Hidden and temporary names are ignored until they are renamed to a real name.
"""

from __future__ import annotations

import time

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
)

from .folders import is_visible_under, is_wanted_image
from .settling import Settler
from .workqueue import Intent, WorkQueue


class EventRouter:
    """Routes the events of watched folders to the settler and the queue.

    No lock of its own: the watcher calls ``route`` under its lock, which also guards
    the settler.
    """

    def __init__(self, settler: Settler, queue: WorkQueue, extensions: tuple[str, ...], recursive: bool) -> None:
        self.settler = settler
        self.queue = queue
        self.extensions = extensions
        self.recursive = recursive

    def route(self, root: str, event: FileSystemEvent, src: str, dest: str) -> bool:
        """Act on one event; ``src``/``dest`` are under ``root``. True when ``root`` itself went.

        The root going (deleted, renamed away) is never a deletion of its files: the
        watcher takes the folder offline instead.
        """
        if isinstance(event, (DirDeletedEvent, DirMovedEvent)) and src == root:
            return True
        if isinstance(event, FileClosedEvent):
            self.touch(root, src, complete=True)
        elif isinstance(event, FileCreatedEvent):
            self.touch(root, src, complete=event.is_synthetic)  # synthetic: inside a folder moved in
        elif isinstance(event, FileModifiedEvent):
            self.touch(root, src, complete=False)
        elif isinstance(event, FileAttribEvent):
            self.touch(root, src, complete=None)
        elif isinstance(event, FileDeletedEvent):
            self.settler.discard(src)
            if self._wanted(root, src):
                self.queue.put(src, Intent.REMOVE)
        elif isinstance(event, DirDeletedEvent):
            self.settler.forget_under(src)
            if is_visible_under(root, src):
                self.queue.put(src, Intent.REMOVE)
        elif isinstance(event, FileMovedEvent):
            self._file_moved(root, src, dest, event.is_synthetic)
        elif isinstance(event, DirMovedEvent) and not event.is_synthetic:
            self._folder_moved(root, src, dest)
        return False

    def _file_moved(self, root: str, src: str, dest: str, synthetic: bool) -> None:
        src_ok = bool(src) and self._wanted(root, src)
        dest_ok = bool(dest) and self._wanted(root, dest)
        if not synthetic:  # synthetic: inside a moved folder, whose own move covers the catalogue
            if src_ok and dest_ok:
                self.queue.put_move(src, dest)
            elif src_ok:
                self.queue.put(src, Intent.REMOVE)
        if dest_ok and src and self.settler.rename(src, dest, time.monotonic()):
            return  # still being written: keep waiting for it under its new name
        if src:
            self.settler.discard(src)
        if dest_ok:  # renamed into place (from a temporary name, or from outside): complete
            self.touch(root, dest, complete=True)

    def _folder_moved(self, root: str, src: str, dest: str) -> None:
        src_ok = bool(src) and is_visible_under(root, src)
        dest_ok = bool(dest) and is_visible_under(root, dest)
        if src_ok:
            self.settler.rename_folder(src, dest if dest_ok else None)
        if src_ok and dest_ok:
            self.queue.put_move(src, dest)
        elif src_ok:
            self.queue.put(src, Intent.REMOVE)
        # Files inside a folder moved in arrive as their own (synthetic) events.

    def touch(self, root: str, path: str, complete: bool | None) -> None:
        """Note a write to ``path`` (also used by reconcile scans for files written moments ago);
        ``complete`` None (an attribute change) keeps what was known."""
        if self._wanted(root, path):
            self.settler.touch(path, complete, time.monotonic())

    def _wanted(self, root: str, path: str) -> bool:
        return is_wanted_image(root, path, self.extensions, self.recursive)
