"""The browser page: its files at ``/`` and ``/ui/<file>``, and the token login.

The page is plain HTML, CSS and JavaScript modules in the package folder ``web/`` (no build
step, no CDN: it works offline). Its files carry no data, so they are served without the
token; every request the page then makes goes through the same token, Host and cross-site
checks as a script's. ``index.html`` loads one module, ``app.js``, which imports the others
(``/ui/<name>.js``): the strict Content-Security-Policy (``script-src 'self'``) allows them,
and ``origin`` lets the browser's module requests through (``Sec-Fetch-Mode: cors``).

Login: a browser cannot add ``Authorization: Bearer`` to an ``<img src>``, so the page posts the
token once to ``POST /login`` and gets an HttpOnly, SameSite=Strict cookie (``Sessions``): a
random session id, its expiry (30 days) and an HMAC of both keyed by the token; not the token,
so a copied cookie file does not leak it, and changing the token ends every session.
``POST /logout`` revokes the id (in memory: until the daemon restarts, then the expiry still
bounds it). The cookie's name carries the port, as browsers send a host's cookies to every
port: two daemons on one machine keep their logins apart. ``POST /login`` is a request with
side effects for ``origin``, so another site cannot log the browser in; SameSite=Strict keeps
the browser from sending the cookie with a request another site starts. Wrong tokens, here or
in a Bearer header, are counted per client (``Throttle``; the local user, or the remote
address): after 10 in a minute that client's attempts wait out the minute (429), so guessing
even a short token takes years, while the owner's own CLI and page go on working.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import PurePosixPath
from typing import Any

import bottle

from . import peers
from .errors import ApiError
from .headers import header_text

COOKIE_PREFIX = "imgsearchd_session_"  # + the port
# "Entered once" (a browser restart keeps it), yet a stolen cookie does not last for ever.
SESSION_SECONDS = 30 * 24 * 3600
# The page's files by their kind: every file of web/ with one of these suffixes is served. A
# module script must come as JavaScript: browsers refuse one of any other type (and nosniff).
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
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
def assets() -> dict[str, str]:
    """The page's files and their Content-Type, listed once from the installed package.

    A requested name is looked up here, never joined to a path: nothing outside web/ is served.
    """
    folder = resources.files(__package__ or "imgsearchd") / "web"
    names = sorted(item.name for item in folder.iterdir() if item.is_file())
    kinds = {name: CONTENT_TYPES.get(PurePosixPath(name).suffix) for name in names}
    return {name: kind for name, kind in kinds.items() if kind}


@functools.cache
def asset(name: str) -> tuple[bytes, str]:
    """A page file's bytes and its ETag, read once from the installed package."""
    data = (resources.files(__package__ or "imgsearchd") / "web" / name).read_bytes()
    return data, '"' + hashlib.sha256(data).hexdigest()[:20] + '"'


