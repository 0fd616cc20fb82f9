"""The catalogue's records as the rest of the daemon sees them: states, rows, results, counts."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TypedDict

import numpy as np


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
class PhotoMetadata:
    """What a photo says about itself (``photo_metadata``), stored with its file's row."""

    taken_at: float  # capture time, unix seconds (what the date filters compare)
    taken: str  # the capture time in ISO 8601 as the camera wrote it (with its offset when known)
    taken_from: str  # "exif", or "mtime" when the file had no usable EXIF date
    width: int | None = None  # as shown (EXIF orientation applied)
    height: int | None = None
    camera: str | None = None
    orientation: int | None = None  # EXIF orientation 1-8
    has_gps: bool = False  # whether the file holds a position (never the position itself)

    def as_json(self) -> dict[str, object]:
        """The fields a search result or a duplicate group member carries."""
        return metadata_json(self)


def metadata_json(metadata: PhotoMetadata | None) -> dict[str, object]:
    """A result's metadata fields; every one null for a file whose metadata is not read yet."""
    if metadata is None:
        return dict.fromkeys(("taken", "taken_from", "width", "height", "camera", "orientation", "gps"))
    return {
        "taken": metadata.taken,
        "taken_from": metadata.taken_from,
        "width": metadata.width,
        "height": metadata.height,
        "camera": metadata.camera,
        "orientation": metadata.orientation,
        "gps": metadata.has_gps,
    }


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
    failed_by_reason: dict[str, int]  # images.Reason -> failed files
    vectors: dict[str, int]  # extractor -> vectors of indexed files


@dataclass(frozen=True)
class Changes:
    """What changed for one extractor after a given change number."""

    ids: np.ndarray  # int64, files whose vector is new or changed
    vectors: np.ndarray  # float32 (len(ids), dim)
    removed_ids: np.ndarray  # int64, files to drop from the index
    seq: int  # the change number these changes bring the reader up to
