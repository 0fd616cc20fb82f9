"""What the routes answer: results, files, jobs, duplicate groups, health, the page's login.

Each struct is what a route's JSON answer holds: every answer goes through its model before
it is sent (``routing.Checked``), and the spec is written from the same structs, so the two
cannot differ. Answer models forbid unknown fields: a key the service adds and the model
lacks is a 500 with the mismatch in the log (the tests catch it), never a key that reaches
clients undocumented. A field that may be left out is ``UNSET`` by default; one that is
always there, even when null, has no default.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from ...ingest.jobs import JobState
from ...media.photo_metadata import MetadataFields
from ...store.disk_health import StorageState
from .. import bounds

Count = Annotated[int, Meta(ge=0)]
Fraction = Annotated[float, Meta(ge=0, le=1)]
Cosine = Annotated[float, Meta(ge=-1, le=1)]


class Error(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Every error answer: the message, and what it is about."""

    error: str
    reason: str | UnsetType = UNSET
    image: str | UnsetType = UNSET
    status: str | UnsetType = UNSET
    storage: StorageState | UnsetType = UNSET
    folder: (
        Annotated[str, Meta(description="the folder the error is about (a filter not known, a folder to watch)")]
        | UnsetType
    ) = UNSET
    hash: Annotated[str, Meta(description="the content hash searched by that is not known (404)")] | UnsetType = UNSET
    retry_after: Annotated[int, Meta(description="429: seconds to wait (as Retry-After)")] | UnsetType = UNSET
    watched_by: (
        Annotated[str, Meta(description="409: the watched folder that already covers it, or 'config' (the settings')")]
        | UnsetType
    ) = UNSET


PathName = Annotated[str, Meta(description="absolute path; bytes that are not UTF-8 appear as \\udcXX escapes")]
PathBase64 = Annotated[str, Meta(description="only for a name that is not valid UTF-8: its exact bytes, base64")]
Hash = Annotated[
    str | None, Meta(description="the file's content hash: /thumbnail?image=...&v=HASH may be cached for good")
]


# The match levels, strongest first (search.match_levels.LEVELS; a test keeps the two equal).
MatchLevel = Literal["same", "similar", "related", "weak"]
MATCH_WORDS = (
    "how strong a match: same (the picture itself or an edited copy of it), similar (the same kind of "
    "scene or object), related, weak; from the score corrected for this query (docs/api.md)"
)


class Result(MetadataFields, kw_only=True, forbid_unknown_fields=True):
    """One search result, with what the photo says about itself."""

    image: PathName
    path_base64: PathBase64 | UnsetType = UNSET
    distance: Annotated[
        float,
        Meta(ge=0, le=bounds.MAX_DISTANCE, description="Euclidean distance between unit vectors (0 = same)"),
    ]
    score: Annotated[Cosine, Meta(description="cosine similarity")]
    hash: Hash
    match: Annotated[MatchLevel, Meta(description=MATCH_WORDS)]


