"""The daemon process: signals only wake the main loop, so no signal order can hang it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from imgsearchd.process.data_lock import DataFolderBusy, DataLock, Holder, holder_of
from imgsearchd.process.signals import SignalInbox
from imgsearchd.process.systemd import Notifier

from helpers import EFFICIENTNET_FP32, NotifySocket, cli_command, free_port, wait_healthy, write_config


def test_inbox_delivers_signals_in_order_without_running_code_in_the_handler():
    inbox = SignalInbox((signal.SIGHUP, signal.SIGUSR1))
    try:
        os.kill(os.getpid(), signal.SIGHUP)
        os.kill(os.getpid(), signal.SIGUSR1)
        os.kill(os.getpid(), signal.SIGHUP)
        got: list[signal.Signals] = []
        deadline = time.monotonic() + 5
        while len(got) < 3 and time.monotonic() < deadline:
            got += inbox.wait(0.5)
        assert got == [signal.SIGHUP, signal.SIGUSR1, signal.SIGHUP]
        assert inbox.wait(0.05) == []
    finally:
        inbox.close()
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_DFL


def test_a_signal_arriving_while_the_main_thread_holds_the_notifier_lock_does_not_deadlock(tmp_path):
    """The old handler called Notifier.stopping() itself: with the lock already held, a hang."""
    sink = NotifySocket(tmp_path / "notify.sock")
    notifier = Notifier({"NOTIFY_SOCKET": str(sink.path)})
    inbox = SignalInbox((signal.SIGTERM,))
    try:
        with notifier._lock:  # the main thread inside send(), as in ready() during a reload
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.1)  # the handler runs here, between bytecodes, lock held
        assert inbox.wait(2) == [signal.SIGTERM]
        assert notifier.stopping()
        sink.wait_for("STOPPING", "1", timeout=5)
    finally:
        inbox.close()
        notifier.close()
        sink.close()


def _daemon(tmp_path, photo_dir) -> tuple[subprocess.Popen[str], int, NotifySocket]:
    port = free_port()
    tmp_path.mkdir(parents=True, exist_ok=True)
    config = write_config(
        tmp_path / "imgsearchd.toml",
        {
            "server": {"port": port},
            "index": {"data_dir": str(tmp_path / "data"), "extractors": ["efficientnet"], "fallback_extractor": ""},
            "watch": {"directories": [str(photo_dir)]},
            "extractors.efficientnet": dict(EFFICIENTNET_FP32),
        },
    )
    sink = NotifySocket(tmp_path / f"notify-{port}.sock")
    env = {**os.environ, "NOTIFY_SOCKET": str(sink.path)}
    proc = subprocess.Popen(
        cli_command("serve", "--config", str(config)),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, port, sink


def _reap(proc: subprocess.Popen[str], sink: NotifySocket) -> None:
    """Kill a daemon that did not stop (the test has failed by then) and close the socket."""
    if proc.poll() is None:
        proc.kill()
        proc.communicate()
    sink.close()


@pytest.mark.process
def test_sigterm_while_a_reload_is_stuck_notifying_systemd_still_stops(tmp_path, photos):
    """Issue 10 item 5: the old SIGTERM handler took the notifier's lock, which the main thread
    held while telling systemd about a reload: a stop then hung for ever. Here systemd stalls
    (its socket's queue is full) during a SIGHUP reload, and SIGTERM arrives meanwhile."""
    photo_dir = tmp_path / "photos"
    photo_dir.mkdir()
    photos["chelsea"].save(photo_dir / "chelsea.png")
    proc, port, sink = _daemon(tmp_path, photo_dir)
    try:
        wait_healthy(port, proc)
        sink.wait_for("READY", "1", timeout=60)
        sink.stall()
        proc.send_signal(signal.SIGHUP)
        time.sleep(0.3)  # the main loop is now blocked sending RELOADING=1
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        sink.resume()
        _, err = proc.communicate(timeout=30)
    finally:
        _reap(proc, sink)
    assert proc.returncode == 0, err
    assert "stopped" in err and "Traceback" not in err
    assert any(m.get("STOPPING") == "1" for _, m in sink.messages)


@pytest.mark.process
def test_sigterm_while_loading_stops_promptly_with_a_clean_exit(tmp_path, photos):
    photo_dir = tmp_path / "photos"
    photo_dir.mkdir()
    proc, _port, sink = _daemon(tmp_path, photo_dir)
    try:
        sink.wait_for("STATUS", "loading models and indexes", timeout=60)
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=40)
        took = time.monotonic() - started
    finally:
        _reap(proc, sink)
    assert proc.returncode == 0, err
    assert took < 35 and "stopped" in err, err
    assert not [t for t in threading.enumerate() if t.name.startswith("imgsearchd")]


@pytest.mark.process
def test_sigterm_in_the_first_second_exits_0_with_a_log_line(tmp_path):
    """While torch is still being imported, the default action would kill it (143, no log)."""
    config = write_config(
        tmp_path / "c.toml", {"server": {"port": free_port()}, "index": {"data_dir": str(tmp_path / "d")}}
    )
    for delay in (0.3, 1.0):
        proc = subprocess.Popen(cli_command("serve", "--config", str(config)), stderr=subprocess.PIPE, text=True)
        time.sleep(delay)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "stopped" in err, err


def test_the_data_folder_lock_names_its_holder_and_goes_with_it(tmp_path):
    """Two holds on one data folder (flock: even in one process): the second is refused, naming the
    first's address and pid; once the first lets go (or dies), the folder is free again."""
    data = tmp_path / "data"
    first, second = DataLock(data), DataLock(data)
    assert holder_of(data) is None  # no lock file yet
    first.acquire()
    try:
        assert holder_of(data) == Holder(os.getpid(), None)  # taken, not listening yet
        first.record("http://127.0.0.1:8123")
        with pytest.raises(DataFolderBusy) as refused:
            second.acquire()
        assert refused.value.holder == Holder(os.getpid(), "http://127.0.0.1:8123")
        assert str(refused.value) == (
            f"a daemon already serves this data folder {data} (http://127.0.0.1:8123, pid {os.getpid()})"
        )
    finally:
        first.release()
    assert holder_of(data) is None
    second.acquire()  # the file stayed; its lock did not
    second.release()


@pytest.mark.process
def test_a_killed_daemon_leaves_no_lock_behind(tmp_path):
    data = tmp_path / "data"
    code = f"from imgsearchd.process.data_lock import DataLock; import pathlib, time; DataLock(pathlib.Path({str(data)!r})).acquire(); print('held', flush=True); time.sleep(60)"
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        assert holder_of(data) == Holder(holder.pid, None)
    finally:
        holder.kill()
        holder.wait(timeout=10)
    assert holder_of(data) is None
