"""Waitress's per-connection channel, made strict: JSON errors, a header deadline, a lingering close.

Waitress reads every request whole in its one I/O thread before a worker sees it, so slow
clients cost a socket, not a thread. Three gaps remain, closed here:

* its own errors (bad request line, oversized header or body, bad chunking) are text/plain;
  here they are JSON ``{"error": ...}`` like every other answer;
* a client may trickle header bytes forever (each byte resets waitress's inactivity timer);
  here the headers must be complete within ``HEADER_SECONDS`` of the request's first byte;
* after an error answer waitress closes at once; with body bytes still unread the kernel
  sends a reset and clients that send the whole body before reading (``requests``,
  ``urllib``, ``http.client``) see a broken pipe instead of the 413. Here the channel shuts
  its sending side and reads and discards the rest, up to ``LINGER_BYTES`` or
  ``LINGER_SECONDS``, then closes (Apache's "lingering close").
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any

from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.receiver import ChunkedReceiver
from waitress.task import ErrorTask
from waitress.utilities import RequestEntityTooLarge

from .headers import ANSWER_HEADERS

# A header that is not complete after this long is a slow-header client (measured: 16 of
# them sending a byte a second held every cheroot worker; see BENCHMARKS.md).
HEADER_SECONDS = 10.0
# How much of an unread body is read and thrown away after an error answer so that the client
# can read it: a 64 MB upload on loopback drains in about 0.1 s.
LINGER_BYTES = 1 << 30
LINGER_SECONDS = 10.0


def error_body(code: int, reason: str, detail: str, adj: Any) -> bytes:
    """The JSON body of an error the server layer answers before the app sees the request."""
    if code == 413:
        # waitress refuses a body of max_request_body_size bytes, so the cap is one less
        message = f"request body is over the {adj.max_request_body_size - 1}-byte cap (server.max_upload_mb)"
    elif code == 431:
        message = f"request header is over the {adj.max_request_header_size}-byte cap"
    else:
        message = f"{reason.lower()}: {detail}"
    return json.dumps({"error": message}).encode()


class JsonErrorTask(ErrorTask):
    """Waitress's answer to a request it could not parse, as JSON; the channel then lingers."""

    def execute(self) -> None:
        error = self.request.error
        body = error_body(error.code, error.reason, str(error.body), self.channel.server.adj)
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", "application/json"))
        self.response_headers.extend(ANSWER_HEADERS.items())  # as the app's answers: error bodies echo input
        self.set_close_on_finish()
        self.content_length = len(body)
        self.channel.linger = True
        self.write(body)


class StrictParser(HTTPRequestParser):
    """Waitress's parser, refusing a chunk whose declared size alone passes the body cap.

    Waitress counts only the chunk bytes that arrive, so a chunk that announces 100 MiB
    (or 2^80 bytes) and then sends little got no answer until the idle timeout.
    """

    def received(self, data: bytes) -> int:
        consumed: int = super().received(data)
        receiver = self.body_rcv
        cap = self.adj.max_request_body_size
        completed: bool = self.completed  # type: ignore[has-type]  # waitress sets it without an annotation
        if (
            not completed
            and isinstance(receiver, ChunkedReceiver)
            and self.body_bytes_received + receiver.chunk_remainder > cap
        ):
            self.error = RequestEntityTooLarge(f"a chunk announces more than the body cap of {cap} bytes")
            self.completed = True
        return consumed


class StrictChannel(HTTPChannel):
    """One client connection: JSON errors, a header deadline and a lingering close."""

    parser_class = StrictParser
    error_task_class = JsonErrorTask
    header_seconds = HEADER_SECONDS
    linger = False  # set by JsonErrorTask: read and drop the rest of the input before closing
    draining_until = 0.0  # when lingering, the time to give up
    drained = 0
    request_started = 0.0  # when the request being received sent its first byte

    def received(self, data: bytes) -> bool:
        if self.request is None:
            self.request_started = time.monotonic()
        done: bool = super().received(data)
        return done

    def send_continue(self) -> None:
        # Waitress would say "100 Continue" even to a request it has just refused (a body over
        # the cap): the client would then send the body it was about to be spared.
        if self.request is not None and self.request.error is not None:
            return
        super().send_continue()

    def readable(self) -> bool:
        now = time.monotonic()
        if self.draining_until:
            if now > self.draining_until or self.drained > LINGER_BYTES:
                self._really_close()
                return False
            return True
        request = self.request
        if (
            request is not None
            and not request.headers_finished
            and not self.requests
            and now - self.request_started > self.header_seconds
        ):
            # Too slow to finish a header: drop it; an answer would only feed the trickle.
            self.will_close = True
            return False
        ready: bool = super().readable()
        return ready

    def writable(self) -> bool:
        if self.draining_until:
            return False
        ready: bool = super().writable()
        return ready

    def handle_read(self) -> None:
        if not self.draining_until:
            super().handle_read()
            return
        try:
            data = self.socket.recv(1 << 16)
        except BlockingIOError:
            return
        except OSError:
            self._really_close()
            return
        if not data:
            self._really_close()
            return
        self.drained += len(data)

    def handle_close(self) -> None:
        if self.linger and not self.draining_until and self.connected:
            try:
                self.socket.shutdown(socket.SHUT_WR)  # the answer is sent; the client sees its end
            except OSError:
                self._really_close()
                return
            self.will_close = False
            self.close_when_flushed = False
            self.draining_until = time.monotonic() + LINGER_SECONDS
            return
        self._really_close()

    def _really_close(self) -> None:
        self.linger = False
        self.draining_until = 0.0
        super().handle_close()
