"""Who may call a route: the token (a Bearer header, or the page's login cookie), counted
per client when wrong (``page.Throttle``), and a daemon that has loaded."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import bottle

from . import page
from .errors import ApiError
from .headers import header_bytes

if TYPE_CHECKING:
    from ..config import Config
    from ..service.facade import Service
    from .context import Context


def authorise(context: Context) -> None:
    """Nothing when no token is set or the request carries it; else 401 (or 429: too many wrong)."""
    token = context.service.config.server.token
    if not token:
        return
    environ = bottle.request.environ
    header = header_bytes(environ, "Authorization")  # any bytes: compared as bytes, never decoded
    if not header and context.sessions.authorises(environ, context.sessions.read(bottle.request), token):
        return  # the page's login cookie (page.py) stands in for the header
    scheme, _, given = header.partition(b" ")
    if scheme.lower() == b"bearer" and given.strip():
        with context.throttle.attempt(environ) as attempt:  # wrong ones counted per client: guessing takes years
            attempt.right = page.token_matches(given.strip(), token)
        if attempt.right:
            return
    raise ApiError(401, "missing or wrong token: send 'Authorization: Bearer <token>' (or log in on the page at /)")


def authorised(context: Context) -> bool:
    """Whether the request may see details on an open route (``/health``): True with no token set,
    a right Bearer token or a live login cookie; False with neither. A wrong token is still a 401
    (or 429), counted as on every route, so an open route is no way to guess the token."""
    if not context.service.config.server.token:
        return True
    environ = bottle.request.environ
    if not header_bytes(environ, "Authorization"):
        token = context.service.config.server.token
        return context.sessions.authorises(environ, context.sessions.read(bottle.request), token)
    authorise(context)
    return True


def token_file(config: Config) -> str | None:
    """The settings file server.token was read from (the login page names it); None when the token
    was not in a file: set by the program that built the config (``load_config``'s overrides)."""
    if config.source is None or "server.token" in config.overrides:
        return None
    return os.path.abspath(config.source)  # as the daemon read it (its working folder is the same)


def require_ready(service: Service) -> None:
    """503 while the daemon loads its models and indexes."""
    if not service.ready:
        raise ApiError(503, f"imgsearchd is starting ({service.phase}); try again shortly")
