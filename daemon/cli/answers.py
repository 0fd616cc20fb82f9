"""What the CLI reads of a running daemon's JSON answers, as types.

An answer is decoded JSON (``Answer``) that the CLI mostly prints as it came (``--json``,
and the commands that print the whole answer), so it stays free-form; the parts the CLI
reads by key are typed below, with the keys it reads (the API's answer models in
``api.models`` have every field).
"""

from __future__ import annotations

from typing import Any, Required, TypedDict

Answer = dict[str, Any]  # a daemon's answer as decoded JSON: printed as it came, or read through the types below


class Dated(TypedDict, total=False):
    """A result or a duplicate group member's capture time (ISO 8601), and whether it is the file's mtime."""

    taken: str | float | None
    taken_from: str | None


class SearchResult(Dated, total=False):
    """One result of ``/search``."""

    image: Required[str]
    score: Required[float]
    size: int | None
    match: str  # same, similar, related, weak (absent from a daemon before issue 30)


class DuplicateMember(Dated, total=False):
    """One member of a ``/duplicates`` group: a file (in ``copies`` and ``similar``, one standing for
    its content, ``same_bytes`` other files having its bytes), and whether the group keeps it."""

    image: Required[str]
    score: Required[float]
    size: Required[int]
    width: Required[int | None]
    height: Required[int | None]
    keep: bool
    framing: float | None
    same_bytes: int


class DuplicateGroup(TypedDict, total=False):
    """One group of a ``/duplicates`` page, with its suggested keeper and why."""

    kind: Required[str]
    files: Required[int]
    similarity: Required[float]
    members: Required[list[DuplicateMember]]
    keep: str
    keep_reason: str


class DuplicatesPage(TypedDict, total=False):
    """A finished ``/duplicates`` answer (200): a page of groups, as ``imgsearchd duplicates`` prints it."""

    groups: Required[list[DuplicateGroup]]
    total: Required[int]
    threshold: Required[float]
    extractor: Required[str]
    offset: Required[int]
    next_offset: Required[int | None]
    stale: Required[bool]
    tiers: dict[str, int]
    thresholds: dict[str, float]
    seq: int


class ResolvedFile(TypedDict):
    """One file of a ``POST /duplicates/resolve`` answer."""

    image: str
    keep: str
    state: str  # done, planned (a dry run), skipped
    to: str | None
    reason: str | None


class Resolved(TypedDict):
    """``POST /duplicates/resolve``: what was done (or planned) per file, and the undo ID."""

    undo: int | None
    action: str
    dry_run: bool
    to: str | None
    done: int
    skipped: int
    files: list[ResolvedFile]


class RestoredFile(TypedDict):
    image: str
    state: str  # restored, skipped
    reason: str | None


class Undone(TypedDict):
    """``POST /duplicates/undo``."""

    undo: int
    restored: int
    skipped: int
    files: list[RestoredFile]


class Resolution(TypedDict, total=False):
    """One row of ``GET /duplicates/resolutions`` (newest first)."""

    undo: Required[int]
    action: str
    to: str | None
    created_at: str
    state: Required[str]  # running, done, undoing, undone, partly undone
    files: int
    done: int


class Job(TypedDict, total=False):
    """A folder job of ``/jobs/ID``, as ``add --wait`` follows it and ``stats`` lists it."""

    state: str
    folder: str
    found: int | None
    done: int | None
    error: str | None
    outcomes: dict[str, int]
    started: float
    finished: float | None
    seconds: float


class Added(TypedDict, total=False):
    """``/add``: a file indexed (``image``, ``status``), or a folder's job started (``job``...)."""

    image: str
    status: str
    job: str
    folder: str
    files_found: int
    scan_complete: bool


class Removed(TypedDict):
    """``/remove``."""

    image: str
    removed: int


class Rebuilding(TypedDict):
    """``/rebuild``."""

    rebuilding: list[str]


# -- /stats, as ``stats`` shows it on a terminal ----------------------------------------------


class Fallback(TypedDict, total=False):
    """A configured model that runs on its fallback: which, why, and the daemon's advice, in lines."""

    configured: str
    running: str
    reason: str
    advice: list[str]


# A model change of ``/stats.extractors[NAME].change``: the old model (``from``, a keyword, hence
# this form) serves while the new one (``to``) embeds the library; ``state`` embedding, switching or failed.
ModelChange = TypedDict(
    "ModelChange",
    {
        "from": str,
        "to": str | None,  # null: the configured model could not load (its id is not known)
        "state": str,
        "done": int,
        "total": int,
        "rate": float | None,
        "eta_seconds": float | None,
        "error": str | None,
    },
    total=False,
)


class ExtractorState(TypedDict, total=False):
    """One extractor of ``/stats``."""

    vectors: int
    mode: str
    recall_at_10: float | None
    device: str
    precision: dict[str, object]
    text: bool
    building: bool
    change: ModelChange | None


class LastScan(TypedDict, total=False):
    at: str
    found: int


class WatchedFolder(TypedDict, total=False):
    """A watched folder of ``/stats``."""

    folder: str
    state: str
    observer: str | None
    reason: str | None
    last_scan: LastScan | None


class Thumbnails(TypedDict, total=False):
    count: int
    bytes: int
    max_bytes: int


class BackfillState(TypedDict, total=False):
    state: str
    done: int
    planned: int
    updated: str


class Stats(TypedDict, total=False):
    """``/stats``: the keys ``stats`` shows a person (``--json`` prints all of them)."""

    version: str
    uptime_s: float
    ready: bool
    phase: str
    images: int | None
    pending: int
    failed: dict[str, object]
    active_extractor: str | None
    fallback: Fallback | None
    extractors: dict[str, ExtractorState]
    watch: list[WatchedFolder]
    jobs: list[Job]
    storage: dict[str, object]
    thumbnails: Thumbnails | None
    backfill: BackfillState | None
