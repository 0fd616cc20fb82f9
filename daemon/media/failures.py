"""Why an image cannot be used: one short word, and every library's failure turned into it.

Every failure to stat, open, read or decode a picture is an ``ImageError`` whose ``reason``
is a ``Reason``; ``os_error`` and ``decode_errors`` turn the operating system's and the
decoders' many exception types (Pillow, libavif, libheif, LibRaw) into one.
"""

from __future__ import annotations

import errno
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from enum import StrEnum

from PIL import Image, UnidentifiedImageError

from . import formats


class Reason(StrEnum):
    """Why an image could not be used: the ``reason`` of an ImageError, one short word."""

    MISSING = "missing"
    NOT_A_FILE = "not_a_file"
    UNREADABLE = "unreadable"
    EMPTY = "empty"
    TOO_LARGE = "too_large"
    NOT_AN_IMAGE = "not_an_image"
    TRUNCATED = "truncated"
    CORRUPT = "corrupt"
    OUTSIDE_ROOTS = "outside_roots"  # a link that leads out of the watched folders and allowed roots
    INTERNAL = "internal_error"  # a bug in imgsearchd or a library: the log has the traceback
    MISSING_LIBRARY = "missing_library"  # HEIC, AVIF or RAW whose optional decoder is not installed


# Reasons that say nothing about the file's content: tried again on the next event or scan
# even when size and mtime are unchanged (a chmod changes neither; nor does installing pillow-heif).
TRANSIENT_REASONS = frozenset({Reason.UNREADABLE, Reason.MISSING, Reason.INTERNAL, Reason.MISSING_LIBRARY})

# What decoders say of a file cut short.
# Matched as written: Pillow's "Truncated File Read" comes from a header of garbage (corrupt),
# its "image file is truncated" from a file cut short.
_CUT_SHORT = ("truncated", "broken data stream", "Truncated data", "end of file")


class ImageError(Exception):
    """An image that cannot be used, with a one-word ``reason`` and a readable detail."""

    def __init__(self, reason: Reason, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def os_error(exc: OSError) -> ImageError:
    """The ImageError for a failed stat, open or read."""
    if isinstance(exc, FileNotFoundError):
        return ImageError(Reason.MISSING, "no such file")
    if isinstance(exc, PermissionError):
        return ImageError(Reason.UNREADABLE, "permission denied")
    if isinstance(exc, IsADirectoryError):
        return ImageError(Reason.NOT_A_FILE, "is a folder")
    if exc.errno in (errno.ENAMETOOLONG, errno.ELOOP, errno.ENOTDIR):  # no such file can be there
        return ImageError(Reason.MISSING, exc.strerror or str(exc))
    return ImageError(Reason.UNREADABLE, exc.strerror or str(exc))


@contextmanager
def decode_errors() -> Iterator[None]:
    """Pillow's many failure types as ImageErrors with a one-word reason."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            yield
    except ImageError:
        raise
    except formats.RAW_UNSUPPORTED as exc:
        raise ImageError(Reason.NOT_AN_IMAGE, f"a camera RAW file LibRaw does not read: {exc}") from exc
    except formats.RAW_TOO_BIG as exc:
        raise ImageError(Reason.TOO_LARGE, f"LibRaw: {exc}") from exc
    except formats.RAW_ERROR as exc:
        message = str(exc) or type(exc).__name__
        raise ImageError(Reason.TRUNCATED if "EOF" in message else Reason.CORRUPT, f"LibRaw: {message}") from exc
    except UnidentifiedImageError as exc:
        supported = ", ".join(formats.SUPPORTED_FORMATS)
        raise ImageError(Reason.NOT_AN_IMAGE, f"not a supported image ({supported})") from exc
    except Image.DecompressionBombError as exc:
        raise ImageError(Reason.TOO_LARGE, str(exc)) from exc
    # RuntimeError: libheif through pillow-heif on some damaged boxes ("Memory allocation error:
    # Invalid image size: zero width or height"; 3 of 400 byte-flipped HEICs, issue 31)
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, RuntimeError) as exc:
        message = str(exc) or type(exc).__name__
        # "image file is truncated" (Pillow), "Truncated data" (libavif), "Unexpected end of file" (libheif)
        if any(words in message for words in _CUT_SHORT) or isinstance(exc, EOFError):
            raise ImageError(Reason.TRUNCATED, message) from exc
        raise ImageError(Reason.CORRUPT, message) from exc
    except MemoryError as exc:
        raise ImageError(Reason.TOO_LARGE, "not enough memory to decode") from exc
