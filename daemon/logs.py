"""Log lines on stderr: journald's priority prefixes under systemd, else timestamps; text or JSON.

Under journald the journal stamps each line itself, so only the level is added (``<4>``...).
Whether stderr really is the journal is checked as systemd.exec(5) says: ``$JOURNAL_STREAM``
is ``device:inode`` of the stream systemd connected, and it must match stderr's own fstat;
a child that inherited the variable but writes to a file or a terminal gets timestamps.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import IO, ClassVar

FORMATS = ("text", "json")


def under_journald(stream: IO[str], env: Mapping[str, str] | None = None) -> bool:
    """Whether ``stream`` is the journal stream ``$JOURNAL_STREAM`` names (device and inode match)."""
    env = os.environ if env is None else env
    device, sep, inode = env.get("JOURNAL_STREAM", "").partition(":")
    if not (sep and device.isdigit() and inode.isdigit()):
        return False
    try:
        st = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):  # no descriptor (a captured or closed stream)
        return False
    return (st.st_dev, st.st_ino) == (int(device), int(inode))


def _local_time(created: float) -> str:
    """ISO 8601 with milliseconds and the UTC offset: unambiguous across DST and machines."""
    return datetime.fromtimestamp(created).astimezone().isoformat(timespec="milliseconds")


class JournalFormatter(logging.Formatter):
    """Prefixes each line with its syslog priority (``<3>``...), which journald turns into a level."""

    PRIORITIES: ClassVar[dict[int, int]] = {
        logging.DEBUG: 7,
        logging.INFO: 6,
        logging.WARNING: 4,
        logging.ERROR: 3,
        logging.CRITICAL: 2,
    }

    def __init__(self, inner: logging.Formatter | None = None) -> None:
        super().__init__()
        self.inner = inner or logging.Formatter("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        priority = self.PRIORITIES.get(record.levelno, 6)
        return "\n".join(f"<{priority}>{line}" for line in self.inner.format(record).splitlines())


class TextFormatter(logging.Formatter):
    """``2026-05-01T12:00:00.123+02:00 WARNING imgsearchd.search.index: message``."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return _local_time(record.created)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the traceback when there is one."""

    def __init__(self, timestamps: bool = True) -> None:
        super().__init__()
        self.timestamps = timestamps

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, str] = {}
        if self.timestamps:
            out["time"] = _local_time(record.created)
        out.update({"level": record.levelname.lower(), "logger": record.name, "message": record.getMessage()})
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        return json.dumps(out, ensure_ascii=False)


def formatter(fmt: str, journald: bool) -> logging.Formatter:
    """The formatter for ``[log] format`` (text or json), with journald's prefixes or timestamps."""
    if fmt == "json":
        # JSON lines keep their own time even in the journal: they are usually shipped on from there
        return JournalFormatter(JsonFormatter()) if journald else JsonFormatter()
    return JournalFormatter() if journald else TextFormatter()


class OncePer(logging.Filter):
    """Lets one record of a logger through every ``seconds``; the next one says how many were held back.

    For a warning logged once per event under load, such as waitress's "Task queue depth is N"
    (once per queued request): 8 s of 200 busy clients wrote 880 lines (67 KB), and waitress logs
    it from its one I/O thread *while holding its task queue's lock*, so a log sink that stops
    reading (a full pipe; journald behind) stopped every request (issue 25: /health went
    unanswered for 30 s). Held-back records cost a counter, nothing else.
    """

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.seconds = seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._next = float("-inf")
        self._held = 0

    def filter(self, record: logging.LogRecord) -> bool:
        with self._lock:
            now = self._clock()
            if now < self._next:
                self._held += 1
                return False
            held, self._held, self._next = self._held, 0, now + self.seconds
        if held:
            record.msg, record.args = f"{record.getMessage()} ({held} more since the last one, not logged)", None
        return True


def setup_logging(level: str, fmt: str = "text", stream: IO[str] | None = None) -> None:
    """The root logger writes to ``stream`` (stderr) at ``level`` in format ``fmt``."""
    stream = sys.stderr if stream is None else stream
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter(fmt, under_journald(stream)))
    logging.basicConfig(level=getattr(logging, level.upper()), handlers=[handler], force=True)
