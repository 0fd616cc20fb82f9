"""A reloaded config (SIGHUP) given to the running parts: what changes live, and what waits.

Folders, thresholds, limits, access and the log level change live; what only a restart
changes (config.py marks it ``restart``; every ``[extractors.*]`` section) keeps its running
value, with a warning (``Config.keep_restart_only``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from ..config import Config
from ..ingest.pipeline import Pipeline
from ..media.limits import ImageLimits
from ..media.thumbnails import ThumbnailStore
from ..search.index import ExtractorIndex

log = logging.getLogger("imgsearchd.service")


def keep_restart_only(new: Config, running: Config) -> None:
    """Give ``new`` the running values of what only a restart changes, saying which changed."""
    for name in new.keep_restart_only(running):
        log.warning("%s changed: this takes effect at the next restart", name)


def apply_live(
    new: Config,
    limits: ImageLimits,
    pipeline: Pipeline | None,
    thumbnails: ThumbnailStore | None,
    indexes: Iterable[ExtractorIndex],
) -> None:
    """Hand the settings that change live to the parts that run (``limits`` made from ``new``)."""
    if pipeline is not None:
        pipeline.limits = limits
    if thumbnails is not None:
        thumbnails.set_max_bytes(int(new.thumbnails.max_mb * 1024 * 1024))
    for index in indexes:
        index.rebuild_after_changes = new.index.rebuild_after_changes
        index.rebuild_after_seconds = new.index.rebuild_after_seconds
        index.trees = new.index.trees
        index.target_recall = new.index.target_recall  # both for the next build's measurement
        index.search_budget_ms = new.index.search_budget_ms
    logging.getLogger().setLevel(new.log.level.upper())
