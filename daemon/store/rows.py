"""The catalogue's records as the rest of the daemon sees them: states, rows, results, counts."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypedDict

import numpy as np

from ..media.photo_metadata import PhotoMetadata


class FileState(StrEnum):
    """A catalogued file's state."""

    INDEXED = "indexed"  # searchable, with its vectors
    FAILED = "failed"  # could not be used; ``error_reason`` says why
    OFFLINE = "offline"  # in a watched folder that is gone as a whole: kept, not searchable


@dataclass(frozen=True)
class FileRecord:
    """One row of the ``files`` table."""

    id: int
    path: str
    size: int
    mtime_ns: int
    content_hash: str | None
    state: str
    error_reason: str | None
    error_detail: str | None
    seq: int
    failures: int = 0  # failed attempts in a row (0 once it is indexed)
    updated_at: float = 0.0


@dataclass(frozen=True)
class SearchScope:
    """Which files a search may answer with: at or below a folder, taken in a time range."""

    folder: str | None = None  # a normalised path
    taken_after: float | None = None  # unix seconds, inclusive
    taken_before: float | None = None  # unix seconds, exclusive

    @property
    def by_date(self) -> bool:
        return self.taken_after is not None or self.taken_before is not None


@dataclass
class FileResult:
    """What the pipeline learnt about one file, written by ``record_batch``.

    ``vectors`` maps extractor name to (model_id, unit vector). A result with an
    ``error_reason`` is recorded as failed and keeps no vectors.
    """

    path: str
    size: int
    mtime_ns: int
    content_hash: str | None = None
    vectors: dict[str, tuple[str, np.ndarray]] = field(default_factory=dict)
    error_reason: str | None = None
    error_detail: str | None = None
    metadata: PhotoMetadata | None = None


@dataclass(frozen=True)
class FailedFile:
    """A failed file, for deciding when to try it again."""

    path: str
    reason: str
    failures: int
    updated_at: float


class Counts(TypedDict):
    """What ``Catalog.counts`` answers."""

    files: int
    by_state: dict[str, int]  # FileState -> files
    failed_by_reason: dict[str, int]  # media.failures.Reason -> failed files
    vectors: dict[str, int]  # extractor -> vectors of indexed files


@dataclass(frozen=True)
class Changes:
    """What changed for one extractor after a given change number."""

    ids: np.ndarray  # int64, files whose vector is new or changed
    vectors: np.ndarray  # float32 (len(ids), dim)
    removed_ids: np.ndarray  # int64, files to drop from the index
    seq: int  # the change number these changes bring the reader up to
