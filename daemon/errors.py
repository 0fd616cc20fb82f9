"""Errors the HTTP API answers with, and how an unusable image maps to a status."""

from __future__ import annotations

from typing import Any

from .media import images

# How an unusable image maps to an HTTP status.
IMAGE_ERROR_STATUS = {
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


class ApiError(Exception):
    """An error answer: status and message (and optional extra fields)."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


def image_error(exc: images.ImageError, path: str | None = None) -> ApiError:
    """The API error for an image that cannot be used."""
    extra: dict[str, Any] = {"reason": exc.reason}
    if path is not None:
        extra["image"] = path
    where = f"{path}: " if path else ""
    return ApiError(IMAGE_ERROR_STATUS.get(exc.reason, 415), f"{where}{exc.detail}", **extra)
