"""The domain's errors: what went wrong with a request, in the daemon's words.

The service, the search and the other rooms raise these; they know nothing of HTTP. The
API maps each class to its status and JSON body in one table (``api.errors``), the CLI
prints the message. Each carries a readable ``message`` and the ``extra`` fields an answer
shows beside it (``image``, ``reason``, ``folder``, ``storage``).
"""

from __future__ import annotations

from typing import Protocol


class DomainError(Exception):
    """A request the daemon cannot answer as asked: a message and the fields that go with it."""

    def __init__(self, message: str, **extra: object) -> None:
        super().__init__(message)
        self.message = message
        self.extra = extra


class Invalid(DomainError):
    """The request is malformed or asks for what is not there to use (an extractor, a text encoder)."""


class Refused(DomainError):
    """The request names what the daemon may not touch (outside the roots, unreadable)."""


class NotFound(DomainError):
    """The file, folder or result named is not there (or not in the catalogue)."""


class Conflict(DomainError):
    """The request clashes with what is set up already (a folder inside a watched one, a config folder)."""


class TooLarge(DomainError):
    """The request's images are over the upload cap."""


class Busy(DomainError):
    """All slots for slow work are taken, or the daemon is starting: ask again shortly."""


class StorageUnavailable(DomainError):
    """The catalogue cannot be written now (full or read-only disk); the work waits in the queue."""


class TimedOut(DomainError):
    """The work was queued but not done in the time the request waits."""


class ImageProblem(Protocol):
    """What ``media.failures.ImageError`` carries (this module imports nothing of the daemon)."""

    @property
    def reason(self) -> str: ...

    @property
    def detail(self) -> str: ...


class BadImage(DomainError):
    """An image that cannot be used, with its one-word ``reason`` (the API maps it to a status)."""

    def __init__(self, reason: str, detail: str, path: str | None = None) -> None:
        where = f"{path}: " if path else ""
        extra: dict[str, object] = {"reason": reason}
        if path is not None:
            extra["image"] = path
        super().__init__(f"{where}{detail}", **extra)
        self.reason = reason

    @classmethod
    def of(cls, exc: ImageProblem, path: str | None = None) -> BadImage:
        """The error for an ``ImageError`` (the file ``path``, or an upload when None)."""
        return cls(exc.reason, exc.detail, path)
