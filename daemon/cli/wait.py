"""``imgsearchd add FOLDER --wait``: follow the daemon's folder job to its end.

On a terminal a progress bar redraws one line on stderr; otherwise a plain line without the bar
("imgsearchd: FOLDER: indexing 12/30 files (40%)") is written when the count moves (at most
one a second) and when the job ends, so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from typing import Protocol, TextIO, cast

from .answers import Answer, Job
from .output import counted, shown

FINISHED = ("done", "failed")
BAR_WIDTH = 30


class Caller(Protocol):
    def call(self, method: str, path: str) -> tuple[int, Answer]: ...


def _counts(job: Job) -> tuple[int, int, float]:
    found, done = int(job.get("found") or 0), int(job.get("done") or 0)
    fraction = min(1.0, done / found) if found else (1.0 if job.get("state") == "done" else 0.0)
    return done, found, fraction


def progress_line(job: Job) -> str:
    """``[#####.....]  40%  12/30 files  indexing`` (the count as the job knows it so far)."""
    done, found, fraction = _counts(job)
    filled = round(BAR_WIDTH * fraction)
    bar = "#" * filled + "." * (BAR_WIDTH - filled)
    return f"[{bar}] {fraction * 100:3.0f}%  {done}/{counted(found, 'file')}  {job.get('state')}"


def plain_line(job: Job) -> str:
    """``indexing 12/30 files (40%)``: the progress where stderr is not a terminal (a log, a pipe)."""
    done, found, fraction = _counts(job)
    return f"{job.get('state')} {done}/{counted(found, 'file')} ({fraction * 100:.0f}%)"


def follow_job(
    client: Caller,
    job_id: str,
    stream: TextIO | None = None,
    interval: float = 0.2,
    plain_every: float = 1.0,
) -> Job:
    """Poll ``/jobs/ID`` until it is done or failed; show progress on ``stream``; return the last state."""
    err = stream or sys.stderr
    tty = err.isatty()
    try:
        return _poll(client, job_id, err, tty, interval, plain_every)
    except BaseException:
        if tty:
            print(file=err)  # end the bar's line before the error or "interrupted"
        raise


def _poll(client: Caller, job_id: str, err: TextIO, tty: bool, interval: float, plain_every: float) -> Job:
    last_plain = ("", 0.0)
    while True:
        job = cast(Job, client.call("GET", f"/jobs/{job_id}")[1])
        finished = job.get("state") in FINISHED
        if tty:
            print(f"\r{progress_line(job)}", end="\n" if finished else "", file=err, flush=True)
        else:
            line, now = plain_line(job), time.monotonic()
            if finished or (line != last_plain[0] and now - last_plain[1] >= plain_every):
                print(f"imgsearchd: {shown(str(job.get('folder')))}: {line}", file=err, flush=True)
                last_plain = (line, now)
        if finished:
            return job
        time.sleep(interval)
