"""What happened to one path in the pipeline, as the pipeline tells its listener."""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from ..media.failures import ImageError


class Outcome(StrEnum):
    """The end of one path's trip through the pipeline: told after its batch is committed
    (UNCHANGED at once, as nothing is written)."""

    EMBEDDED = "embedded"  # a model ran on it
    REUSED = "reused"  # its content had a stored vector (moved, copied or touched)
    UNCHANGED = "unchanged"  # same size and mtime as catalogued: nothing was read
    FAILED = "failed"  # recorded with the ImageError's reason
    REMOVED = "removed"  # forgotten: removed, moved away, or vanished (with a MISSING error)
    DEFERRED = "deferred"  # the catalogue cannot be written now (full disk): still queued, retried


# (path, outcome, error): the error is the ImageError of a FAILED path or of one that
# vanished before it was read; None otherwise.
Listener = Callable[[str, Outcome, ImageError | None], None]
