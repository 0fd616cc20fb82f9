"""Acting on duplicates for ``POST /duplicates/resolve``, ``POST /duplicates/undo`` and ``GET
/duplicates/resolutions``: the request's checks, one resolve or undo at a time, and the index
following at once (a trashed or moved file leaves the catalogue in the request; a restored
one is indexed again, as ``/add`` does). At start, ``recover`` finishes what a crash left.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import Protocol, TypedDict

import numpy as np

from ..config import Config
from ..errors import Invalid
from ..extractors import LoadedExtractors
from ..ingest.jobs import JobTracker
from ..ingest.pipeline import Pipeline
from ..ingest.workqueue import Intent, WorkQueue
from ..paths import is_under, normalise_path
from ..store.catalog import Catalog
from ..store.resolutions import Journal, Step
from ..store.rows import FileState
from ..tidy import runs
from ..tidy.actions import dry_target, said
from ..tidy.checks import ACTIONS, Facts, Group, Item, plan
from ..tidy.trash import NoTrash
from ..timestamps import iso_utc
from .watching import Watching

log = logging.getLogger("imgsearchd.service")

MAX_FILES = 10_000  # paths in one request, keepers included: 10,000 hashes read before anything is done
REINDEX_WAIT = 120.0  # an undo waits this long for its restored files to be indexed again


class ResolvedFile(TypedDict):
    image: str
    keep: str
    state: str  # done, planned (dry run), skipped
    to: str | None
    reason: str | None


class Resolved(TypedDict):
    """``POST /duplicates/resolve``'s answer."""

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


class UndoAnswer(TypedDict):
    """``POST /duplicates/undo``'s answer."""

    undo: int
    restored: int
    skipped: int
    files: list[RestoredFile]


class ResolutionRow(TypedDict):
    undo: int
    action: str
    to: str | None
    created_at: str
    state: str
    files: int
    done: int


class ResolutionList(TypedDict):
    """``GET /duplicates/resolutions``' answer: newest first."""

    resolutions: list[ResolutionRow]


class Host(Protocol):
    """The parts of the running service acting on duplicates uses (``Service`` is one)."""

    @property
    def config(self) -> Config: ...
    @property
    def catalog(self) -> Catalog | None: ...
    @property
    def loaded(self) -> LoadedExtractors | None: ...
    @property
    def queue(self) -> WorkQueue: ...
    @property
    def jobs(self) -> JobTracker: ...
    @property
    def pipeline(self) -> Pipeline | None: ...
    @property
    def watching(self) -> Watching: ...
    def check_path(self, raw: str) -> str: ...
    def allowed_roots(self) -> list[str]: ...


