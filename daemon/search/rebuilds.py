"""When an index rebuilds: one background thread per extractor, one build at a time.

The thread sleeps until a rebuild is asked for or a tick passes. On a tick it calls the
index's ``idle`` (which pulls catalogue changes nobody announced and lets the thresholds
ask for a build); on a request it calls ``build``. Requests and answers are counted, so
``request(wait=True)`` returns once the build it asked for (or a later one) is done, and
raises when that build failed. After a failure no threshold starts another build for
``retry_after()`` seconds, and none starts sooner after the last one than that build took
(``may_start``): builds take at most half the time.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from .snapshot import IndexBuildError

log = logging.getLogger("imgsearchd.search.index")


class Rebuilds:
    """The rebuild thread of one index and the bookkeeping of its requests."""

    def __init__(
        self,
        name: str,
        build: Callable[[], None],
        idle: Callable[[], None],
        tick: float,
        retry_after: Callable[[], float],
    ) -> None:
        self.name = name
        self._build = build
        self._idle = idle
        self._tick = tick
        self._retry_after = retry_after
        self._cond = threading.Condition()  # guards the bookkeeping below
        self._requested = 0  # rebuild requests made ...
        self._done = 0  # ... and answered
        self._failed: tuple[int, BaseException] | None = None
        self.building = False
        self.stopping = False
        self._last_build_end = 0.0
        self._retry_at = 0.0
        self._thread: threading.Thread | None = None

    @property
    def used(self) -> bool:
        """Started or stopped once already: an index opens once."""
        return self._thread is not None or self.stopping

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"index-rebuild-{self.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Refuse new requests and end the thread after the build in progress (``join``)."""
        with self._cond:
            self.stopping = True
            self._cond.notify_all()

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def may_start(self, last_build_seconds: float) -> bool:
        """Not resting: no failure within ``retry_after()``, and the last build ended at least its duration ago."""
        now = time.monotonic()
        return now >= self._retry_at and now - self._last_build_end >= last_build_seconds

    def request_if(self, due: Callable[[], bool]) -> bool:
        """Ask for a build when none runs or waits and ``due()`` says so; True if one was asked for."""
        with self._cond:
            if self.stopping or self.building or self._requested > self._done or not due():
                return False
            self._requested += 1
            self._cond.notify_all()
            return True

    def request(self, wait: bool = True, timeout: float | None = None) -> None:
        """Ask for a build; with ``wait``, block until it is done.

        Raises ``IndexBuildError`` if that build failed, ``TimeoutError`` on timeout.
        """
        with self._cond:
            if self._thread is None or self.stopping:
                raise RuntimeError("index is not open")
            self._requested += 1
            target = self._requested
            self._cond.notify_all()
            if not wait:
                return
            if not self._cond.wait_for(lambda: self._done >= target or self.stopping, timeout):
                raise TimeoutError(f"{self.name}: rebuild still running after {timeout} s")
            if self._failed is not None and self._failed[0] >= target:
                raise IndexBuildError(f"{self.name}: rebuild failed: {self._failed[1]}") from self._failed[1]

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no rebuild is running or asked for; False on timeout."""
        with self._cond:
            return self._cond.wait_for(
                lambda: (not self.building and self._requested <= self._done) or self.stopping, timeout
            )

    def _run(self) -> None:
        while True:
            with self._cond:
                if not self.stopping and self._requested <= self._done:
                    self._cond.wait(self._tick)
                if self.stopping:
                    return
                wanted = self._requested > self._done
            if not wanted:
                try:
                    self._idle()
                except Exception:
                    log.exception("%s: refresh failed", self.name)
                continue
            self._build_once()

    def _build_once(self) -> None:
        with self._cond:
            target = self._requested
            self.building = True
        error: BaseException | None = None
        try:
            self._build()
        except Exception as exc:
            error = exc
            if not self.stopping:
                log.error(
                    "%s: rebuild failed, keeping the previous index: %s",
                    self.name,
                    exc,
                    exc_info=not isinstance(exc, IndexBuildError),
                )
        finally:
            with self._cond:
                self.building = False
                self._done = max(self._done, target)
                self._last_build_end = time.monotonic()
                if error is not None:
                    self._failed = (target, error)
                    self._retry_at = time.monotonic() + self._retry_after()
                self._cond.notify_all()
