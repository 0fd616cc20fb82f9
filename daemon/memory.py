"""Bounds on decoding memory: a process-wide pixel budget, and freed heap given back.

A decoded picture costs about 4 bytes a pixel (Pillow keeps RGB as 32-bit pixels), so
four 169-megapixel PNGs decoded at once held 2.7 GB before any of them was shrunk.
``DECODES`` lets decodes run together only while their pixels fit one budget; a bigger
one waits its turn and then runs alone. ``give_back`` returns freed heap to the system.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager


class PixelBudget:
    """At most ``capacity`` pixels being decoded at once, first come first served."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._queue: deque[object] = deque()
        self.in_use = 0
        self.peak = 0  # the most pixels ever held at once (stats and tests)

    @contextmanager
    def hold(self, pixels: int, capacity: int) -> Iterator[None]:
        """Wait until ``pixels`` fit beside the decodes running now (alone if over ``capacity``)."""
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
            # First come first served: a big picture waiting at the head is not overtaken by a
            # stream of small ones, and runs as soon as the ones before it are done.
            while self._queue[0] is not ticket or (self.in_use and self.in_use + pixels > capacity):
                self._cond.wait()
            self._queue.popleft()
            self.in_use += pixels
            self.peak = max(self.peak, self.in_use)
            self._cond.notify_all()  # the next in line may fit too
        try:
            yield
        finally:
            with self._cond:
                self.in_use -= pixels
                self._cond.notify_all()


DECODES = PixelBudget()


def _load_libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


_LIBC = _load_libc()


def give_back() -> bool:
    """Return the heap freed since the last call to the system (glibc ``malloc_trim``).

    glibc keeps freed memory for reuse, in one arena per thread: after four 169-megapixel
    PNGs posted at once (decoded one at a time) the idle daemon held 2104 MiB without it and
    814 MiB with it (744 MiB before them; BENCHMARKS.md).
    False where there is no glibc (musl, macOS), where freed memory is not held this way.
    """
    if _LIBC is None:
        return False
    _LIBC.malloc_trim(0)
    return True
