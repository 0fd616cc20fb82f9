"""Signals as messages: the handlers only record, the main loop does the work.

A Python signal handler runs in the main thread between two bytecodes, wherever that
thread happens to be; one that takes a lock the main thread already holds deadlocks the
process (a SIGTERM that arrived while ``Notifier.ready`` held its lock hung the daemon in
half of the runs). So the handlers here do nothing: ``signal.set_wakeup_fd`` makes the
interpreter write each signal's number to a socket, and ``wait`` reads them in the loop.
"""

from __future__ import annotations

import select
import signal
import socket
from collections.abc import Iterable
from types import FrameType


def _record_only(_signum: int, _frame: FrameType | None) -> None:
    """The Python-level handler: nothing; the wakeup fd carries the signal's number."""


class SignalInbox:
    """Receives the given signals as numbers through a wakeup socket (main thread only)."""

    def __init__(self, signums: Iterable[signal.Signals]) -> None:
        self._read, self._write = socket.socketpair()
        self._read.setblocking(False)
        self._write.setblocking(False)
        self._previous_fd = signal.set_wakeup_fd(self._write.fileno(), warn_on_full_buffer=False)
        self._previous = {signum: signal.signal(signum, _record_only) for signum in signums}

    def wait(self, timeout: float) -> list[signal.Signals]:
        """The signals received since the last call, waiting up to ``timeout`` s for one."""
        ready, _, _ = select.select([self._read], [], [], timeout)
        if not ready:
            return []
        try:
            data = self._read.recv(512)
        except BlockingIOError:
            return []
        return [signal.Signals(number) for number in data if number in self._previous]

    def close(self) -> None:
        """Give the signals their previous handlers back."""
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(self._previous_fd)
        self._read.close()
        self._write.close()
