"""Counting the pipeline's work: ``Progress`` for ``/stats`` and systemd, ``Bar`` for a console."""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TypedDict


class Snapshot(TypedDict):
    """The counters at one moment (``Progress.snapshot``), as ``/stats``' ``indexing`` shows them."""

    queued: int
    done: int
    embedded: int
    reused: int
    unchanged: int
    removed: int
    failed: dict[str, int]
    images_per_second: float
    seconds: float


@dataclass
class Progress:
    """Counters of the pipeline, safe to read from any thread."""

    queued: int = 0
    done: int = 0
    embedded: int = 0
    reused: int = 0
    unchanged: int = 0
    removed: int = 0
    failed: collections.Counter[str] = field(default_factory=collections.Counter)
    started: float = field(default_factory=time.monotonic)
    _recent: collections.deque[tuple[float, int]] = field(default_factory=lambda: collections.deque(maxlen=64))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def add_queued(self, count: int = 1) -> None:
        with self._lock:
            self.queued += count

    def add_done(
        self,
        *,
        embedded: int = 0,
        reused: int = 0,
        unchanged: int = 0,
        failed: Iterable[str] = (),
        vanished: int = 0,
        removed: int = 0,
    ) -> None:
        """Count finished paths (``vanished`` ones were queued but gone) and removed entries."""
        failed = list(failed)
        with self._lock:
            self.embedded += embedded
            self.reused += reused
            self.unchanged += unchanged
            self.failed.update(failed)
            self.removed += removed
            self.done += embedded + reused + unchanged + len(failed) + vanished
            self._recent.append((time.monotonic(), self.embedded))

    def images_per_second(self) -> float:
        """Embedding rate over the last few batches."""
        with self._lock:
            if len(self._recent) < 2:
                elapsed = time.monotonic() - self.started
                return self.embedded / elapsed if elapsed > 0 and self.embedded else 0.0
            (t0, n0), (t1, n1) = self._recent[0], self._recent[-1]
            return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0

    def snapshot(self) -> Snapshot:
        rate = self.images_per_second()
        with self._lock:
            return {
                "queued": self.queued,
                "done": self.done,
                "embedded": self.embedded,
                "reused": self.reused,
                "unchanged": self.unchanged,
                "removed": self.removed,
                "failed": dict(self.failed),
                "images_per_second": round(rate, 2),
                "seconds": round(time.monotonic() - self.started, 3),
            }


class Bar:
    """A tqdm progress bar on the console, or nothing."""

    def __init__(self, total: int | None, enabled: bool) -> None:
        self._bar = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="img", dynamic_ncols=True, smoothing=0.1)

    def update(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def set_rate(self, rate: float) -> None:
        if self._bar is not None:
            self._bar.set_postfix_str(f"embed {rate:.1f} img/s", refresh=False)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
