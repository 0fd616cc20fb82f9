"""One pass of the daemon's loop: its paths go on with the next ones of their kind at the queue's front.

``Pipeline.run`` takes 2 batches at a time, and a run that ended there drained the loaders' window
each time. A ``Stream`` is the pass: it hands the run the paths it took, then pulls the next entries
of the same intent (ADD with ADD, a folder's RECHECK with RECHECK) one at a time while the run's
window is open. It keeps what the pass took and which paths are written, so a failure gives back
or retries only the paths not written.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator

from .workqueue import Intent, Work, WorkQueue

# A pass ends after this many batches, which bounds what it keeps (taken work, paths, written
# paths) and lets ``WorkQueue.join`` see its work done: one drain in 64 batches, not one in 2.
MAX_BATCHES = 64


class Stream:
    """The work taken in one pass of the loop (``taken``, grown by the pulls) and the paths written."""

    def __init__(
        self, queue: WorkQueue, stop: threading.Event, taken: list[Work], batch_size: int, switching: Callable[[], bool]
    ) -> None:
        self.queue = queue
        self.stop = stop
        self.taken = taken  # the loop's list: reported done, given back or retried as a whole
        self.limit = MAX_BATCHES * batch_size
        self.switching = switching  # a model switch waits for the run: it ends at once
        self._paths = {work.path for work in taken}
        self._written: set[str] = set()

    def paths(self, first: list[str], intent: Intent) -> Iterator[str]:
        """``first``, then the paths of ``intent`` at the queue's front, until something else is there.

        A stop, a model switch waiting, a path this pass already holds (loading it twice would pay
        its decode and forward twice) or ``MAX_BATCHES`` taken end it; what is not taken stays queued.
        """
        yield from first
        while following := self._pull(intent):
            yield from following

    def _pull(self, intent: Intent) -> list[str]:
        # Pulling while the window is open keeps the loaders fed across takes (issue 31, 192 12-MP JPEGs
        # through ``run``, batch 32, 2 loaders, busy 2 cores at load 3-5: loaders busy 83-85% -> 93-95%
        # with EfficientNet, ADD or RECHECK; CLIP's forward waiting for pictures 18-19% -> 6% of the wall).
        if self.stop.is_set() or self.switching() or len(self.taken) >= self.limit:
            return []
        got = self.queue.take_while(intent, 1, unless=self._paths)
        self.taken.extend(got)
        self._paths.update(work.path for work in got)
        return [work.path for work in got]

    def wrote(self, paths: Iterable[str]) -> None:
        """These paths are in the catalogue (a committed batch, or unchanged): a failure must not replay them."""
        self._written.update(paths)

    def unfinished(self, items: list[Work]) -> list[Work]:
        """``items`` less the files this pass wrote (moves and the like are the caller's to count)."""
        return [w for w in items if w.intent not in (Intent.ADD, Intent.RECHECK) or w.path not in self._written]


class Waiters:
    """Counts the threads waiting to change the models (``Pipeline.use_extractor``): a stream ends for them."""

    def __init__(self) -> None:
        self._count = 0
        self._lock = threading.Lock()

    def __enter__(self) -> None:
        with self._lock:
            self._count += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._count -= 1

    def __bool__(self) -> bool:
        return self._count > 0