class Tidying:
    """Resolve, undo and list resolutions over the running service; one at a time."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self._lock = threading.Lock()

    def _journal(self) -> Journal:
        assert self.host.catalog is not None
        return Journal(self.host.catalog)

    # -- start ---------------------------------------------------------------------------

    def recover(self) -> None:
        """Finish or roll back what a crash left (``runs.recover``); the catalogue follows."""
        done, restored = runs.recover(self._journal())
        gone = [step.path for action, step in done if action != "link"]
        if gone:
            assert self.host.catalog is not None
            self.host.catalog.remove_paths(gone)
        self.host.queue.put_many(
            [step.path for _, step in restored] + [s.path for a, s in done if a == "link"], Intent.RECHECK
        )

    # -- resolve -------------------------------------------------------------------------

    def resolve(self, groups: Sequence[Group], action: str, to: str | None, dry_run: bool) -> Resolved:
        """Check the request, then act on each file that passes (see the module)."""
        if action not in ACTIONS:
            raise Invalid(f"unknown action {action!r}; one of {', '.join(ACTIONS)}")
        count = sum(1 + len(g.others) for g in groups)
        if count > MAX_FILES:
            raise Invalid(f"{count} files in one request; at most {MAX_FILES} (keepers included): send them in parts")
        check = self.host.check_path
        checked = [Group(check(g.keep), [check(o) for o in g.others]) for g in groups]
        dest = self._dest(to) if action == "move" else None
        facts = self._facts(dest)
        with self._lock:
            items = plan(checked, action, facts)
            rid = None
            if dry_run:
                self._dry_targets(items, action)
            elif any(item.state == "planned" for item in items):
                if dest is not None:
                    os.makedirs(dest, exist_ok=True)
                rid = runs.resolve(self._journal(), items, action, dest)
                self._follow(action, [item.image for item in items if item.state == "done"])
        files: list[ResolvedFile] = [
            {"image": i.image, "keep": i.keep, "state": i.state, "to": i.to, "reason": i.reason} for i in items
        ]
        done = sum(1 for i in items if i.state == "done")
        skipped = sum(1 for i in items if i.state == "skipped")
        return {
            "undo": rid,
            "action": action,
            "dry_run": dry_run,
            "to": dest,
            "done": done,
            "skipped": skipped,
            "files": files,
        }

    def _dest(self, to: str | None) -> str:
        """A move's folder: inside the allowed roots, not a file, not inside a watched folder."""
        if not to:
            raise Invalid("action move needs 'to': the folder the files go to")
        dest = self.host.check_path(to)
        if os.path.lexists(dest) and not os.path.isdir(dest):
            raise Invalid(f"{dest} is not a folder: 'to' must be one (made when missing)", folder=dest)
        real = os.path.realpath(dest)
        for root in self.host.watching.roots(self.host.config):
            if is_under(dest, root) or is_under(real, os.path.realpath(root)):
                raise Invalid(
                    f"{dest} is inside the watched folder {root}: the moved files would be indexed again", folder=dest
                )
        return dest

    def _facts(self, dest: str | None) -> Facts:
        host = self.host
        assert host.catalog is not None and host.loaded is not None
        catalog, chosen = host.catalog, host.loaded.default
        settings = host.config.extractor(chosen.name)
        cut = min(float(settings.duplicate_threshold), float(settings.similar_threshold))

        def catalogued(path: str) -> str | None:
            record = catalog.get(path)
            return record.content_hash if record is not None and record.state == FileState.INDEXED else None

        def cosine(a: str, b: str) -> float | None:
            va = catalog.vector_for_hash(a, chosen.name, chosen.model_id)
            vb = catalog.vector_for_hash(b, chosen.name, chosen.model_id)
            return None if va is None or vb is None else float(np.dot(va, vb))

        roots = sorted({*host.watching.roots(host.config), *host.allowed_roots()}, key=len, reverse=True)

        def target(path: str) -> str:
            assert dest is not None
            root = next((r for r in roots if is_under(path, r)), "/")
            return normalise_path(os.path.join(dest, os.path.relpath(path, root)))

        return Facts(catalogued, cosine, cut, target if dest is not None else None)

    def _dry_targets(self, items: list[Item], action: str) -> None:
        if action != "trash":
            return
        for item in items:
            if item.state == "planned":
                try:
                    item.to = dry_target(item.image)
                except (OSError, NoTrash) as exc:
                    item.skip(f"no Trash for {item.image}: {said(exc, item.image)}")

    def _follow(self, action: str, paths: list[str]) -> None:
        """The index follows at once: trashed or moved files leave it; linked ones are read again."""
        host = self.host
        if not paths:
            return
        if action == "link":
            host.queue.put_many(paths, Intent.RECHECK)
            return
        assert host.pipeline is not None
        try:
            host.pipeline.remove(paths)
        except Exception as exc:  # a full disk: the indexer removes them once it can write
            log.warning("cannot remove %d resolved files from the catalogue now (%s); queued", len(paths), exc)
            for path in paths:
                host.queue.put(path, Intent.REMOVE)

    # -- undo and the list ---------------------------------------------------------------

    def undo(self, rid: int) -> UndoAnswer:
        """Put a resolution's files back and index them again (waits up to ``REINDEX_WAIT``)."""
        with self._lock:
            _, files, restored = runs.undo(self._journal(), rid)
        self._reindex(restored)
        answer: list[RestoredFile] = [{"image": f.image, "state": f.state, "reason": f.reason} for f in files]
        back = sum(1 for f in files if f.state == "restored")
        return {"undo": rid, "restored": back, "skipped": len(files) - back, "files": answer}

    def _reindex(self, steps: list[Step]) -> None:
        host = self.host
        waiters = [(step.path, host.jobs.waiter(step.path)) for step in steps]
        for step in steps:
            host.queue.put(step.path, Intent.RECHECK, front=True)
        deadline = time.monotonic() + REINDEX_WAIT
        for path, waiter in waiters:
            waiter.event.wait(max(0.0, deadline - time.monotonic()))
            host.jobs.forget(path, waiter)

    def resolutions(self) -> ResolutionList:
        rows: list[ResolutionRow] = [
            {
                "undo": r.id,
                "action": r.action,
                "to": r.dest,
                "created_at": iso_utc(r.created_at),
                "state": r.state,
                "files": r.files,
                "done": r.done,
            }
            for r in self._journal().recent()
        ]
        return {"resolutions": rows}
