"""The HTTP server the daemon listens with: waitress, bounded, with strict channels.

Chosen over cheroot by measurement (BENCHMARKS.md, "HTTP front"): cheroot gives each
connection a worker thread while it reads the header, so 16 clients sending a header byte
a second stopped ``/health`` for 30 s; waitress reads whole requests in one I/O thread and
hands only complete ones to its workers. Limits (all refusals are JSON, see ``channel``):

* body: ``server.max_upload_mb``, refused from ``Content-Length`` before a byte of the body
  is read (413), or once a chunked body passes it; bodies over 512 KiB below the cap are
  spooled to a temporary file, not held in memory;
* header: ``MAX_HEADER_BYTES`` (431); a header must be complete ``HEADER_SECONDS`` after
  its first byte;
* connections: ``MAX_CONNECTIONS`` open at once, more wait in a ``BACKLOG``-long queue;
  idle ones close after ``IDLE_SECONDS``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from waitress import wasyncore
from waitress.server import BaseWSGIServer, create_server

from ..config import Config
from ..logs import OncePer
from .channel import HEADER_SECONDS, StrictChannel

log = logging.getLogger("imgsearchd.http")

WORKER_THREADS = 16  # as cheroot had: requests wait on the index lock or a model, rarely on a CPU
# 64 KiB holds any real header (a browser's cookies for localhost, a token) with room to spare;
# waitress's default is 256 KiB and cheroot had no limit (a 200 MB header was accepted).
MAX_HEADER_BYTES = 64 * 1024
# poll() rather than select(), which cannot watch a descriptor above 1023.
MAX_CONNECTIONS = 1000
BACKLOG = 1024  # cheroot's was 5: 200 clients connecting at once waited for SYN retries (60 s)
IDLE_SECONDS = 30  # a keep-alive connection (or a stalled body) with nothing sent this long is closed
# waitress warns once per request queued behind busy workers: under load, one line in ten seconds
# says as much (see logs.OncePer for what the flood did). One filter for every server in the process.
QUEUE_WARNINGS = OncePer(10.0)


class HttpServer:
    """A bound waitress server: ``serve()`` blocks until another thread calls ``stop()``."""

    def __init__(self, server: Any, body_cap: int) -> None:
        self._server = server
        # one listener is a TcpWSGIServer (map in ``_map``), several a MultiSocketServer (``map``)
        self._map: dict[int, Any] = server.map if hasattr(server, "map") else server._map
        self.body_cap = body_cap
        self._serving = threading.Event()
        self._stopped = threading.Event()

    @property
    def bind_addr(self) -> tuple[str, int]:
        """The address and port listened on (the port the kernel chose for port 0)."""
        listener = next(s for s in self._listeners())
        host, port = listener.socket.getsockname()[:2]
        return str(host), int(port)

    def _listeners(self) -> list[BaseWSGIServer]:
        return [s for s in self._map.values() if isinstance(s, BaseWSGIServer)]

    def serve(self) -> None:
        self._serving.set()
        try:
            self._server.run()
        finally:
            self._stopped.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, let the workers finish the requests in flight (their answers still go
        out), then close every connection, which ends the I/O loop.

        In that order because a worker that finishes a request wakes the I/O loop through its
        pipe: with the loop's sockets closed first, that write failed (EBADF) and waitress logged
        a traceback at the stop (seen once in a full test run under load).
        """
        pulled = False
        if self._serving.is_set() and not self._stopped.is_set():
            # The I/O loop owns its sockets: close them from inside it.
            workers_done = False
            try:
                listeners = self._listeners()
                trigger = listeners[0].trigger
                # dispatcher.close, not the listener's own close(): waitress's closes the shared
                # wake-up pipe too, and every worker finishing a request after it hit EBADF
                trigger.pull_trigger(lambda: [wasyncore.dispatcher.close(each) for each in listeners])
                self._server.task_dispatcher.shutdown(cancel_pending=True, timeout=timeout)
                workers_done = True
                trigger.pull_trigger(lambda: wasyncore.close_all(self._map, ignore_all=True))
                pulled = True
            except (OSError, IndexError) as exc:  # the loop's wake-up pipe is gone: it has ended
                # Once the listeners are shut and the workers done, the loop may close its pipe on
                # its own way out before the last wake-up (EBADF, seen once in a full run under load):
                # an ordinary end then, nothing to warn about.
                log.log(
                    logging.DEBUG if workers_done else logging.WARNING,
                    "HTTP server: I/O loop could not be woken (%s); closing its sockets directly",
                    exc,
                )
        if pulled:
            self._stopped.wait(timeout)
        else:
            wasyncore.close_all(self._map, ignore_all=True)
            self._server.task_dispatcher.shutdown(cancel_pending=True, timeout=timeout)


def make_http_server(
    config: Config,
    app: Callable[..., Any],
    *,
    bind: tuple[str, int] | None = None,
    threads: int = WORKER_THREADS,
    header_seconds: float = HEADER_SECONDS,
) -> HttpServer:
    """Bind ``server.host``:``server.port`` (or ``bind``); raise OSError when that fails."""
    host, port = bind or (config.server.host, config.server.port)
    logging.getLogger("waitress.queue").addFilter(QUEUE_WARNINGS)  # once: the same filter is not added twice
    body_cap = int(config.server.max_upload_mb * 1024 * 1024)
    server = create_server(
        app,
        host=host,
        port=port,
        threads=threads,
        ident="imgsearchd",
        # waitress refuses a body of exactly max_request_body_size; the cap itself is allowed
        max_request_body_size=body_cap + 1,
        max_request_header_size=MAX_HEADER_BYTES,
        connection_limit=MAX_CONNECTIONS,
        asyncore_use_poll=True,
        backlog=BACKLOG,
        channel_timeout=IDLE_SECONDS,
        cleanup_interval=min(IDLE_SECONDS, 10),
    )
    channel = type("StrictChannel", (StrictChannel,), {"header_seconds": header_seconds})
    http = HttpServer(server, body_cap)
    for listener in http._listeners():
        listener.channel_class = channel
    return http
