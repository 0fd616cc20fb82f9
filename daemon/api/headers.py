"""Request headers read as the bytes they are, and the headers every answer carries.

WSGI hands header values over as Latin-1-decoded text (PEP 3333), so any byte survives;
Bottle's ``request.get_header`` decodes them again as UTF-8 and raises on a byte that is
not (one ``\\xff`` in ``If-None-Match`` or ``Authorization`` answered 500). Read here,
a header is the client's bytes (``header_bytes``) or that text (``header_text``), never
an exception.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import quote

# On every answer: JSON errors echo their input, so no browser may sniff one into HTML
# (nosniff); X-Frame-Options for browsers older than CSP's frame-ancestors (the page's own).
ANSWER_HEADERS = {"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY"}


def _environ_key(name: str) -> str:
    key = name.upper().replace("-", "_")
    return key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else f"HTTP_{key}"


def header_text(environ: Mapping[str, object], name: str) -> str:
    """A header's value as WSGI gives it (each byte one Latin-1 character); "" when absent."""
    value = environ.get(_environ_key(name), "")
    return value if isinstance(value, str) else ""


def header_bytes(environ: Mapping[str, object], name: str) -> bytes:
    """A header's value as the bytes the client sent; b"" when absent."""
    return header_text(environ, name).encode("latin-1", "replace")


def content_disposition(path: str, disposition: str = "inline") -> str:
    """``Content-Disposition`` naming ``path``'s file (RFC 6266): an ASCII ``filename`` for old
    clients and a ``filename*`` in UTF-8 (RFC 5987); bytes of a name that is not UTF-8 (a
    Latin-1 name from an old disk) become U+FFFD there, never bytes that claim to be UTF-8."""
    name = os.fsencode(os.path.basename(path)).decode("utf-8", "replace")
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in name) or "image"
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{quote(name.encode('utf-8'), safe='')}"