class SearchedBy(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What a search was asked by."""

    kind: Literal["path", "upload", "text", "combined", "hash"]
    hash: (
        Annotated[
            str,
            Meta(
                description="the picture's content hash (an upload or a hash search): GET /search?hash= "
                "asks the same search again"
            ),
        ]
        | UnsetType
    ) = UNSET


class SearchResults(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A search's answer, best first."""

    results: list[Result]
    extractor: str | UnsetType = UNSET
    folder: Annotated[str, Meta(description="the folder filter, when one was given")] | UnsetType = UNSET
    query: SearchedBy | UnsetType = UNSET
    offset: Annotated[int, Meta(ge=0, description="results skipped (the offset asked)")] | UnsetType = UNSET
    next_offset: (
        Annotated[
            int | None,
            Meta(
                description="the next page's offset (same limit); null: no more results, the bound is reached, "
                "or no later result can reach min_match"
            ),
        ]
        | UnsetType
    ) = UNSET
    weaker: (
        Annotated[int, Meta(ge=0, description="with min_match: results of this page left out as weaker than it")]
        | UnsetType
    ) = UNSET


class AddedFile(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``/add`` of a file: indexed now, or already indexed and unchanged."""

    image: str
    status: Literal["indexed", "unchanged"]
    embedded: bool | UnsetType = UNSET


class FolderJobStarted(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``/add`` of a folder: the job that scans and indexes it."""

    job: str
    status_url: str
    folder: str
    files_found: Count
    scan_complete: bool
    state: str


class Job(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A folder job's progress."""

    id: str
    folder: str
    state: JobState
    found: Count
    done: Count
    progress: Fraction
    outcomes: dict[str, int]
    error: str | UnsetType | None = UNSET
    started: float
    finished: float | UnsetType | None = UNSET
    seconds: float


class Jobs(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The folder jobs."""

    jobs: list[Job]


class Removed(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What ``/remove`` forgot."""

    image: str
    removed: Annotated[int, Meta(ge=1)]


class Rebuilding(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The extractors whose indexes are being rebuilt."""

    rebuilding: list[str]


class HealthFallback(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A configured model that runs on its fallback (GET /stats ``fallback`` says what to do)."""

    configured: str
    running: str
    reason: str


class Health(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Whether the daemon serves; without the token (when one is set), the status alone."""

    status: Annotated[
        Literal["ok", "degraded", "starting"],
        Meta(
            description="degraded: searches work, but the catalogue cannot be written (see storage) "
            "or a configured model runs on its fallback (see fallback), or a model change failed (see model_change)"
        ),
    ]
    phase: str | UnsetType = UNSET
    storage: StorageState | UnsetType = UNSET
    fallback: HealthFallback | UnsetType = UNSET
    model_change: (
        Annotated[dict[str, str], Meta(description="extractor -> why its model change failed (the old model serves)")]
        | UnsetType
    ) = UNSET


# -- /duplicates -------------------------------------------------------------------------


class DuplicateMember(MetadataFields, kw_only=True, forbid_unknown_fields=True):
    """One file of a duplicate group."""

    image: Annotated[str, Meta(description="absolute path (as in Result)")]
    path_base64: Annotated[str, Meta(description="only for a name that is not valid UTF-8")] | UnsetType = UNSET
    size: Annotated[int, Meta(ge=0, description="bytes, as indexed")]
    score: Annotated[Cosine, Meta(description="cosine to the group's centre (the first member after the keeper)")]
    framing: Annotated[
        Cosine | None,
        Meta(description="the framing check's score to the centre (-1 to 1); null: not checked or unreadable"),
    ]
    hash: Hash
    keep: Annotated[bool, Meta(description="the suggested keeper (the group's first member)")]
    same_bytes: Annotated[
        int, Meta(ge=0, description="other indexed files with these bytes (in copies/similar: its identical group)")
    ]


class DuplicateGroup(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Files of one tier: the same bytes, one picture edited, or similar shots."""

    kind: Annotated[
        Literal["identical", "copies", "similar"],
        Meta(description="identical: the same bytes; copies: one picture edited; similar: shots of one scene"),
    ]
    files: Annotated[int, Meta(ge=2)]
    similarity: Annotated[float, Meta(description="the lowest cosine of a member to the centre")]
    keep: Annotated[str, Meta(description="the suggested file to keep (a member's image)")]
    keep_reason: Annotated[str, Meta(description="why, in words: the first [duplicates] keep_rules rule that decided")]
    members: list[DuplicateMember]


class DuplicateThresholds(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The cuts a page was grouped at."""

    copies: Annotated[
        float | None, Meta(description="the cosine from which a pair may be a copy (duplicate_threshold)")
    ]
    similar: Annotated[float, Meta(description="the cosine from which a pair is similar (threshold)")]
    framing: Annotated[float, Meta(description="the framing check's score from which a pair is a copy")]


class DuplicateTiers(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Groups per tier (after the folder filter)."""

    identical: Count
    copies: Count
    similar: Count


class DuplicateProgress(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A /duplicates computation running."""

    extractor: str
    phase: Literal["queued", "reading", "joining", "checking"]
    done: Count
    total: Count
    progress: Fraction
    seconds: float


class Duplicates(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A page of duplicate groups, biggest first."""

    state: Literal["ready"]
    extractor: str
    threshold: float
    thresholds: DuplicateThresholds
    tiers: DuplicateTiers
    kind: bounds.DuplicateKind | UnsetType = UNSET
    folder: str | UnsetType | None = UNSET
    sort: bounds.DuplicateSort | UnsetType = UNSET
    total: Annotated[int, Meta(ge=0, description="groups of this kind (and folder)")]
    offset: Count
    limit: Annotated[int, Meta(ge=1)]
    next_offset: Annotated[int | None, Meta(description="the next page's offset; null: last page")]
    groups: list[DuplicateGroup]
    stale: Annotated[bool, Meta(description="the catalogue changed since: a new computation runs (see computing)")]
    computing: DuplicateProgress | UnsetType | None = UNSET
    largest_component: Annotated[int, Meta(description="what chaining pairs would have made one group")] | UnsetType = (
        UNSET
    )
    seq: int | UnsetType = UNSET
    contents: Annotated[int, Meta(description="distinct contents joined")] | UnsetType = UNSET
    pairs: int | UnsetType = UNSET
    method: Literal["exact", "index"] | UnsetType = UNSET
    computed_at: str | UnsetType = UNSET
    seconds: float | UnsetType = UNSET


class DuplicatesComputing(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The first computation is running: ask again."""

    state: Literal["computing"]
    extractor: str
    threshold: float
    computing: Annotated[DuplicateProgress | None, Meta(description="null: not started yet")]
    last_error: Annotated[str | None, Meta(description="why the last computation failed")] | UnsetType = UNSET


# -- /folders: folders watched at run time ------------------------------------------------

FolderSource = Annotated[
    Literal["config", "added"],
    Meta(description="config: watch.directories or --watch (removed only there); added: POST /folders"),
]


class WatchedFolder(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One watched folder, its state and what the catalogue holds below it."""

    folder: PathName
    path_base64: PathBase64 | UnsetType = UNSET
    source: FolderSource
    state: Annotated[
        Literal["starting", "watching", "polling", "offline"],
        Meta(description="offline: missing, unreadable, unmounted, or outside the allowed roots (see error)"),
    ]
    files: Annotated[int, Meta(ge=0, description="indexed pictures at or below it")]
    failed: Annotated[int, Meta(ge=0, description="files below it that could not be indexed")]
    pending: Annotated[int, Meta(ge=0, description="files settling or not yet done by its running job")]
    job: Annotated[Job | None, Meta(description="its current or last folder job, as /jobs shows it")]
    added_at: Annotated[str | None, Meta(description="when it was added (ISO 8601, UTC); null: a config folder")]
    removable: Annotated[bool, Meta(description="DELETE /folders can remove it (an added folder)")]
    error: Annotated[str | None, Meta(description="why it is offline, or why its last job failed")]


class Folders(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Every watched folder: the config's first, then those added (oldest first)."""

    folders: list[WatchedFolder]
    roots: Annotated[list[str], Meta(description="where folders may be watched (real paths); empty: anywhere")]
    anywhere: Annotated[bool, Meta(description="no allowed roots are set: any folder may be watched")]


class FolderWatched(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A folder watched from now on (kept across restarts), or one watched already."""

    folder: PathName
    path_base64: PathBase64 | UnsetType = UNSET
    source: FolderSource
    already: Annotated[bool, Meta(description="it was watched already: nothing changed")]
    job: Annotated[Job | None, Meta(description="the job indexing it now (201), or its last one (200)")]


class FolderUnwatched(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A folder no longer watched; its pictures left the index (the files stay on disk)."""

    folder: PathName
    path_base64: PathBase64 | UnsetType = UNSET
    removed: Annotated[int, Meta(ge=0, description="catalogue entries forgotten (not those another folder holds)")]


class SubFolder(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A sub-folder offered for watching."""

    name: str
    path: PathName
    path_base64: PathBase64 | UnsetType = UNSET
    watched: Annotated[bool, Meta(description="it, or a folder above it, is watched")]


class Browse(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The sub-folders of a folder, by name (hidden ones left out)."""

    path: Annotated[str | None, Meta(description="the folder listed; null: the allowed roots are listed")]
    path_base64: PathBase64 | UnsetType = UNSET
    parent: Annotated[str | None, Meta(description="the folder above; null at an allowed root or /")]
    folders: list[SubFolder]
    truncated: Annotated[bool, Meta(description="more sub-folders than listed (the first 500 by name)")]


# -- the page's login (page.py) ----------------------------------------------------------


class LoginState(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Whether the page must ask for the token, and where the token is kept."""

    token_required: bool
    authorised: bool
    token_file: (
        Annotated[
            str | None,
            Meta(description="the settings file holding server.token (null: not read from a file); never the token"),
        ]
        | UnsetType
    ) = UNSET


class LoggedIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Signed in: the answer carries the session cookie."""

    ok: Literal[True]
    token_required: bool


class LoggedOut(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Signed out: the cookie is cleared."""

    ok: Literal[True] | UnsetType = UNSET


class TokenBody(msgspec.Struct, kw_only=True):
    """The token, as JSON or a form field."""

    token: Annotated[str, Meta(min_length=1)]