class Sessions:
    """The page's logins: ``id.expiry.hmac`` cookies, checked without a store; logout revokes an id."""

    def __init__(self) -> None:
        self._revoked: dict[str, float] = {}  # id -> its expiry (then it is void anyway)
        self._lock = threading.Lock()

    @staticmethod
    def name(environ: Mapping[str, object]) -> str:
        """The cookie's name: with the port the daemon listens on."""
        return f"{COOKIE_PREFIX}{environ.get('SERVER_PORT', '')}"

    def read(self, request: bottle.BaseRequest) -> str | None:
        """The request's session cookie, if any."""
        value = request.get_cookie(self.name(request.environ))
        return value if isinstance(value, str) else None

    @staticmethod
    def _mac(token: str, session_id: str, expires: int) -> str:
        message = f"imgsearchd browser session v2:{session_id}:{expires}".encode()
        return hmac.new(token.encode(), message, hashlib.sha256).hexdigest()

    def issue(self, token: str, now: float | None = None) -> str:
        """A new session's cookie value."""
        session_id = secrets.token_urlsafe(16)
        expires = int(now if now is not None else time.time()) + SESSION_SECONDS
        return f"{session_id}.{expires}.{self._mac(token, session_id, expires)}"

    def _parse(self, value: str, token: str, now: float) -> tuple[str, int] | None:
        session_id, _, rest = value.partition(".")
        expires_text, _, mac = rest.partition(".")
        if not session_id or not expires_text.isdigit() or int(expires_text) <= now:
            return None
        if not hmac.compare_digest(mac.encode(), self._mac(token, session_id, int(expires_text)).encode()):
            return None
        return session_id, int(expires_text)

    def authorises(
        self, environ: Mapping[str, object], value: str | None, token: str, now: float | None = None
    ) -> bool:
        """Whether the request's cookie is a live session for ``token``.

        SameSite=Strict already keeps the browser from sending it cross-site; a request the
        browser marks cross-site is refused here too, in case an old browser ignores SameSite.
        """
        if not value:
            return False
        site = str(environ.get("HTTP_SEC_FETCH_SITE", "same-origin")).lower()
        if site not in ("same-origin", "none"):
            return False
        found = self._parse(value, token, time.time() if now is None else now)
        if found is None:
            return False
        with self._lock:
            return found[0] not in self._revoked

    def revoke(self, value: str | None, token: str) -> None:
        """End the session of a cookie (a valid one: an invented id is not worth remembering)."""
        now = time.time()
        found = self._parse(value or "", token, now) if token else None
        if found is None:
            return
        with self._lock:
            self._revoked = {i: e for i, e in self._revoked.items() if e > now}
            self._revoked[found[0]] = found[1]

    def set_cookie(self, environ: Mapping[str, object], value: str, max_age: int) -> str:
        return f"{self.name(environ)}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Strict"


@dataclass
class Attempt:
    """One token comparison under ``Throttle.attempt``: set ``right`` once compared."""

    right: bool = False


class Throttle:
    """Wrong tokens, counted per client (``peers.client_key``: the local user, or the remote
    address): after ``limit`` within ``window`` seconds that client's attempts are refused (429)
    until the oldest passes. Another client, the owner's CLI or page, is not: one local user
    sending wrong tokens locked everyone out for the minute when the count was global.

    A comparison in progress holds one of the client's remaining attempts until it is known
    right or wrong, and a client's attempts beyond them wait (a comparison takes microseconds):
    counted only after comparing, 60 parallel guesses got 19 compared against a limit of 10.
    """

    MAX_CLIENTS = 4096  # remembered at once; beyond them, new clients share one count (OVERFLOW)
    OVERFLOW = "many clients at once"
    # Every remote address together may try this many times the limit: one count per address
    # alone would let an IPv6 network's many /64s guess without bound.
    ALL_REMOTE = "all remote addresses"
    REMOTE_FACTOR = 10

    def __init__(self, limit: int | Callable[[], int] = 10, window: float = 60.0) -> None:
        self._limit, self.window = limit, window
        self._failures: dict[str, list[float]] = {}
        self._comparing: dict[str, int] = {}
        self._cond = threading.Condition()

    @property
    def limit(self) -> int:
        return self._limit() if callable(self._limit) else self._limit

    def _recent(self, key: str, now: float) -> list[float]:
        failures = [t for t in self._failures.get(key, ()) if t > now - self.window]
        if failures:
            self._failures[key] = failures
        else:
            self._failures.pop(key, None)
        return failures

    def _keys(self, key: str, now: float) -> list[tuple[str, int]]:
        """The counts an attempt of ``key`` must fit in, with their limits."""
        if key not in self._failures and len(self._failures) >= self.MAX_CLIENTS:
            for other in list(self._failures):
                self._recent(other, now)
            if len(self._failures) >= self.MAX_CLIENTS:
                key = self.OVERFLOW  # never forget a throttled client to make room
        keys = [(key, self.limit)]
        if key.startswith("address ") or key == self.OVERFLOW:
            keys.append((self.ALL_REMOTE, self.limit * self.REMOTE_FACTOR))
        return keys

    @contextmanager
    def attempt(self, environ: Mapping[str, object]) -> Iterator[Attempt]:
        """Compare a token inside this (429 when the request's client is over the limit); a
        wrong one is counted against that client when the block ends."""
        client = peers.client_key(environ)
        with self._cond:
            while True:
                now = time.monotonic()
                keys = self._keys(client, now)
                free = True  # room for one more comparison in every count
                for key, limit in keys:
                    failures = self._recent(key, now)
                    free = free and len(failures) + self._comparing.get(key, 0) < limit
                    if len(failures) >= limit:
                        wait = max(1, int(failures[0] + self.window - now + 1))
                        raise ApiError(
                            429,
                            f"too many wrong tokens from this client ({key}): try again in {wait} s",
                            retry_after=wait,
                        )
                if free:
                    break
                self._cond.wait(1.0)
            for key, _ in keys:
                self._comparing[key] = self._comparing.get(key, 0) + 1
        attempt = Attempt()
        try:
            yield attempt
        finally:
            with self._cond:
                stamp = time.monotonic()
                for key, _ in keys:
                    self._comparing[key] -= 1
                    if not self._comparing[key]:
                        del self._comparing[key]
                    if not attempt.right:
                        self._failures.setdefault(key, []).append(stamp)
                self._cond.notify_all()


