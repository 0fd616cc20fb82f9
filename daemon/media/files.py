"""Image files opened safely: the only place that opens them, by name, to read, send or measure.

``read_file`` reads a file's bytes once (size-capped) with a consistent stat; ``open_original``
opens one to send as it is, its content type from its bytes; ``header_size`` reads a size from
the header alone. Each opens without blocking (a FIFO swapped in is refused), refuses what is
not a regular file, and with ``roots`` checks on the open file that it lies inside them.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from typing import BinaryIO

from PIL import Image

from ..paths import is_inside
from . import formats
from .failures import ImageError, Reason, decode_errors, os_error
from .limits import ImageLimits
from .rgb import TURNED, orientation, raw_turn


@dataclass(frozen=True)
class FileBytes:
    """A file's content and the stat taken from the same open file."""

    path: str
    size: int
    mtime_ns: int
    data: bytes

    @property
    def content_hash(self) -> str:
        return content_hash(self.data)


def content_hash(data: bytes) -> str:
    """A short, collision-safe fingerprint of a file's bytes."""
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def stat_file(path: str) -> os.stat_result:
    """``os.stat`` with failures turned into ImageError."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise os_error(exc) from exc
    if not stat.S_ISREG(st.st_mode):
        raise ImageError(Reason.NOT_A_FILE, "not a regular file")
    return st


def opened_path(fd: int) -> str:
    """Where an open file really is: the kernel's name for it, every link resolved."""
    return os.readlink(f"/proc/self/fd/{fd}")


def check_inside(fd: int, roots: Sequence[str]) -> None:
    """Refuse an open file that is not below one of ``roots`` (real paths).

    Checked on the file already open, so a name swapped for a link between a check and
    the read cannot smuggle another file's content in.
    """
    try:
        real = opened_path(fd)
    except OSError:
        real = ""
    if not is_inside(real, roots):
        raise ImageError(Reason.OUTSIDE_ROOTS, f"leads to {real or 'an unknown place'}, outside the allowed folders")


def open_regular(path: str) -> int:
    """Open a regular file for reading without ever blocking on it (a FIFO swapped in)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise os_error(exc) from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ImageError(Reason.NOT_A_FILE, "not a regular file")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def read_file(path: str, limits: ImageLimits = ImageLimits(), roots: Sequence[str] | None = None) -> FileBytes:
    """Read a whole image file, refusing empty, oversized and unreadable ones.

    With ``roots``, a file whose real location (links resolved) is not below one of them
    is refused with ``Reason.OUTSIDE_ROOTS``.
    """
    st = stat_file(path)
    if st.st_size > limits.max_file_bytes:
        raise ImageError(Reason.TOO_LARGE, f"file is {st.st_size} bytes, over the {limits.max_file_bytes}-byte cap")
    fd = open_regular(path)
    try:
        with os.fdopen(fd, "rb") as fh:
            if roots:
                check_inside(fh.fileno(), roots)
            st = os.fstat(fh.fileno())
            # Ask for the size fstat reported, plus one byte to notice growth, not for the
            # whole cap: read(n) allocates n bytes up front, so asking for the 100 MB cap made
            # every file pay for a 100 MB allocation (half the read time of a 3 MB JPEG).
            # A file that grew since fstat is read on, up to the cap, as before.
            # The hash stays a second pass (``content_hash``): hashing each chunk as it is read
            # (``readinto`` 64 KiB-1 MiB chunks of one buffer) saved nothing on 2.5 MB 12-MP JPEGs
            # (issue 31: 2.9 ms read + hash either way; BLAKE2b runs at ~0.93 GB/s, bound by its
            # arithmetic, not by memory: the bytes just read are still in cache), and making the
            # buffer the ``bytes`` that decoders take cost a 0.3 ms copy (3.25 ms in all).
            want = min(st.st_size, limits.max_file_bytes) + 1
            data = fh.read(want)
            if len(data) == want and want <= limits.max_file_bytes:
                data += fh.read(limits.max_file_bytes + 1 - want)
    except OSError as exc:
        raise os_error(exc) from exc
    if not data:
        raise ImageError(Reason.EMPTY, "file is empty")
    if len(data) > limits.max_file_bytes:
        raise ImageError(Reason.TOO_LARGE, f"file is over the {limits.max_file_bytes}-byte cap")
    return FileBytes(path=path, size=len(data), mtime_ns=st.st_mtime_ns, data=data)


# Content types of the formats read, by Pillow's name (MPO is a JPEG with extra frames).
CONTENT_TYPES = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "BMP": "image/bmp",
    "TIFF": "image/tiff",
    **formats.CONTENT_TYPES,  # HEIF, AVIF and camera RAW, by the kind ``formats.sniff`` names
}


def open_original(
    path: str, limits: ImageLimits = ImageLimits(), roots: Sequence[str] | None = None
) -> tuple[BinaryIO, int, str]:
    """Open an image file to send as it is: (the open file at its start, its size, its content type).

    A regular file, within the size cap, inside ``roots`` (checked on the open file) and an
    image by its header: the content type comes from the bytes, never from the name.
    """
    fh = os.fdopen(open_regular(path), "rb")
    try:
        if roots:
            check_inside(fh.fileno(), roots)
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            raise ImageError(Reason.EMPTY, "file is empty")
        if size > limits.max_file_bytes:
            raise ImageError(Reason.TOO_LARGE, f"file is {size} bytes, over the {limits.max_file_bytes}-byte cap")
        kind = formats.sniff(fh.read(formats.HEAD_BYTES)) or ""  # RAW and HEIF need no decoder to be sent
        fh.seek(0)
        if kind not in formats.CONTENT_TYPES:
            with decode_errors():
                kind = Image.open(fh, formats=formats.SUPPORTED_FORMATS).format or ""  # the header only
            fh.seek(0)
    except OSError as exc:
        fh.close()
        raise os_error(exc) from exc
    except BaseException:
        fh.close()
        raise
    return fh, size, CONTENT_TYPES.get(kind, "application/octet-stream")


def header_size(path: str, roots: Sequence[str] | None = None) -> tuple[int, int] | None:
    """(width, height) as shown (EXIF orientation applied), read from the header alone; None when unreadable.

    Pillow's open is lazy: nothing is decoded. With ``roots``, a file that really lies
    outside them gives None, as an unreadable one does.
    """
    try:
        fd = open_regular(path)
    except ImageError:
        return None
    try:
        with os.fdopen(fd, "rb") as fh:
            if roots:
                check_inside(fh.fileno(), roots)
            if formats.sniff(fh.read(formats.HEAD_BYTES)) in formats.RAW_KINDS:
                return _raw_header_size(fh.fileno())
            fh.seek(0)
            with Image.open(fh, formats=formats.SUPPORTED_FORMATS) as image:
                width, height = image.size
                if orientation(image) in TURNED:
                    width, height = height, width
                return (width, height) if width > 0 and height > 0 else None
    except Exception:  # any header Pillow cannot read: the size is unknown, the listing goes on
        return None


def _raw_header_size(fd: int) -> tuple[int, int] | None:
    """A RAW file's (width, height) as shown, from LibRaw reading its header through the open file."""
    if not formats.RAW_AVAILABLE:
        return None
    with formats.open_raw_file(f"/proc/self/fd/{fd}") as raw:  # the file already opened and checked
        sizes = raw.sizes
        width, height = sizes.width, sizes.height
        if raw_turn(sizes.flip) in TURNED:
            width, height = height, width
        return (width, height) if width > 0 and height > 0 else None
