"""The browser page: its three files at ``/`` and ``/ui/<file>``, and the token login.

The page is plain HTML, CSS and JavaScript in the package folder ``web/`` (no build step, no
CDN: it works offline). Its files carry no data, so they are served without the token; every
request the page then makes goes through the same token, Host and cross-site checks as a
script's.

Login: a browser cannot add ``Authorization: Bearer`` to an ``<img src>``, so the page posts the
token once to ``POST /login`` and gets an HttpOnly, SameSite=Strict cookie holding an HMAC of
the token (not the token: a copied cookie file does not leak it, and changing the token ends
every session). ``POST /login`` is a request with side effects for ``origin``, so another site
cannot log the browser in; SameSite=Strict keeps the browser from sending the cookie with a
request another site starts.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
from collections.abc import Callable, Mapping
from importlib import resources
from typing import Any

import bottle

from .errors import ApiError

COOKIE = "imgsearchd_session"
# "Entered once": the cookie outlives a browser restart; Chrome caps cookie lifetimes at 400 days.
COOKIE_MAX_AGE = 400 * 24 * 3600
ASSETS = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
# Only the page's own files run; images may be blob: (a dropped query image's preview).
# frame-ancestors: no other site may frame the page and trick clicks out of it.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
PAGE_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    # Revalidated each load (an upgrade changes them), answered 304 by ETag when unchanged.
    "Cache-Control": "no-cache",
}


@functools.cache
def asset(name: str) -> tuple[bytes, str]:
    """A page file's bytes and its ETag, read once from the installed package."""
    data = (resources.files(__package__ or "imgsearchd") / "web" / name).read_bytes()
    return data, '"' + hashlib.sha256(data).hexdigest()[:20] + '"'


def session_value(token: str) -> str:
    """The cookie's value for a token: an HMAC, so the cookie never holds the token itself."""
    return hmac.new(token.encode(), b"imgsearchd browser session v1", hashlib.sha256).hexdigest()


def cookie_authorises(environ: Mapping[str, Any], cookie: str | None, token: str) -> bool:
    """Whether the request's session cookie stands for ``token``.

    SameSite=Strict already keeps the browser from sending it cross-site; a request the
    browser marks cross-site is refused here too, in case an old browser ignores SameSite.
    """
    if not cookie:
        return False
    site = str(environ.get("HTTP_SEC_FETCH_SITE", "same-origin")).lower()
    if site not in ("same-origin", "none"):
        return False
    return hmac.compare_digest(cookie.encode(), session_value(token).encode())


def _session_cookie(value: str, max_age: int) -> str:
    return f"{COOKIE}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict"


def _given_token() -> str:
    """The token from a JSON body ``{"token": ...}`` or a form field ``token``."""
    content_type = (bottle.request.content_type or "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            body = json.loads(bottle.request.body.read(4096) or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "the request body is not valid JSON") from None
        token = body.get("token") if isinstance(body, dict) else None
    else:
        token = bottle.request.forms.getunicode("token")
    if not isinstance(token, str) or not token:
        raise ApiError(400, 'missing token: send JSON {"token": "..."} or a form field token')
    return token


def add_routes(app: bottle.Bottle, token: Callable[[], str]) -> None:
    """``/``, ``/ui/<file>``, ``/login`` and ``POST /logout`` on ``app``; ``token`` reads the setting."""

    def page_file(name: str) -> bottle.HTTPResponse:
        if name not in ASSETS:
            raise ApiError(404, f"no page file {name!r}; the page is at /")
        data, etag = asset(name)
        headers = {**PAGE_HEADERS, "ETag": etag, "Content-Type": ASSETS[name]}
        if etag in bottle.request.get_header("If-None-Match", ""):
            return bottle.HTTPResponse(status=304, headers=headers)
        return bottle.HTTPResponse(body=data, status=200, headers=headers)

    @app.get("/")
    def index() -> Any:
        return page_file("index.html")

    @app.get("/ui/<name>")
    def ui(name: str) -> Any:
        return page_file(name)

    @app.get("/login")
    def login_state() -> Any:
        """Whether the page must ask for the token: asked before any other call, so never a 401."""
        expected = token()
        cookie = bottle.request.get_cookie(COOKIE)
        authorised = not expected or cookie_authorises(bottle.request.environ, cookie, expected)
        return {"token_required": bool(expected), "authorised": authorised}

    @app.post("/login")
    def login() -> Any:
        expected = token()
        if not expected:
            return {"ok": True, "token_required": False}
        if not hmac.compare_digest(_given_token().encode(), expected.encode()):
            raise ApiError(401, "wrong token (server.token in the daemon's settings)")
        body = json.dumps({"ok": True, "token_required": True})
        headers = {
            "Content-Type": "application/json",
            "Set-Cookie": _session_cookie(session_value(expected), COOKIE_MAX_AGE),
        }
        return bottle.HTTPResponse(body=body, status=200, headers=headers)

    @app.post("/logout")
    def logout() -> Any:
        headers = {"Content-Type": "application/json", "Set-Cookie": _session_cookie("", 0)}
        return bottle.HTTPResponse(body=json.dumps({"ok": True}), status=200, headers=headers)
