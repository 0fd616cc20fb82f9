"""The systemd notify protocol, spoken directly on ``$NOTIFY_SOCKET`` (no libsystemd).

One datagram per message, ``KEY=value`` lines. Outside systemd (no ``$NOTIFY_SOCKET``)
every call is a no-op, so the daemon runs the same way by hand.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping

log = logging.getLogger("imgsearchd.process.systemd")

SEND_TIMEOUT = 5.0


class Notifier:
    """Sends state changes to the service manager."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):
            address = "\0" + address[1:]  # an abstract socket
        self.address = address
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        self.watchdog_usec = int(usec) if usec.isdigit() and (not pid or pid == str(os.getpid())) else 0

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, *fields: str) -> bool:
        """One datagram with these ``KEY=value`` fields; False when it could not be sent."""
        if not self.address:
            return False
        message = "\n".join(fields).encode("utf-8")
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                    # A service manager that stops reading fills the socket's queue; without a
                    # timeout the next send (from the main loop) would block the daemon for ever.
                    self._sock.settimeout(SEND_TIMEOUT)
                self._sock.sendto(message, self.address)
                return True
            except OSError as exc:
                log.warning("cannot notify systemd at %r: %s", self.address, exc)
                return False

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> bool:
        monotonic_usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={monotonic_usec}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None


class Heartbeat:
    """A thread that keeps ``STATUS=`` current and pings the watchdog at half its interval.

    ``status()`` gives the current status line; ``healthy()`` says whether the daemon's own
    threads are alive (no ping when they are not, so systemd restarts a hung daemon).
    """

    def __init__(
        self, notifier: Notifier, status: Callable[[], str], healthy: Callable[[], bool], status_every: float = 2.0
    ) -> None:
        self.notifier = notifier
        self._status = status
        self._healthy = healthy
        self._status_every = status_every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_status = ""

    @property
    def watchdog_interval(self) -> float | None:
        """Seconds between pings: half of ``WATCHDOG_USEC``, or None without a watchdog."""
        usec = self.notifier.watchdog_usec
        return usec / 2e6 if usec else None

    def start(self) -> None:
        if not self.notifier.enabled:
            return
        self._thread = threading.Thread(target=self._run, name="imgsearchd-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        ping_every = self.watchdog_interval
        if ping_every:
            self._status_every = min(self._status_every, ping_every)
        next_status = next_ping = time.monotonic()
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_status:
                self._send_status()
                next_status = now + self._status_every
            if ping_every and now >= next_ping:
                if self._healthy():
                    self.notifier.watchdog()
                else:
                    log.error("a daemon thread has died: not pinging the watchdog, systemd will restart us")
                next_ping = now + ping_every
            wake = min(next_status, next_ping) if ping_every else next_status
            self._stop.wait(max(0.05, wake - time.monotonic()))

    def _send_status(self) -> None:
        try:
            text = self._status()
        except Exception:
            log.exception("cannot compute the status line")
            return
        if text != self._last_status:
            self.notifier.status(text)
            self._last_status = text
