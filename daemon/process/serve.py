"""The daemon process: ``imgsearchd serve``.

Listens at once (``/health`` answers 503 while the models and indexes load), loads the
``Service``, serves until SIGTERM, reloads the settings on SIGHUP, and speaks the
systemd notify protocol. Everything about the process lives here; ``service`` only
wires the parts.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

from ..api import origin
from ..api.app import create_app
from ..api.listener import make_http_server
from ..config import Config, ConfigError
from ..extractors import ModelUnavailableError
from ..service.facade import Service
from ..store.database import CatalogError
from .data_lock import DataFolderBusy, DataLock
from .signals import SignalInbox
from .systemd import Heartbeat, Notifier

log = logging.getLogger("imgsearchd.process.serve")


# How long a stop waits for a load in progress to reach its next step (the longest step,
# loading a CLIP model, takes seconds); past it the load is abandoned, as a SIGKILL would.
LOAD_ABORT_WAIT = 30.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def run_daemon(config: Config, lock: DataLock | None = None) -> int:
    """``imgsearchd serve``: listen at once (503 while starting), load, serve until SIGTERM.

    ``lock``: the data folder's lock, already taken (``cmd_serve`` takes it before importing
    torch, so a second daemon is told at once); taken here when not given, and let go at exit.

    Speaks the systemd notify protocol when ``$NOTIFY_SOCKET`` is set: READY=1 once the
    models and indexes are loaded and the server answers, STATUS= lines with progress,
    WATCHDOG=1 pings, RELOADING=1/READY=1 around a SIGHUP reload, STOPPING=1 on SIGTERM.
    Signals only wake the main loop (``SignalInbox``); all the work happens here, in order.
    """
    if lock is None:
        lock = DataLock(config.data_dir)
        try:
            lock.acquire()
        except DataFolderBusy as exc:
            log.error("%s", exc)
            return 5  # the CLI's EXIT_BUSY (cmd_serve takes the lock itself, before torch is imported)
    try:
        return _serve(config, lock)
    finally:
        lock.release()


def _serve(config: Config, lock: DataLock) -> int:
    inbox = SignalInbox((*STOP_SIGNALS, signal.SIGHUP))
    notifier = Notifier()
    service = Service(config)
    host, port = config.server.host, config.server.port
    try:
        server = make_http_server(config, create_app(service))
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", host, port, exc)
        inbox.close()
        return 1
    bound = server.bind_addr
    lock.record(f"http://{bound[0] if ':' not in bound[0] else f'[{bound[0]}]'}:{bound[1]}")
    listener = threading.Thread(target=server.serve, name="imgsearchd-http", daemon=True)
    listener.start()
    log.info("listening on http://%s:%d", bound[0], bound[1])
    if not config.server.token and host not in origin.LOOPBACK_NAMES:
        # Off loopback over plain HTTP, browsers send no Sec-Fetch-Site and a page can hide its
        # Referer: only a token keeps other machines, and pages their users open, out.
        log.warning("listening on %s without server.token: anyone who can reach it can use the API; set a token", host)
    heartbeat = Heartbeat(notifier, service.status_line, lambda: listener.is_alive() and service.healthy())
    heartbeat.start()
    notifier.status("loading models and indexes")
    loading = _Loader(service)
    code = 0
    try:
        code = _main_loop(service, notifier, inbox, loading)
    finally:
        notifier.stopping()
        heartbeat.stop()
        server.stop()
        if loading.thread.is_alive():
            log.warning("the load did not stop within %.0f s; abandoning it", LOAD_ABORT_WAIT)
        else:
            service.close()
        notifier.close()
        inbox.close()
        log.info("stopped")
    if loading.thread.is_alive():
        logging.shutdown()
        os._exit(code)  # the load thread holds a model half-read; nothing of ours is half-written
    return code


class _Loader:
    """``Service.load`` on its own thread, so a stop is noticed while models load."""

    def __init__(self, service: Service) -> None:
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(service,), name="imgsearchd-load", daemon=True)
        self.thread.start()

    def _run(self, service: Service) -> None:
        try:
            service.load()
        except BaseException as exc:
            self.error = exc


def _main_loop(service: Service, notifier: Notifier, inbox: SignalInbox, loading: _Loader) -> int:
    """Wait for the load, then serve; SIGHUP reloads, SIGTERM/SIGINT end it. Returns the exit code."""
    loaded = reload_pending = False
    while True:
        received = inbox.wait(0.5)
        reload_pending = reload_pending or signal.SIGHUP in received
        if any(sig in STOP_SIGNALS for sig in received):
            log.info("received %s: stopping", next(sig for sig in received if sig in STOP_SIGNALS).name)
            if not loaded:
                service.abort_load()
                loading.thread.join(LOAD_ABORT_WAIT)
            return 0
        if not loaded and not loading.thread.is_alive():
            if loading.error is not None:
                return _load_failed(loading.error)
            loaded = True
            notifier.ready(service.status_line())
        if loaded and reload_pending:  # one that came while loading is applied once loaded
            reload_pending = False
            notifier.reloading()
            try:
                fresh = service.config.reload()
            except ConfigError as exc:
                log.error("reload rejected, keeping the running settings: %s", "; ".join(exc.errors))
            else:
                service.apply_config(fresh)
            notifier.ready(service.status_line())


def _load_failed(error: BaseException) -> int:
    """Log why the load failed; the exit code for it."""
    if isinstance(error, ModelUnavailableError):
        log.error("cannot start: %s", error)
        return 3
    if isinstance(error, CatalogError | OSError):  # the data folder: the message says what to fix
        log.error("cannot start: %s", error)
        return 1
    log.error("cannot start", exc_info=error)
    return 1
