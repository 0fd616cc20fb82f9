"""The HTTP API as a Bottle app: the route table (``routes``) over a running service.

The routes only read from the daemon's indexes and put work on its queue (through the
small ``Service`` facade in ``service``); they never touch files or models directly. Served
by waitress (``listener``); every request first passes the Host and cross-site checks of
``origin``, then its route's guard (``auth``), then its parameters are parsed by the route's
model (``params``, ``models.requests``). Answers and errors are JSON (``responses``,
``errors``); /openapi.json is generated from the same table (``spec``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import bottle

from ..ingest.watcher import FolderState
from ..media import images
from . import auth, origin, page, routing
from .context import Context
from .headers import ANSWER_HEADERS
from .metrics import Metrics
from .responses import error_body, json_api, json_error_page
from .routes import TABLE
from .spec import spec

if TYPE_CHECKING:
    from ..service.facade import Service


def create_app(service: Service) -> bottle.Bottle:
    """The Bottle application over a running (or starting) service."""
    app = bottle.Bottle()
    app.install(json_api)
    app.default_error_handler = json_error_page  # bottle's own errors (400, 404, 405, 500) as JSON
    sessions = page.Sessions()
    throttle = page.Throttle(lambda: service.config.server.wrong_tokens_per_minute)
    metrics = Metrics(service.stats, tuple(images.Reason), tuple(FolderState))
    context = Context(service, metrics, sessions, throttle, spec)

    @app.hook("after_request")
    def answer_headers() -> None:
        for name, value in ANSWER_HEADERS.items():
            bottle.response.set_header(name, value)

    @app.hook("before_request")
    def check_origin() -> None:
        server = service.config.server
        try:
            origin.check(bottle.request.environ, server.host, server.allowed_hosts)
        except origin.Refused as exc:
            raise error_body(403, str(exc)) from None

    routing.register(app, TABLE, context)
    page.add_routes(
        app, lambda: service.config.server.token, sessions, throttle, lambda: auth.token_file(service.config)
    )
    routing.check_documented(app, TABLE)  # a route cannot be served without its description
    return app
