"""The ``/stats`` answer: counts, progress, extractors (with their measured recall), watched
folders, jobs, duplicates, the last backfill, the thumbnails folder.

Free-form parts (``indexing``, a folder's last scan) stay plain objects: they report what
their room measures, and the room documents them.
"""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from ...ingest.observers import ObserverKind
from ...ingest.progress import Snapshot
from ...ingest.watched import ScanSummary
from ...ingest.watcher import FolderState
from ...search.duplicates import CachedJoin
from ...search.parts import BaseKind
from ...store.disk_health import StorageState
from .answers import Count, DuplicateProgress, Job

Source = Literal["auto", "config", "unmeasured"]


class Tried(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One engine and precision tried at load: kept, slower, failed the check, cannot run or not tried (and why)."""

    engine: Literal["torch", "openvino"]
    precision: Literal["fp32", "bf16", "int8", "fp16"]
    outcome: str
    min_cosine: float | None
    mean_cosine: float | None
    seconds: float | None


class Precision(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The engine and precision the model runs in, the setting, why, and the check at load against fp32."""

    used: Literal["fp32", "bf16", "int8", "fp16"]
    asked: Literal["auto", "fp32", "bf16", "int8", "fp16"]
    reason: str
    min_cosine: float | None
    speedup: float | None
    engine: Literal["torch", "openvino"]
    tried: list[Tried]


def _d(text: str) -> Meta:
    return Meta(description=text)


class ModelChange(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, rename={"from_": "from"}):
    """A model change under way (or failed): the old model serves while the new one embeds the library."""

    from_: Annotated[str, _d("the model id that serves until the switch")]
    to: Annotated[str | None, _d("the new model id; null when the configured model cannot load")]
    state: Annotated[
        Literal["embedding", "switching", "failed"],
        _d("embedding: the new model embeds the library; switching: the new index opens and takes over; "
           "failed: the old model goes on serving (see error)"),
    ]  # fmt: skip
    done: Annotated[int, _d("indexed contents with a vector of the new model (stored: a restart resumes)")]
    total: Annotated[int, _d("indexed contents")]
    rate: Annotated[float | None, _d("contents embedded a second over the last minute; null before any")]
    eta_seconds: Annotated[float | None, _d("time left at that rate; null without a rate")]
    started_at: Annotated[str, _d("when the change began (ISO 8601, UTC)")]
    error: Annotated[
        str | None,
        _d("why it failed, or why there is a gap (the old model cannot be built again: the new one serves "
           "with what it has embedded so far)"),
    ]  # fmt: skip
    old_model_bytes: Annotated[
        int | None, _d("memory the old model's weights hold while it serves (parameters and buffers)")
    ]


class ExtractorStats(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One extractor: its vectors, its index, and the index's measured recall (``search.recall``)."""

    extractor: str | UnsetType = UNSET
    model: str
    model_id: Annotated[str, _d("the model id the index's vectors were made by")] | UnsetType = UNSET
    vectors: int
    indexed: int
    fresh: int
    tombstones: int
    seq: Annotated[int, _d("the catalogue change the index has read up to")] | UnsetType = UNSET
    last_build: str | None
    last_build_seconds: float | UnsetType | None = UNSET
    building: bool
    mode: BaseKind | UnsetType = UNSET
    dim: int | UnsetType = UNSET
    device: str | UnsetType = UNSET
    precision: Precision | UnsetType = UNSET
    channels_last: bool | UnsetType = UNSET
    text: bool | UnsetType = UNSET
    recall_at_10: Annotated[float | None, _d("measured after the last build; 1.0 in exact mode")] | UnsetType = UNSET
    target_recall: float | UnsetType = UNSET
    target_met: Annotated[bool | None, _d("null: a snapshot built before measuring")] | UnsetType = UNSET
    search_k: Annotated[int | None, _d("Annoy candidates per query in use; null unless mode is annoy")] | UnsetType = (
        UNSET
    )
    search_k_source: (
        Annotated[
            Source | Literal["exact"] | None,
            _d("exact in exact mode (either kind); null while an HNSW snapshot serves"),
        ]
        | UnsetType
    ) = UNSET
    ef: (
        Annotated[int | None, _d("HNSW search effort (usearch expansion_search); null unless mode is hnsw")] | UnsetType
    ) = UNSET
    ef_source: Source | UnsetType | None = UNSET
    search_budget_ms: float | UnsetType = UNSET
    p50_ms: Annotated[float | None, _d("median search time at search_k or ef, measured by the builder")] | UnsetType = (
        UNSET
    )
    p95_ms: float | UnsetType | None = UNSET
    recall_sample: Annotated[int | None, _d("stored vectors the recall was measured with")] | UnsetType = UNSET
    trees: Annotated[int | None, _d("trees of the Annoy snapshot in use; null unless mode is annoy")] | UnsetType = (
        UNSET
    )
    trees_source: Literal["auto", "config"] | UnsetType = UNSET
    next_trees: (
        Annotated[int | None, _d("trees of the next Annoy build; null while an HNSW snapshot serves")] | UnsetType
    ) = UNSET
    recall_note: Annotated[str | None, _d("why the target is not met, when it is not")] | UnsetType = UNSET
    change: Annotated[ModelChange, _d("a model change under way or failed; absent when none")] | UnsetType = UNSET


class Failure(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A recently failed file."""

    path: str
    reason: str
    detail: Annotated[str | None, _d("what the reader said")] | UnsetType = UNSET


class Failed(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Files that could not be used, by reason."""

    total: int | UnsetType = UNSET
    by_reason: dict[str, int] | UnsetType = UNSET
    recent: list[Failure] | UnsetType = UNSET


class FallbackFetch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The file to download for the model that could not load."""

    file: str
    bytes: Annotated[int | None, _d("its exact size, when known (the default CLIP's is)")]
    size: Annotated[str | None, _d("its size for people: 605.1 MB")]
    url: str
    repo: Annotated[str | None, _d("the Hugging Face repository it is in")]


class FallbackPutIn(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Where the daemon finds the file: a setting naming it, or the cache a download fills."""

    setting: Annotated[str, _d("the key naming the file: extractors.clip.pretrained")]
    value: Annotated[str, _d("an example value for it")]
    cache: Annotated[str | None, _d("the cache folder of the daemon's user that the download fills")]
    command: Annotated[str | None, _d("a command that fills that cache, run as the daemon's user")]


class KeepFallback(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The setting that runs the fallback on purpose (and ends this advice)."""

    setting: str
    value: list[str]


class Fallback(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The configured extractor could not run: which one runs instead, why, and what to do."""

    configured: str
    running: str
    reason: Annotated[str, _d("why, in one line")]
    model: Annotated[str, _d("the model that could not load: ViT-B-32")] | UnsetType = UNSET
    weights: Annotated[str, _d("its weights setting: laion2b_s34b_b79k")] | UnsetType = UNSET
    fetch: Annotated[FallbackFetch | None, _d("null: nothing to download (fix the setting)")] | UnsetType = UNSET
    put_in: FallbackPutIn | UnsetType | None = UNSET
    settings_file: Annotated[str | None, _d("the settings file the daemon read")] | UnsetType = UNSET
    reembed: Annotated[str, _d("what happens to the library once the model loads")] | UnsetType = UNSET
    keep_fallback: KeepFallback | UnsetType = UNSET
    advice: Annotated[list[str], _d("all of it in sentences, in order (the log's words)")] | UnsetType = UNSET


class MetadataProgress(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Photo metadata still to read."""

    missing: Annotated[
        int,
        Meta(
            ge=0,
            description="indexed files whose capture date and size are not read yet "
            "(catalogued before they were kept; read while the indexer is idle)",
        ),
    ]


class WatchedFolder(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A watched folder and how it is watched."""

    folder: str
    state: Annotated[
        FolderState,
        _d(
            "offline: the folder is gone or unreadable as a whole (an unmounted disk); its files are kept but "
            "not returned by search"
        ),
    ]
    observer: ObserverKind | UnsetType | None = UNSET
    reason: Annotated[str | None, _d("why the folder is polled or offline")] | UnsetType = UNSET
    since: Annotated[str, _d("when the folder entered this state")] | UnsetType = UNSET
    events: Annotated[int, _d("file-system events seen")] | UnsetType = UNSET
    settling: Annotated[int, _d("files written and not yet complete")] | UnsetType = UNSET
    scanning: bool | UnsetType = UNSET
    last_scan: Annotated[ScanSummary | None, _d("the last reconcile scan")] | UnsetType = UNSET


class DuplicatesState(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The /duplicates computation running, and those cached."""

    computing: DuplicateProgress | UnsetType | None = UNSET
    cached: Annotated[dict[str, CachedJoin], _d("the joins kept, by extractor")] | UnsetType = UNSET
    errors: Annotated[dict[str, str], _d("the last failed join, by extractor")] | UnsetType = UNSET


BackfillState = Literal["planning", "running", "finished", "stopped", "failed", "interrupted", "unreadable"]


class Backfill(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The last ``imgsearchd backfill`` on this catalogue (it runs in its own process)."""

    state: (
        Annotated[
            BackfillState, _d("interrupted: it said running but stopped updating (killed); a rerun does the rest")
        ]
        | UnsetType
    ) = UNSET
    folders: list[str] | UnsetType = UNSET
    cluster: Annotated[str, _d("the Ray address it was given")] | UnsetType = UNSET
    planned: Annotated[Count, _d("files it set out to embed")] | UnsetType = UNSET
    done: Annotated[Count, _d("files written to the catalogue")] | UnsetType = UNSET
    left: Count | UnsetType = UNSET
    embedded: Count | UnsetType = UNSET
    reused: Annotated[Count, _d("content that already had a vector")] | UnsetType = UNSET
    failed: Count | UnsetType = UNSET
    images_per_second: float | UnsetType = UNSET
    eta_s: int | UnsetType | None = UNSET
    started: str | UnsetType = UNSET
    updated: str | UnsetType = UNSET
    error: str | UnsetType | None = UNSET


class Thumbnails(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The thumbnails folder."""

    count: Count
    bytes: Count
    max_bytes: Annotated[int, _d("[thumbnails] max_mb: least recently served go first beyond")]
    dir: str


class Stats(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Counts, progress, extractors and jobs (answered while starting too)."""

    images: Annotated[int | None, _d("indexed files in the catalogue")]
    files: int | UnsetType = UNSET
    metadata: MetadataProgress | UnsetType = UNSET
    pending: Annotated[Count, _d("queued work")]
    failed: Failed
    active_extractor: str | None
    fallback: Fallback | None
    extractors: dict[str, ExtractorStats]
    watch: list[WatchedFolder]
    jobs: list[Job]
    duplicates: (
        Annotated[DuplicatesState | None, _d("the /duplicates computation running, and those cached")] | UnsetType
    ) = UNSET
    storage: Annotated[StorageState, _d("whether the catalogue can be written (as /health's)")] | UnsetType = UNSET
    indexing: Annotated[Snapshot, _d("the pipeline since the daemon started")] | UnsetType = UNSET
    backfill: (
        Annotated[Backfill | None, _d("the last `imgsearchd backfill` on this catalogue; null: none yet")] | UnsetType
    ) = UNSET
    thumbnails: Annotated[Thumbnails | None, _d("the thumbnails folder (null while starting)")] | UnsetType = UNSET
    decoders: (
        Annotated[
            dict[str, bool],
            _d(
                "optional decoders this daemon has (heif, avif, raw); without one, such files fail with reason "
                "missing_library"
            ),
        ]
        | UnsetType
    ) = UNSET
    uptime_s: float
    version: str
    ready: bool
    phase: str | UnsetType = UNSET
