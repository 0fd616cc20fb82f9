"""Request size and slow-client limits (issue 10, items 10 and 11) through the real server.

The body cap is ``server.max_upload_mb`` (32 MB here, the default): a 64 MB upload must be
answered 413 JSON that every Python client can read, and an oversized Content-Length must be
refused before any of the body is sent, whatever the route and whether or not it needs a token.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest
import requests

from imgsearchd.search import query

from helpers import live_server, server_config

BIG = 64 * 1024 * 1024  # twice the default cap


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("limits")
    # Not loaded: every check here happens before a route runs (the app would answer 503).
    with live_server(server_config(root, server={"token": "s3cret"}), load=False, header_seconds=1) as live:
        yield live


def address(live) -> tuple[str, int]:
    host, port = live.base.removeprefix("http://").rsplit(":", 1)
    return host, int(port)


def read_answer(conn: socket.socket) -> tuple[int, dict]:
    """Read one answer with a JSON body (Content-Length framed) from a raw socket."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    )
    while len(body) < length:
        body += conn.recv(65536)
    return int(head.split()[1]), json.loads(body[:length])


def assert_cap_error(status: int, body: dict) -> None:
    assert status == 413 and "max_upload_mb" in body["error"], (status, body)


def test_a_64mb_upload_gets_a_413_json_with_every_python_client(server):
    url = f"{server.base}/search"
    headers = {"Authorization": "Bearer s3cret", "Content-Type": "image/jpeg"}
    payload = b"\xff" * BIG
    answer = requests.post(url, data=payload, headers=headers, timeout=60)
    assert_cap_error(answer.status_code, answer.json())
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(urllib.request.Request(url, data=payload, headers=headers), timeout=60)
    assert_cap_error(caught.value.code, json.loads(caught.value.read()))
    conn = http.client.HTTPConnection(*address(server), timeout=60)
    try:
        conn.request("POST", "/search", body=payload, headers=headers)
        response = conn.getresponse()
        assert_cap_error(response.status, json.loads(response.read()))
    finally:
        conn.close()


@pytest.mark.parametrize("path", ["/search", "/nope", "/stats"])
def test_an_oversized_content_length_is_refused_before_the_body(server, path):
    """No token and a route that does not exist: still refused from the header alone, at once."""
    with socket.create_connection(address(server), timeout=5) as conn:
        started = time.monotonic()
        conn.sendall(f"POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {1 << 30}\r\n\r\n".encode())
        status, body = read_answer(conn)  # a timeout here would mean the server waits for the body
        assert time.monotonic() - started < 2
    assert_cap_error(status, body)


def test_expect_100_continue_is_honoured(server):
    host, port = address(server)
    with socket.create_connection((host, port), timeout=5) as conn:
        conn.sendall(
            f"POST /search HTTP/1.1\r\nHost: localhost\r\nContent-Length: {BIG}\r\nExpect: 100-continue\r\n\r\n".encode()
        )
        status, body = read_answer(conn)  # the refusal, not "100 Continue"
    assert_cap_error(status, body)
    with socket.create_connection((host, port), timeout=5) as conn:
        conn.sendall(b"POST /nope HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert conn.recv(100).startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        conn.sendall(b"hello")
        status, body = read_answer(conn)
    assert status == 404 and "no such endpoint" in body["error"]


def test_a_chunked_body_is_cut_off_at_the_cap(server):
    """No Content-Length to refuse early: the server reads up to the cap, then answers 413."""
    chunk = b"%x\r\n%s\r\n" % (1 << 20, b"x" * (1 << 20))
    stream = memoryview(chunk * 100)  # 100 MB of valid chunks, sent until the server answers
    sent = 0
    with socket.create_connection(address(server), timeout=10) as conn:
        conn.sendall(b"POST /nope HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n")
        conn.setblocking(False)
        answer = b""
        while not answer and sent < len(stream):
            try:
                sent += conn.send(stream[sent : sent + (1 << 20)])
            except BlockingIOError:
                time.sleep(0.01)
            try:
                answer = conn.recv(65536)
            except BlockingIOError:
                pass
        conn.setblocking(True)
        head, _, body = (answer + conn.recv(65536)).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413"), head
    assert sent < 32 * 1024 * 1024 + 8 * 1024 * 1024  # the cap plus what the socket buffers hold
    assert "max_upload_mb" in json.loads(body)["error"]


@pytest.mark.parametrize("size", [b"ffffffffffffffffffff", b"6400000"])  # 2^80 bytes; 100 MiB
def test_a_chunk_announcing_more_than_the_cap_is_413_at_once(server, size):
    """Waitress counted only arriving chunk bytes: this waited for the idle timeout, then closed."""
    with socket.create_connection(address(server), timeout=10) as conn:
        conn.sendall(
            b"POST /search HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n" + size + b"\r\nabc\r\n"
        )
        started = time.monotonic()
        status, body = read_answer(conn)
    assert status == 413 and time.monotonic() - started < 5, body


def test_an_oversized_header_is_a_431_json(server):
    with socket.create_connection(address(server), timeout=10) as conn:
        conn.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n")
        status, body = read_answer(conn)
    assert status == 431 and "header" in body["error"]


def test_a_slow_header_is_dropped_and_does_not_hold_the_server(server):
    host, port = address(server)
    slow = [socket.create_connection((host, port), timeout=10) for _ in range(32)]
    try:
        for conn in slow:
            conn.sendall(b"GET /health HTTP/1.1\r\nX-Slow: ")
        started = time.monotonic()
        for _ in range(2):  # the server answers others while the slow ones trickle
            for conn in slow:
                conn.sendall(b"a")
            t = time.monotonic()
            assert server.request("GET", "/health")[0] == 503  # starting, but answering
            assert time.monotonic() - t < 1
            time.sleep(0.2)
        assert all(conn.recv(10) == b"" for conn in slow)  # closed by the 1 s header deadline
        assert time.monotonic() - started < 5
    finally:
        for conn in slow:
            conn.close()


def test_searches_that_embed_beyond_the_slots_get_503_at_once_and_health_still_answers(tmp_path, photos, monkeypatch):
    """16 slow searches (each waiting for the decode budget) once took every worker."""
    photos["coffee"].save(tmp_path / "q.png")
    photos["chelsea"].save(tmp_path / "indexed.png")
    release = threading.Event()
    entered = threading.Semaphore(0)
    config = server_config(tmp_path, server={"allowed_roots": [str(tmp_path)]})
    with live_server(config, threads=6, slow_slots=2) as live:
        assert live.get("/add", image=str(tmp_path / "indexed.png"))[0] == 200
        original = query.embed_path

        def slow_embed(*args, **kwargs):
            entered.release()
            release.wait(30)
            return original(*args, **kwargs)

        monkeypatch.setattr(query, "embed_path", slow_embed)
        answers: list[int] = []
        workers = [
            threading.Thread(target=lambda: answers.append(live.get("/search", image=str(tmp_path / "q.png"))[0]))
            for _ in range(2)
        ]
        for worker in workers:
            worker.start()
        assert entered.acquire(timeout=30) and entered.acquire(timeout=30)  # both slots taken
        started = time.monotonic()
        status, body, headers = live.request("GET", "/search", {"image": str(tmp_path / "q.png")})
        assert status == 503 and "busy" in body["error"] and headers["Retry-After"] == "1", body
        assert live.get("/search", image=str(tmp_path / "indexed.png"))[0] == 200  # by stored vector: no slot
        assert live.get("/health")[0] == 200 and time.monotonic() - started < 5
        release.set()
        for worker in workers:
            worker.join(30)
        assert answers == [200, 200]
