"""Moving, linking and copying one file without ever having it in neither place.

On one file system a move is a rename. Across file systems it is a copy under a hidden
temporary name next to the target, fsynced, renamed to the target, then the source unlinked:
a crash leaves the source whole (and at most a temporary file, which recovery removes) or the
target whole. A link is a hard link to the keeper made under a temporary name and renamed over
the copy (atomic: the path always holds the picture). ``independent_copy`` undoes a link: the
keeper's bytes copied back under a temporary name, the old mode and mtime set, renamed over.
"""

from __future__ import annotations

import errno
import hashlib
import os
import shutil
from pathlib import Path

from ..paths import fsync_dir

TEMP_PREFIX = ".imgsearchd-"  # hidden: the watcher and the scans never index it
TEMP_SUFFIX = ".tmp"
CHUNK = 1 << 20


def temp_name(target: str, tag: str) -> str:
    """The temporary name for ``target`` (same folder, hidden): ``.imgsearchd-TAG-NAME.tmp``."""
    folder, name = os.path.split(target)
    return os.path.join(folder, f"{TEMP_PREFIX}{tag}-{name}{TEMP_SUFFIX}")


def hash_file(path: str) -> str:
    """The catalogue's content hash (blake2b, 16 bytes) of a file, read in chunks."""
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _copy_synced(source: str, temp: str) -> None:
    """``source``'s bytes, mode and times into a new ``temp``, fsynced."""
    with open(source, "rb") as src, open(temp, "xb") as dst:
        shutil.copyfileobj(src, dst, CHUNK)
        dst.flush()
        shutil.copystat(source, temp)
        os.fsync(dst.fileno())


def move_file(source: str, target: str, tag: str) -> None:
    """Move a file to ``target`` (its folder made); ``FileExistsError`` when something is there."""
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if os.path.lexists(target):
        raise FileExistsError(errno.EEXIST, "exists already", target)
    try:
        os.rename(source, target)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    temp = temp_name(target, tag)
    try:
        _copy_synced(source, temp)
        if os.path.lexists(target):
            raise FileExistsError(errno.EEXIST, "exists already", target)
        os.rename(temp, target)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    fsync_dir(os.path.dirname(target))
    try:
        os.unlink(source)
    except OSError:  # a source folder the daemon may not write: the file stays where it was, once
        os.unlink(target)
        raise


def link_file(keeper: str, path: str, tag: str) -> None:
    """Replace ``path`` by a hard link to ``keeper`` (same file system), atomically."""
    temp = temp_name(path, tag)
    os.link(keeper, temp)
    try:
        os.rename(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def independent_copy(keeper: str, path: str, mode: int, mtime_ns: int, tag: str) -> None:
    """Put an independent copy of ``keeper``'s bytes at ``path`` with ``mode`` and ``mtime_ns``
    (undoing ``link_file``), atomically."""
    temp = temp_name(path, tag)
    try:
        _copy_synced(keeper, temp)
        os.chmod(temp, mode & 0o7777)
        st = os.stat(temp)
        os.utime(temp, ns=(st.st_atime_ns, mtime_ns))
        os.rename(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def same_file(a: str, b: str) -> bool:
    """Whether two paths name one inode (a hard link)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False
