"""The daemon process: ``imgsearchd serve``.

Listens at once (``/health`` answers 503 while the models and indexes load), loads the
``Service``, serves until SIGTERM, reloads the settings on SIGHUP, and speaks the
systemd notify protocol. Everything about the process lives here; ``service`` only
wires the parts.
"""

from __future__ import annotations

import logging
import signal
import threading

from .config import Config, ConfigError
from .extractors import ModelUnavailableError
from .http_server import make_http_server
from .server import create_app
from .service import Service
from .systemd import Heartbeat, Notifier

log = logging.getLogger("imgsearchd.serve")


def run_daemon(config: Config) -> int:
    """``imgsearchd serve``: listen at once (503 while starting), load, serve until SIGTERM.

    Speaks the systemd notify protocol when ``$NOTIFY_SOCKET`` is set: READY=1 once the
    models and indexes are loaded and the server answers, STATUS= lines with progress,
    WATCHDOG=1 pings, RELOADING=1/READY=1 around a SIGHUP reload, STOPPING=1 on SIGTERM.
    """
    notifier = Notifier()
    service = Service(config)
    host, port = config.server["host"], config.server["port"]
    try:
        server = make_http_server(config, create_app(service))
    except OSError as exc:
        log.error("cannot listen on %s:%d: %s", host, port, exc)
        return 1
    bound = server.bind_addr
    listener = threading.Thread(target=server.serve, name="imgsearchd-http", daemon=True)
    listener.start()
    log.info("listening on http://%s:%d", bound[0], bound[1])
    stop = threading.Event()
    reload_wanted = threading.Event()

    def on_stop(signum: int, _frame: object) -> None:
        log.info("received %s: stopping", signal.Signals(signum).name)
        notifier.stopping()
        stop.set()
        if not service.ready and service.phase != "stopping":
            raise SystemExit(0)  # still loading: abandon the load, nothing is half-written

    def on_hup(_signum: int, _frame: object) -> None:
        reload_wanted.set()

    previous = {sig: signal.signal(sig, on_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, on_hup)
    heartbeat = Heartbeat(notifier, service.status_line, lambda: listener.is_alive() and service.healthy())
    code = 0
    try:
        heartbeat.start()
        notifier.status("loading models and indexes")
        service.load()
        notifier.ready(service.status_line())
        while not stop.is_set():
            if reload_wanted.wait(0.5):
                reload_wanted.clear()
                if stop.is_set():
                    break
                notifier.reloading()
                try:
                    fresh = service.config.reload()
                except ConfigError as exc:
                    log.error("reload rejected, keeping the running settings: %s", exc)
                else:
                    service.apply_config(fresh)
                notifier.ready(service.status_line())
    except ModelUnavailableError as exc:
        log.error("cannot start: %s", exc)
        code = 3
    except SystemExit:
        pass
    except Exception:
        log.exception("cannot start")
        code = 1
    finally:
        notifier.stopping()
        heartbeat.stop()
        server.stop()
        service.close()
        notifier.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        log.info("stopped")
    return code
