"""Log lines: journald detected as systemd.exec(5) says, timestamps outside it, text or JSON."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from imgsearchd.config import ConfigError, load_config
from imgsearchd.logs import OncePer, setup_logging, under_journald

from helpers import write_config

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d"


def journal_stream(path: Path) -> str:
    """``$JOURNAL_STREAM`` as systemd sets it for a stream open on ``path``."""
    st = os.stat(path)
    return f"{st.st_dev}:{st.st_ino}"


def lines_logged(tmp_path: Path, monkeypatch, journal: str | None, fmt: str = "text") -> list[str]:
    """What three records look like on a real stderr file, with ``$JOURNAL_STREAM`` as given."""
    path = tmp_path / "stderr.log"
    path.touch()
    if journal is None:
        monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    else:
        monkeypatch.setenv("JOURNAL_STREAM", journal.replace("SELF", journal_stream(path)))
    with open(path, "w", encoding="utf-8") as stream:
        setup_logging("info", fmt, stream)
        logger = logging.getLogger("imgsearchd.test")
        logger.warning("disk gone")
        logger.info("all fine")
        logger.debug("hidden")
        for handler in logging.getLogger().handlers:
            handler.flush()
    return path.read_text(encoding="utf-8").splitlines()


def test_journald_is_the_stream_systemd_named(tmp_path):
    path = tmp_path / "out"
    path.touch()
    other = tmp_path / "other"
    other.touch()
    with open(path, "w") as stream:
        assert under_journald(stream, {"JOURNAL_STREAM": journal_stream(path)})
        assert not under_journald(stream, {"JOURNAL_STREAM": journal_stream(other)})  # inherited, not ours
        assert not under_journald(stream, {})
        for junk in ("", "8", "8:", ":12", "a:b", "8:12:3"):
            assert not under_journald(stream, {"JOURNAL_STREAM": junk}), junk
    read, write = os.pipe()
    with os.fdopen(read), os.fdopen(write, "w") as w:
        assert not under_journald(w, {"JOURNAL_STREAM": journal_stream(path)})  # a pipe, not that file
    assert not under_journald(io.StringIO(), {"JOURNAL_STREAM": "8:12345"})  # no descriptor at all


def test_under_journald_levels_and_no_timestamps(tmp_path, monkeypatch):
    assert lines_logged(tmp_path, monkeypatch, "SELF") == [
        "<4>imgsearchd.test: disk gone",
        "<6>imgsearchd.test: all fine",
    ]


@pytest.mark.parametrize("journal", [None, "1:2"], ids=["no-journal", "inherited-variable"])
def test_timestamps_outside_journald(tmp_path, monkeypatch, journal):
    before = datetime.now().astimezone()
    lines = lines_logged(tmp_path, monkeypatch, journal)
    assert len(lines) == 2, lines
    for line, (level, message) in zip(lines, [("WARNING", "disk gone"), ("INFO", "all fine")]):
        match = re.fullmatch(rf"({STAMP}) {level} imgsearchd\.test: {message}", line)
        assert match, line
        stamp = datetime.fromisoformat(match.group(1))
        assert before - timedelta(seconds=1) <= stamp <= datetime.now().astimezone() + timedelta(seconds=1)


def test_json_lines(tmp_path, monkeypatch):
    lines = lines_logged(tmp_path, monkeypatch, None, "json")
    records = [json.loads(line) for line in lines]
    assert [(r["level"], r["logger"], r["message"]) for r in records] == [
        ("warning", "imgsearchd.test", "disk gone"),
        ("info", "imgsearchd.test", "all fine"),
    ]
    assert all(re.fullmatch(STAMP, r["time"]) for r in records)
    journal = lines_logged(tmp_path, monkeypatch, "SELF", "json")
    assert [line[:3] for line in journal] == ["<4>", "<6>"]  # journald still gets the level
    assert json.loads(journal[0][3:])["message"] == "disk gone"


def test_json_keeps_a_traceback_on_one_line(tmp_path, monkeypatch):
    path = tmp_path / "stderr.log"
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    with open(path, "w", encoding="utf-8") as stream:
        setup_logging("info", "json", stream)
        try:
            raise ValueError("bad\nvalue")
        except ValueError:
            logging.getLogger("imgsearchd.test").exception("it broke")
    (line,) = path.read_text(encoding="utf-8").splitlines()
    record = json.loads(line)
    assert record["message"] == "it broke" and "ValueError: bad" in record["exception"]


def test_a_child_of_systemd_checks_its_own_stderr(tmp_path):
    """As under systemd: the variable is inherited, and only the stream it names counts."""
    config = write_config(tmp_path / "imgsearchd.toml", {"log": {"format": "json", "level": "info"}})
    code = (
        "import logging, sys\n"
        "from imgsearchd.config import load_config\n"
        "from imgsearchd.logs import setup_logging\n"
        "log = load_config(sys.argv[1]).log\n"
        "setup_logging(log.level, log.format)\n"
        "logging.getLogger('imgsearchd.child').warning('hello')\n"
    )
    journal_file, other_file = tmp_path / "journal", tmp_path / "other"
    journal_file.touch()
    env = {**os.environ, "JOURNAL_STREAM": journal_stream(journal_file)}
    for path in (journal_file, other_file):
        with open(path, "w") as stderr:
            done = subprocess.run([sys.executable, "-c", code, str(config)], stderr=stderr, env=env, timeout=60)
        assert done.returncode == 0
    assert journal_file.read_text().startswith("<4>{")
    record = json.loads(other_file.read_text())
    assert record["message"] == "hello" and "time" in record


def test_log_format_is_checked(tmp_path):
    path = write_config(tmp_path / "bad.toml", {"log": {"format": "xml"}})
    with pytest.raises(ConfigError, match=r"format") as caught:
        load_config(path)
    assert "text" in str(caught.value) and "json" in str(caught.value)
    assert load_config(write_config(tmp_path / "good.toml", {"log": {"format": "json"}})).log.format == "json"


def test_a_flooding_warning_is_let_through_once_per_interval_counting_the_rest():
    now = [100.0]
    logger = logging.getLogger("imgsearchd.test.flood")
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    logger.addFilter(OncePer(10.0, clock=lambda: now[0]))
    try:
        for depth in range(1, 500):
            logger.warning("Task queue depth is %d", depth)
            now[0] += 0.01  # 500 warnings in 5 s: the first passes
        now[0] += 6.0
        logger.warning("Task queue depth is %d", 7)  # 10 s on: passes, saying what was held back
    finally:
        logger.removeHandler(handler)
    assert stream.getvalue().splitlines() == [
        "Task queue depth is 1",
        "Task queue depth is 7 (498 more since the last one, not logged)",
    ]


def test_the_http_server_summarises_waitress_queue_warnings(tmp_path):
    from imgsearchd.api.listener import QUEUE_WARNINGS, make_http_server

    config = load_config(write_config(tmp_path / "c.toml", {"server": {"port": 8080}}))
    for _ in range(2):  # a second server in the process does not stack a second filter
        server = make_http_server(config, lambda environ, start_response: [], bind=("127.0.0.1", 0))
        server.stop()
    assert logging.getLogger("waitress.queue").filters.count(QUEUE_WARNINGS) == 1


def test_a_stop_with_a_request_in_flight_answers_it_and_logs_nothing(tmp_path, caplog):
    """The stop closes the listening socket, lets the request finish (its answer goes out),
    then closes the rest. Closing the listener with waitress's own close() also closed the
    loop's wake-up pipe: the worker finishing the request hit EBADF, and the stop logged
    "I/O loop could not be woken"."""
    import threading
    import time
    import urllib.request

    from imgsearchd.api.listener import make_http_server

    started = threading.Event()

    def slow_app(environ, start_response):
        started.set()
        time.sleep(0.5)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"finished"]

    config = load_config(write_config(tmp_path / "c.toml", {"server": {"port": 8080}}))
    server = make_http_server(config, slow_app, bind=("127.0.0.1", 0))
    serving = threading.Thread(target=server.serve, daemon=True)
    serving.start()
    host, port = server.bind_addr
    answers: list[bytes] = []
    client = threading.Thread(
        target=lambda: answers.append(urllib.request.urlopen(f"http://{host}:{port}/", timeout=10).read())
    )
    client.start()
    assert started.wait(10)
    with caplog.at_level(logging.WARNING):
        server.stop()
    client.join(10)
    serving.join(10)
    assert answers == [b"finished"]
    assert not serving.is_alive()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], [r.getMessage() for r in caplog.records]
