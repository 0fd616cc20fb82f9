"""Who may talk to the API from a browser: the Host check and the cross-site check.

A web page the user opens can make the browser send requests to the daemon. Two defences:

* **Host** (DNS rebinding): a page at ``evil.example`` whose name is re-pointed at 127.0.0.1
  reaches the daemon as same-origin and could read ``/search`` and ``/stats``, but its
  requests carry ``Host: evil.example``. Accepted: localhost, 127.0.0.1, [::1], the
  configured ``server.host``, and ``server.allowed_hosts`` entries (``name`` for any port,
  ``name:port`` for one; ``"*"`` accepts any Host). When bound to a wildcard (0.0.0.0, ::)
  the machine's addresses are not known ahead, so any IP-address Host and the machine's own
  host name are accepted too: rebinding needs a DNS name, an IP literal cannot be rebound.
  Ports are not compared for the built-in names: SSH tunnels and port forwards change the
  port, rebinding changes the name.
* **Cross-site** (CSRF and cross-site reads): ``<img src="http://127.0.0.1:8080/remove?image=...">``
  on any page changes the index; ``<img src=".../search?image=...">`` or ``/thumbnail`` tells
  the page, by the status or the delay, which files and folders exist (and costs an
  embedding); a ``text/plain`` POST of a picture needs no CORS preflight. So every request but
  the page's own files (``/``, ``/ui/<file>``: no data) is refused, the same 403 whatever the
  file or folder, when the browser marks it as from another site (``Sec-Fetch-Site`` other
  than ``same-origin``/``none``; ``same-site`` is another port of localhost too), or it
  carries an ``Origin`` or ``Referer`` that is not the request's own host. Scripts and curl
  send none of these and are not affected. ``/thumbnail`` and ``/original`` also answer with
  ``Cross-Origin-Resource-Policy: same-origin`` (``routes_files``). JSON answers cannot be read by
  another site without CORS, which is never sent.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARD_HOSTS = ("0.0.0.0", "::", "")
# and /ui/<file>: the page's module scripts come with Sec-Fetch-Mode: cors, Sec-Fetch-Dest:
# script and (some browsers) an Origin, and pass here whatever those say, like the page itself.
PAGE_PATHS = ("/",)


class Refused(Exception):
    """A request refused by these checks; the message names the header and the setting."""


def split_host(value: str) -> tuple[str, int | None]:
    """``name:port``, ``[v6]:port`` or a bare name as (lower-case name without brackets, port)."""
    value = value.strip().lower()
    if value.startswith("["):
        name, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        name, _, port = value.partition(":")
    else:
        name, port = value, ""  # a bare name, or an unbracketed IPv6 address
    name = name.rstrip(".")
    return name, int(port) if port.isdigit() else None


def _is_ip(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


@functools.cache
def machine_names() -> frozenset[str]:
    """This machine's host name (short and as given), for a daemon bound to a wildcard."""
    name = socket.gethostname().lower()
    return frozenset({name, name.split(".")[0]})


def host_allowed(header: str, bind_host: str, allowed: Sequence[str]) -> bool:
    """Whether a request's Host header names this daemon (see the module docstring)."""
    if "*" in allowed:
        return True
    name, port = split_host(header)
    if name in LOOPBACK_NAMES or name == split_host(bind_host)[0]:
        return True
    for entry in allowed:
        allowed_name, allowed_port = split_host(entry)
        if name == allowed_name and allowed_port in (None, port):
            return True
    if bind_host in WILDCARD_HOSTS:
        return _is_ip(name) or name in machine_names()
    return False


def same_origin(origin: str, host: str) -> bool:
    """Whether an Origin header names the same host and port as the Host header.

    The scheme only gives the default port: behind a TLS proxy the daemon speaks plain HTTP
    to the proxy while the browser's Origin says https.
    """
    parts = urlsplit(origin)
    default = {"http": 80, "https": 443}.get(parts.scheme)
    if default is None:  # "null" (a sandboxed page, a file: URL) or nonsense
        return False
    origin_name, origin_port = split_host(parts.netloc)
    host_name, host_port = split_host(host)
    return origin_name == host_name and (origin_port or default) == (host_port or default)


def is_page(path: str) -> bool:
    """The page's own files, which carry no data: the only answers another site may link to."""
    return path in PAGE_PATHS or path.startswith("/ui/")


def _text(environ: Mapping[str, object], key: str) -> str | None:
    """A CGI variable of the WSGI environ (a str, by PEP 3333), or None when it is absent."""
    value = environ.get(key)
    return value if isinstance(value, str) else None


def check(environ: Mapping[str, object], bind_host: str, allowed: Sequence[str]) -> None:
    """Raise ``Refused`` for a foreign Host, or a cross-site request for anything but the page."""
    host = _text(environ, "HTTP_HOST")
    if host is not None and not host_allowed(host, bind_host, allowed):
        raise Refused(
            f"Host {host!r} is not this daemon's name: use localhost, 127.0.0.1 or [::1], "
            "or add the name to server.allowed_hosts (behind a reverse proxy)"
        )
    path = _text(environ, "PATH_INFO") or ""
    if is_page(path):
        return  # the page's own files: a link from another site may open it
    what = f"{path} answers this daemon's page and programs only"
    site = _text(environ, "HTTP_SEC_FETCH_SITE")
    if site is not None and site.lower() not in ("same-origin", "none"):
        raise Refused(f"cross-site request refused (Sec-Fetch-Site: {site}): {what}")
    origin = _text(environ, "HTTP_ORIGIN")
    if origin is not None and not same_origin(origin, host or ""):
        raise Refused(f"cross-origin request refused (Origin: {origin}): {what}")
    # Over plain HTTP to a name that is not loopback, browsers send neither Sec-Fetch-Site
    # nor (for an <img>) Origin; a Referer from another page still gives it away. A page
    # can suppress the Referer, so off loopback only a token keeps other pages out.
    referer = _text(environ, "HTTP_REFERER")
    if referer and not same_origin(referer, host or ""):
        raise Refused(f"cross-site request refused (Referer from another site): {what}")
