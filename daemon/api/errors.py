"""Errors as HTTP answers, in one table: the domain's errors and the API's own.

The rooms below raise ``errors.DomainError`` subclasses (and ``images.ImageError``), which
know nothing of HTTP; this module says which status each one is, and what its JSON body
holds (``{"error": message, **extra}``). ``ApiError`` is for what the HTTP layer itself
finds wrong (a bad parameter, a missing token). The Bottle plugin in ``responses`` turns each
into its answer through ``error_answer``, the one place (as starlette's
``exception_handlers`` and datasette's ``handle_exception``).
"""

from __future__ import annotations

from .. import errors
from ..media import images

# A domain error's class -> the status it answers with (the most specific class wins).
STATUS: dict[type[errors.DomainError], int] = {
    errors.Invalid: 400,
    errors.Refused: 403,
    errors.NotFound: 404,
    errors.Conflict: 409,
    errors.TooLarge: 413,
    errors.Busy: 503,
    errors.StorageUnavailable: 503,
    errors.TimedOut: 504,
}

# How an unusable image maps to an HTTP status (by its ``images.Reason``).
IMAGE_ERROR_STATUS: dict[str, int] = {
    images.Reason.MISSING: 404,
    images.Reason.NOT_A_FILE: 400,
    images.Reason.UNREADABLE: 403,
    images.Reason.TOO_LARGE: 413,
    images.Reason.EMPTY: 415,
    images.Reason.NOT_AN_IMAGE: 415,
    images.Reason.TRUNCATED: 415,
    images.Reason.CORRUPT: 415,
    images.Reason.OUTSIDE_ROOTS: 403,
    images.Reason.INTERNAL: 500,
    images.Reason.MISSING_LIBRARY: 415,  # this daemon cannot read the format: the client may send another
}
UNUSABLE_IMAGE = 415  # a reason not in the table: the picture cannot be used


class ApiError(Exception):
    """An error the HTTP layer finds itself: status and message (and optional extra fields)."""

    def __init__(self, status: int, message: str, **extra: object) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


def status_of(exc: errors.DomainError) -> int:
    """The status of a domain error: by its reason for an image, else by its class."""
    if isinstance(exc, errors.BadImage):
        return IMAGE_ERROR_STATUS.get(exc.reason, UNUSABLE_IMAGE)
    for cls in type(exc).__mro__:
        status = STATUS.get(cls)
        if status is not None:
            return status
    return 500


def error_answer(exc: BaseException) -> tuple[int, dict[str, object]] | None:
    """The status and JSON body for an error the API answers; None for any other (a crash)."""
    if isinstance(exc, ApiError):
        return exc.status, {"error": exc.message, **exc.extra}
    if isinstance(exc, images.ImageError):
        exc = errors.BadImage.of(exc)
    if isinstance(exc, errors.DomainError):
        return status_of(exc), {"error": exc.message, **exc.extra}
    return None
