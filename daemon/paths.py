"""File paths as the catalogue keys them: absolute, normalised, links not resolved.

A Linux file name is bytes, not text: an old archive or a zip extraction may hold names
in Latin-1 or any other encoding. Inside the daemon a path is a ``str`` decoded the way
Python's ``os`` functions decode it (UTF-8, each undecodable byte kept as a lone
surrogate, "surrogateescape"), so it round-trips to the same bytes. At the edges:
the catalogue stores the bytes themselves (``path_key``), and the HTTP API takes
percent-encoded bytes in a query string (``from_query``) and writes such a name in JSON
as ``\\udcXX`` escapes plus ``path_base64`` (``json_fields``). ``fsync_dir`` makes a name
made, renamed or removed in a folder durable (the snapshots' and the duplicates' actions').
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable


def normalise_path(path: str | os.PathLike[str]) -> str:
    """The catalogue key of a file: absolute and normalised, links not resolved.

    POSIX lets ``//`` at the start mean something else than ``/``, so ``normpath`` keeps
    it; on Linux it is the same folder, and two keys for one file would give duplicate
    results that are never removed.
    """
    normal = os.path.normpath(os.path.abspath(os.fspath(path)))
    if normal.startswith("//"):
        normal = "/" + normal.lstrip("/")
    return normal


def is_under(path: str, root: str) -> bool:
    """True when normalised ``path`` is ``root`` or lies below it."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def is_inside(real: str, roots: Iterable[str]) -> bool:
    """True when ``real`` (a path with its links resolved) is one of ``roots`` or below one."""
    return any(is_under(real, root) for root in roots)


def path_key(path: str) -> bytes:
    """The bytes of a path, as the file system holds them (the catalogue's key)."""
    return os.fsencode(path)


def path_from_key(key: bytes | str) -> str:
    """A path read back from the catalogue."""
    return os.fsdecode(key)


def is_text(path: str) -> bool:
    """True when the name is valid UTF-8 (no undecodable bytes carried as surrogates)."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable(path: str) -> str:
    """The name as valid text: bytes that are not UTF-8 as ``\\xe9`` escapes (a log line, a
    Prometheus label: both must be UTF-8, and a lone surrogate made every scrape a 500)."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def from_query(native: str) -> str:
    """A path from a query string, as Bottle hands it over (bytes decoded as Latin-1).

    Percent-encoded bytes that are not UTF-8 (``%E9``) become the file's real name.
    """
    return native.encode("latin-1").decode("utf-8", "surrogateescape")


def json_fields(path: str, key: str = "image") -> dict[str, str]:
    """``{key: path}``, plus ``path_base64`` (the raw bytes) when the name is not UTF-8."""
    if is_text(path):
        return {key: path}
    return {key: path, "path_base64": base64.b64encode(path_key(path)).decode("ascii")}


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a folder: the names made, renamed or removed in it survive a power loss."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