def token_matches(given: bytes, token: str) -> bool:
    """Whether the bytes a client sent are the token (its UTF-8), in constant time."""
    return hmac.compare_digest(given, token.encode("utf-8"))


def _given_token() -> str:
    """The token from a JSON body ``{"token": ...}`` or a form field ``token``; 400 for any
    body that is neither (bytes that are not UTF-8 in a form, JSON nested past Python's limit)."""
    content_type = (bottle.request.content_type or "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            body = json.loads(bottle.request.body.read(4096) or b"{}")
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "the request body is not valid JSON") from None
        except RecursionError:
            raise ApiError(400, "the JSON body is nested too deeply") from None
        token = body.get("token") if isinstance(body, dict) else None
    else:
        try:
            token = bottle.request.forms.getunicode("token")
        except (UnicodeError, ValueError):
            raise ApiError(400, "the form is not valid UTF-8 (or not a form): send the token as JSON") from None
    if not isinstance(token, str) or not token:
        raise ApiError(400, 'missing token: send JSON {"token": "..."} or a form field token')
    return token


def add_routes(
    app: bottle.Bottle,
    token: Callable[[], str],
    sessions: Sessions,
    throttle: Throttle,
    token_file: Callable[[], str | None] = lambda: None,
) -> None:
    """``/``, ``/ui/<file>``, ``/login`` and ``POST /logout`` on ``app``; ``token`` reads the setting,
    ``token_file`` the settings file it is in (the login form names it; never the token)."""

    def page_file(name: str) -> bottle.HTTPResponse:
        kind = assets().get(name)
        if kind is None:
            raise ApiError(404, f"no page file {name!r}; the page is at /")
        data, etag = asset(name)
        headers = {**PAGE_HEADERS, "ETag": etag, "Content-Type": kind}
        if etag in header_text(bottle.request.environ, "If-None-Match"):
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
        cookie = sessions.read(bottle.request)
        authorised = not expected or sessions.authorises(bottle.request.environ, cookie, expected)
        if not expected:
            return {"token_required": False, "authorised": authorised}
        return {"token_required": True, "authorised": authorised, "token_file": token_file()}

    @app.post("/login")
    def login() -> Any:
        expected = token()
        if not expected:
            return {"ok": True, "token_required": False}
        given = _given_token()
        with throttle.attempt(bottle.request.environ) as attempt:
            # A JSON string may hold a lone surrogate ("\ud800"), which has no UTF-8: kept as
            # bytes that match no token, not a 500.
            attempt.right = token_matches(given.encode("utf-8", "surrogatepass"), expected)
        if not attempt.right:
            raise ApiError(401, "wrong token (server.token in the daemon's settings)")
        body = json.dumps({"ok": True, "token_required": True})
        headers = {
            "Content-Type": "application/json",
            "Set-Cookie": sessions.set_cookie(bottle.request.environ, sessions.issue(expected), SESSION_SECONDS),
        }
        return bottle.HTTPResponse(body=body, status=200, headers=headers)

    @app.post("/logout")
    def logout() -> Any:
        sessions.revoke(sessions.read(bottle.request), token())
        headers = {"Content-Type": "application/json", "Set-Cookie": sessions.set_cookie(bottle.request.environ, "", 0)}
        return bottle.HTTPResponse(body=json.dumps({"ok": True}), status=200, headers=headers)
