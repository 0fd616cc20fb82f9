"""What the daemon says about itself: ``/stats``, ``/health`` and systemd's status line.

Each reads the running service's parts (``Running``: ``Service`` is one) and changes nothing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any, Protocol, TypedDict

from .. import __version__
from ..bulk import status
from ..config import Config
from ..extractors import LoadedExtractors
from ..extractors.advice import FallbackDict
from ..ingest.jobs import JobTracker
from ..ingest.pipeline import Pipeline
from ..ingest.progress import Snapshot
from ..ingest.watched import FolderState
from ..ingest.watcher import Watcher
from ..ingest.workqueue import WorkQueue
from ..media import formats
from ..media.thumbnails import ThumbnailStore
from ..search.duplicates import DuplicateFinder
from ..search.index import ExtractorIndex
from ..store.catalog import Catalog
from ..store.disk_health import StorageState
from ..store.rows import FileState
from .model_change import Change


class Running(Protocol):
    """The parts of the running daemon the reports read."""

    @property
    def started(self) -> float: ...
    @property
    def ready(self) -> bool: ...
    @property
    def phase(self) -> str: ...
    @property
    def config(self) -> Config: ...
    @property
    def queue(self) -> WorkQueue: ...
    @property
    def jobs(self) -> JobTracker: ...
    @property
    def catalog(self) -> Catalog | None: ...
    @property
    def loaded(self) -> LoadedExtractors | None: ...
    @property
    def indexes(self) -> Mapping[str, ExtractorIndex]: ...
    @property
    def pipeline(self) -> Pipeline | None: ...
    @property
    def watcher(self) -> Watcher | None: ...
    @property
    def duplicate_finder(self) -> DuplicateFinder | None: ...
    @property
    def thumbnails(self) -> ThumbnailStore | None: ...
    @property
    def changes(self) -> Mapping[str, Change]: ...


class HealthFallback(TypedDict):
    """A configured model that runs on its fallback, as ``/health`` names it (``/stats`` advises)."""

    configured: str
    running: str
    reason: str


class Health(TypedDict, total=False):
    """``/health``'s answer once ready."""

    status: str  # "ok", or "degraded" while the catalogue cannot be written, a model runs on its fallback
    storage: StorageState  # or a model change failed
    fallback: HealthFallback
    model_change: dict[str, str]  # extractor -> why its model change failed (the old model serves)


def health_answer(
    pipeline: Pipeline | None, loaded: LoadedExtractors | None = None, changes: Mapping[str, Change] | None = None
) -> Health:
    """``/health``'s answer once ready: ok, or degraded with the reasons (searches still work)."""
    answer: Health = {"status": "ok"}
    if pipeline is not None and not pipeline.storage.ok:
        answer["status"], answer["storage"] = "degraded", pipeline.storage.as_dict()
    fallback = loaded.fallback if loaded is not None else None
    if fallback is not None:
        answer["status"] = "degraded"
        answer["fallback"] = {"configured": fallback.configured, "running": fallback.running, "reason": fallback.reason}
    failed = {name: c.error or "failed" for name, c in (changes or {}).items() if c.state == "failed"}
    if failed:
        answer["status"], answer["model_change"] = "degraded", failed
    return answer


def pending(queue: WorkQueue, progress: Snapshot) -> int:
    """Work queued, plus paths the pipeline has taken and not finished."""
    return len(queue) + max(0, progress["queued"] - progress["done"])


def status_line(running: Running, burst_base: int) -> tuple[str, int]:
    """One line for systemd's STATUS=: progress while indexing, else the size; and the count of
    files done when the burst of work now shown began (``burst_base``, kept by the caller)."""
    if not running.ready or running.catalog is None or running.pipeline is None:
        return running.phase, burst_base
    progress = running.pipeline.progress.snapshot()
    waiting = pending(running.queue, progress)
    if waiting:
        done = progress["done"] - burst_base
        return f"indexing {done}/{done + waiting}, {progress['images_per_second']:.1f} img/s", burst_base
    indexed = running.catalog.counts()["by_state"].get("indexed", 0)
    return f"idle, {indexed} images", progress["done"]


def stats_answer(running: Running) -> dict[str, Any]:
    """``/stats``: what runs and how far the work is (the parts not loaded yet as empty)."""
    watcher, finder, thumbnails = running.watcher, running.duplicate_finder, running.thumbnails
    out: dict[str, Any] = {
        "version": __version__,
        "uptime_s": round(time.time() - running.started, 3),
        "ready": running.ready,
        "phase": running.phase,
        "watch": watcher.status()
        if watcher is not None
        else [{"folder": str(p), "state": FolderState.STARTING} for p in running.config.watch_dirs],
        "jobs": running.jobs.summary(),
        "duplicates": finder.status() if finder is not None else None,
        "thumbnails": thumbnails.stats() if thumbnails is not None else None,
        "decoders": formats.available(),
    }
    catalog, loaded, pipeline = running.catalog, running.loaded, running.pipeline
    if not running.ready or catalog is None or loaded is None or pipeline is None:
        out.update(
            {
                "images": None,
                "pending": len(running.queue),
                "failed": {},
                "extractors": {},
                "active_extractor": None,
                "fallback": None,
            }
        )
        return out
    out.update(_loaded_stats(running, catalog, loaded, pipeline))
    return out


def _loaded_stats(
    running: Running, catalog: Catalog, loaded: LoadedExtractors, pipeline: Pipeline
) -> dict[str, object]:
    """The part of ``/stats`` there is once the catalogue, the models and the indexer run."""
    counts = catalog.counts()
    progress = pipeline.progress.snapshot()
    return {
        "images": counts["by_state"].get(FileState.INDEXED, 0),
        "files": counts["files"],
        "metadata": {"missing": catalog.count_without_metadata()},
        "pending": pending(running.queue, progress),
        "failed": {
            "total": counts["by_state"].get(FileState.FAILED, 0),
            "by_reason": counts["failed_by_reason"],
            "recent": catalog.recent_failures(5),
        },
        "storage": pipeline.storage.as_dict(),
        "backfill": status.status(catalog),
        "active_extractor": loaded.primary,
        "fallback": _fallback(running.config, loaded),
        "indexing": progress,
        "extractors": {
            name: {
                **running.indexes[name].stats(),
                "model": extractor.model_id,
                "vectors": counts["vectors"].get(name, 0),
                "dim": extractor.dim,
                "device": str(extractor.device),
                "precision": extractor.precision.as_dict(),
                "channels_last": extractor.channels_last,
                "text": extractor.supports_text,
                **_change(running.changes, name),
            }
            for name, extractor in loaded.extractors.items()
        },
    }


def _change(changes: Mapping[str, Change], name: str) -> dict[str, object]:
    """``change`` of an extractor whose model change is under way or failed (absent when none)."""
    change = changes.get(name)
    return {"change": change.as_dict()} if change is not None else {}


def _fallback(config: Config, loaded: LoadedExtractors) -> FallbackDict | None:
    """``/stats``' ``fallback``: the model that could not load and the advice, with the settings file to edit."""
    if loaded.fallback is None:
        return None
    answer = loaded.fallback.as_dict()
    answer["settings_file"] = os.path.abspath(config.source) if config.source is not None else None
    return answer
