"""Folders watched at run time: ``GET/POST/DELETE /folders``, ``/folders/browse``, and the CLI's
``watch``, ``unwatch`` and ``folders``.

The watcher watches the config's folders (``watch.directories`` and ``--watch``) and the
folders added at run time, which the catalogue keeps (``watched_folders``), so they are
watched again after a restart (the watcher's reconcile scan at start finds what changed while
the daemon was stopped). Added folders obey the rules of ``/add`` (absolute, inside the
allowed roots, links resolved as a scan names them) but never become allowed roots
themselves: ``server.allowed_roots`` and the config's folders alone say what may be watched
(otherwise the first folder added would forbid every other one when no roots are set).

A folder is watched once: one inside a watched folder is refused (``Conflict``), one that
holds added folders replaces them. Unwatching forgets its pictures (those still below another
watched folder stay); the files themselves are never touched.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Literal, NotRequired, Protocol, TypedDict, TypeVar

from ..config import Config
from ..errors import Conflict, Invalid, NotFound, Refused, StorageUnavailable
from ..ingest.folders import is_hidden_or_temporary, leads_outside, walk_images
from ..ingest.jobs import Job, JobState, JobTracker
from ..ingest.watched import FolderStatus, WatchOptions, normalised_roots
from ..ingest.watcher import Watcher
from ..ingest.workqueue import Intent
from ..paths import is_inside, is_text, is_under, normalise_path, path_key
from ..store.catalog import Catalog
from ..store.disk_health import is_storage_error
from ..timestamps import iso_utc
from .intake import Intake

log = logging.getLogger("imgsearchd.service")

Source = Literal["config", "added"]
BROWSE_LIMIT = 500  # sub-folders one /folders/browse answer lists (a completion list, not a file manager)
COUNT_EVERY = 2.0  # seconds a folder's counts may lag while the catalogue changes
SCAN_WAIT = 30.0  # seconds an unwatch waits for the folder's job to finish queueing before forgetting it
SETTING = "watch.directories"
T = TypeVar("T")


class Host(Protocol):
    """The parts of the running service the run-time folders use (``Service`` is one)."""

    @property
    def config(self) -> Config: ...
    @property
    def catalog(self) -> Catalog | None: ...
    @property
    def watcher(self) -> Watcher | None: ...
    @property
    def jobs(self) -> JobTracker: ...
    @property
    def intake(self) -> Intake | None: ...
    def check_path(self, raw: str) -> str: ...
    def canonical(self, path: str) -> str: ...


JobDict = dict[str, object]  # a job as ``/jobs`` shows it (``Job.as_dict``)


class FolderEntry(TypedDict):
    """One watched folder, as ``GET /folders`` lists it."""

    folder: str
    path_base64: NotRequired[str]
    source: Source
    state: str
    files: int
    failed: int
    pending: int
    job: JobDict | None
    added_at: str | None
    removable: bool
    error: str | None


class FolderList(TypedDict):
    """``GET /folders``: every watched folder, and where folders may be watched."""

    folders: list[FolderEntry]
    roots: list[str]
    anywhere: bool


class Watched(TypedDict):
    """``POST /folders``: the folder, whether it was watched already, and its indexing job."""

    folder: str
    path_base64: NotRequired[str]
    source: Source
    already: bool
    job: JobDict | None


class Unwatched(TypedDict):
    """``DELETE /folders``: the folder, and how many catalogue entries left with it."""

    folder: str
    path_base64: NotRequired[str]
    removed: int


class BrowseEntry(TypedDict):
    """A sub-folder that ``/folders/browse`` offers."""

    name: str
    path: str
    path_base64: NotRequired[str]
    watched: bool


class Browse(TypedDict):
    """``GET /folders/browse``: the sub-folders of ``path`` (without one: the allowed roots)."""

    path: str | None
    path_base64: NotRequired[str]
    parent: str | None
    folders: list[BrowseEntry]
    truncated: bool


def _raw(path: str) -> str | None:
    """A name's exact bytes in base64 when it is not UTF-8 (as ``paths.json_fields`` writes them), else None."""
    return None if is_text(path) else base64.b64encode(path_key(path)).decode("ascii")


class Watching:
    """The folders added at run time, and the watcher told about them with the config's."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self._lock = threading.RLock()
        self._added: dict[str, float] = {}  # path -> added_at, oldest first
        self._counted: dict[str, tuple[int, float, tuple[int, int]]] = {}  # root -> (seq, when, counts)

    # -- life cycle

    def load(self) -> None:
        """Read the added folders from the catalogue (before the watcher starts)."""
        catalog = self._catalog()
        with self._lock:
            self._added = {folder.path: folder.added_at for folder in catalog.watched_folders()}
        self._park(self.host.config)

    def _park(self, config: Config) -> None:
        """Take the pictures of added folders these settings forbid out of the search (offline: kept
        with their vectors, searchable again once allowed), so no result points at a file the daemon
        would refuse to show. Not below a config folder inside one: those stay searchable."""
        configured = normalised_roots(config.watch_dirs)
        with self._lock:
            added = list(self._added)
        for path in added:
            why = self._unusable(path, config)
            if why is None or any(is_under(root, path) for root in configured):
                continue
            try:
                parked = self._catalog().set_offline(path)
            except StorageUnavailable as exc:
                parked = 0
                log.warning("%s: its pictures stay searchable until the disk allows a write: %s", path, exc)
            log.warning(
                "folder %s was added at run time but is not watched: %s (%d pictures offline)", path, why, parked
            )

    def roots(self, config: Config) -> list[str]:
        """What the watcher watches: the config's folders, then the added ones that may be watched."""
        watched = normalised_roots(config.watch_dirs)
        with self._lock:
            added = list(self._added)
        watched += [
            p for p in added if p not in watched and not _covered(p, watched) and self._unusable(p, config) is None
        ]
        return watched

    def apply(self, config: Config, options: WatchOptions | None = None) -> None:
        """Tell the watcher the folders to watch now (a reload's settings, or a folder added or removed)."""
        watcher = self.host.watcher
        if watcher is not None:
            with self._lock:
                watcher.configure(self.roots(config), options)
        if options is not None:  # a reload: the settings may forbid an added folder now
            self._park(config)

    # -- reading

    def folders(self) -> FolderList:
        """Every watched folder: the config's (in its order), then the added ones (oldest first)."""
        config = self.host.config
        watcher = self.host.watcher
        states = {s["folder"]: s for s in (watcher.status() if watcher is not None else [])}
        with self._lock:
            added = dict(self._added)
        configured = normalised_roots(config.watch_dirs)
        entries = [self._entry(root, "config", None, states.get(root)) for root in configured]
        for root, added_at in added.items():
            if not _covered(root, configured):  # one the settings now watch too is listed once, as theirs
                entry = self._entry(root, "added", added_at, states.get(root))
                entry["error"] = entry["error"] or self._unusable(root, config)
                entries.append(entry)
        return {"folders": entries, "roots": outermost(config.allowed_roots), "anywhere": not config.allowed_roots}

    def _counts(self, root: str) -> tuple[int, int]:
        """(indexed, failed) below ``root``: read again when the catalogue changed, at most every
        ``COUNT_EVERY`` seconds (a page polls ``/folders``; a 100,000-file folder takes ~0.2 s to count)."""
        catalog = self._catalog()
        seq, now = catalog.current_seq(), time.monotonic()
        cached = self._counted.get(root)
        if cached is not None and (cached[0] == seq or now - cached[1] < COUNT_EVERY):
            return cached[2]
        counts = catalog.indexed_and_failed_under(root)
        self._counted[root] = (seq, now, counts)
        return counts

    def _entry(self, root: str, source: Source, added_at: float | None, status: FolderStatus | None) -> FolderEntry:
        job = self._last_job(root)
        running = job is not None and job.state in (JobState.SCANNING, JobState.INDEXING)
        pending = (status["settling"] if status else 0) + (job.found - job.done if job and running else 0)
        state = str(status["state"]) if status else "offline"  # not watched: outside the roots now
        error = status["reason"] if status and state == "offline" else None
        if error is None and job is not None and job.state == JobState.FAILED:
            error = job.error
        files, failed = self._counts(root)
        entry: FolderEntry = {
            "folder": root,
            "source": source,
            "state": state,
            "files": files,
            "failed": failed,
            "pending": max(0, pending),
            "job": job.as_dict() if job else None,
            "added_at": iso_utc(added_at) if added_at is not None else None,
            "removable": source == "added",
            "error": error,
        }
        if (encoded := _raw(root)) is not None:
            entry["path_base64"] = encoded
        return entry

    # -- watching and unwatching

    def watch(self, raw: str) -> tuple[int, Watched]:
        """Watch a folder from now on (kept across restarts) and index it now: (201, answer), or
        (200, answer) when it is watched already. ``Conflict`` inside a watched folder."""
        host = self.host
        try:
            path = host.canonical(host.check_path(raw))
        except Refused as exc:
            where = f"the settings file {host.config.source}" if host.config.source else "the settings"
            raise Refused(
                f"{exc}; to watch it, add it or a folder above it to server.allowed_roots in {where} "
                "and reload (SIGHUP)",
                reason="outside_roots",
                folder=normalise_path(raw),
            ) from None
        data = os.path.realpath(host.config.data_dir)
        if is_under(os.path.realpath(path), data):
            raise Refused(f"{path} is in the daemon's own data folder ({data})", reason="data_folder", folder=path)
        if not os.path.isdir(path):
            what = "is not a folder" if os.path.exists(path) else "does not exist"
            raise NotFound(f"{path} {what}", folder=path)
        if not os.access(path, os.R_OK | os.X_OK):
            raise Refused(f"{path}: folder is not readable by imgsearchd", reason="unreadable", folder=path)
        with self._lock:
            config = host.config
            configured = normalised_roots(config.watch_dirs)
            same = self._watched_as(path, configured)
            if same is not None:
                last = self._last_job(same)
                source: Source = "config" if same in configured else "added"
                return 200, _watched(same, source, True, last.as_dict() if last else None)
            inside = [p for p in self._added if is_under(p, path)]
            added_at = self._write(
                lambda: self._catalog().add_watched_folder(path, inside), f"{path} is not watched: ask again later"
            )
            for covered in inside:
                del self._added[covered]
                log.info("%s is now watched as part of %s", covered, path)
            self._added[path] = added_at
            self._counted.pop(path, None)
            self.apply(config)
        log.info("watching %s from now on (added at run time)", path)
        job = self._intake().add_folder(path, config.watch.extensions, config.watch.recursive)
        return 201, _watched(path, "added", False, job.as_dict())

    def _watched_as(self, path: str, configured: list[str]) -> str | None:
        """The watched folder that ``path`` is (by name, or the same real folder through a link), or
        None; ``Conflict`` when a watched folder holds it (by name or by real path)."""
        real = os.path.realpath(path)
        watched = [(root, os.path.realpath(root)) for root in [*configured, *self._added]]
        for root, root_real in watched:
            if path == root or real == root_real:
                return root
        for root, root_real in watched:
            if is_under(path, root) or is_under(real, root_real):
                raise Conflict(f"{path} is already watched as part of {root}", folder=path, watched_by=root)
        return None

    def unwatch(self, raw: str) -> Unwatched:
        """Stop watching an added folder and forget its pictures (not those another watched
        folder holds); the files stay on disk. ``Conflict`` for a config folder."""
        path = self._named_folder(raw)
        with self._lock:
            config = self.host.config
            configured = normalised_roots(config.watch_dirs)
            if path in configured:
                raise Conflict(self._config_owned(path, config), folder=path, watched_by="config")
            if path not in self._added:
                raise NotFound(f"{path} is not a watched folder (see GET /folders)", folder=path)
            self._write(
                lambda: self._catalog().remove_watched_folder(path), f"{path} is still watched: ask again later"
            )
            del self._added[path]
            self._counted.pop(path, None)
            self.apply(config)
            still = self.roots(config)
        log.info("stopped watching %s; forgetting its pictures (the files are not touched)", path)
        answer: Unwatched = {"folder": path, "removed": self._forget(path, still)}
        if (encoded := _raw(path)) is not None:
            answer["path_base64"] = encoded
        return answer

    def _named_folder(self, raw: str) -> str:
        """The added or config folder a request names: as given, else as a scan names it. An added
        folder now outside the allowed roots (the settings changed) can still be removed."""
        if "\x00" in raw:
            raise Invalid("path contains a NUL character")
        if not os.path.isabs(raw):
            raise Invalid(f"path must be absolute, not {raw!r}")
        path = normalise_path(raw)
        with self._lock:
            if path in self._added:
                return path
        checked = self.host.check_path(raw)
        named = self.host.canonical(checked)
        return named if named in self._added else checked

    def _config_owned(self, path: str, config: Config) -> str:
        """Why a config folder cannot be removed at run time, naming where it is set."""
        if path in normalised_roots(config.extra_watch):
            return f"{path} is watched because the daemon was started with --watch {path}; restart it without"
        where = f"the settings file {config.source}" if config.source else "the settings"
        return f"{path} is watched by {where} ({SETTING}); remove it there and reload (SIGHUP) to stop watching it"

    def _forget(self, path: str, still: list[str]) -> int:
        """Forget the catalogue's entries at or below ``path``, but not those below a folder still watched."""
        if any(is_under(path, root) for root in still):
            return 0  # a config folder holds it all (a reload added one around it)
        job = self._last_job(path)
        if job is not None and job.state == JobState.SCANNING:  # it would queue files after the sweep
            job.scan_done.wait(SCAN_WAIT)
        intake = self._intake()
        inner = [root for root in still if is_under(root, path)]
        if not inner:
            removed = intake.remove(path)
            if len(intake.queue):  # a removal replaces each add still queued: not embedded, its job ends
                watch = self.host.config.watch
                intake.queue.put_many(walk_images(path, watch.extensions, watch.recursive), Intent.REMOVE)
            intake.queue.put(path, Intent.REMOVE)  # after what is queued below it: nothing comes back
            return removed
        doomed = [p for p in self._catalog().files_under(path) if not any(is_under(p, r) for r in inner)]
        try:
            return self._write(
                lambda: intake.pipeline.remove(doomed),
                f"{path} is no longer watched; forgetting its pictures waits for the disk (queued)",
            )
        except StorageUnavailable:
            intake.queue.put_many(doomed, Intent.REMOVE)  # done by the indexer once the disk allows
            raise

    # -- browsing

    def browse(self, raw: str | None) -> Browse:
        """The sub-folders of a folder inside the allowed roots (hidden ones left out, sorted, at
        most ``BROWSE_LIMIT``); without one: the allowed roots, or the home folder when there are none."""
        config = self.host.config
        pairs = config.root_pairs()
        watched = [(root, os.path.realpath(root)) for root in self.roots(config)]
        if raw is None and pairs:
            named = dict.fromkeys(c for c, _ in pairs if os.path.isdir(c))
            offered = [_offer(os.path.basename(c.rstrip("/")) or c, c, os.path.realpath(c), watched) for c in named]
            return {"path": None, "parent": None, "folders": offered, "truncated": False}
        path = self.host.check_path(raw if raw is not None else os.path.expanduser("~"))
        if not os.path.isdir(path):
            what = "is not a folder" if os.path.exists(path) else "does not exist"
            raise NotFound(f"{path} {what}", folder=path)
        try:
            with os.scandir(path) as entries:
                found = sorted((e.name, e.is_symlink()) for e in entries if _offered(e))
        except OSError as exc:
            raise Refused(f"{path}: cannot be read ({exc.strerror or exc})", reason="unreadable", folder=path) from None
        allowed, base_real = config.allowed_roots, os.path.realpath(path)
        kept: list[BrowseEntry] = []
        # Only a link needs resolving: 5,000 sub-folders took 265 ms with each resolved, 30 ms so (busy 2-core Zen 4).
        for name, link in found:
            child = os.path.join(path, name)
            real = os.path.realpath(child) if link else os.path.join(base_real, name)
            if allowed and not is_inside(real, allowed):
                continue  # a link out of the roots
            kept.append(_offer(name, child, real, watched))
            if len(kept) > BROWSE_LIMIT:
                break
        at_root = path == "/" or any(path == c or os.path.realpath(path) == r for c, r in pairs)
        answer: Browse = {
            "path": path,
            "parent": None if at_root else os.path.dirname(path),
            "folders": kept[:BROWSE_LIMIT],
            "truncated": len(kept) > BROWSE_LIMIT,
        }
        if (encoded := _raw(path)) is not None:
            answer["path_base64"] = encoded
        return answer

    # -- helpers

    def _unusable(self, path: str, config: Config) -> str | None:
        """Why an added folder cannot be watched with these settings (outside the allowed roots), or None."""
        if leads_outside(path, config.allowed_roots):
            return "outside server.allowed_roots and the config's folders (the settings changed since it was added)"
        return None

    def _last_job(self, path: str) -> Job | None:
        """The folder's latest job (running, or the last one still kept), as ``/jobs`` knows it."""
        jobs = self.host.jobs
        found = (jobs.get(str(j["id"])) for j in reversed(jobs.summary()) if j["folder"] == path)
        return next((job for job in found if job is not None), None)

    def _write(self, write: Callable[[], T], what: str) -> T:
        """A catalogue write; a full or read-only disk is ``StorageUnavailable`` saying ``what``."""
        try:
            return write()
        except Exception as exc:
            if not is_storage_error(exc):
                raise
            storage = self._intake().pipeline.storage
            storage.failed(exc)  # /health says degraded until a write goes through again
            state = storage.as_dict()
            raise StorageUnavailable(
                f"cannot write the catalogue in {self._intake().data_dir} ({state.get('error', 'storage error')}); "
                f"{what}",
                storage=state,
            ) from None

    def _catalog(self) -> Catalog:
        assert self.host.catalog is not None
        return self.host.catalog

    def _intake(self) -> Intake:
        assert self.host.intake is not None
        return self.host.intake


def _covered(path: str, roots: list[str]) -> bool:
    """True when one of ``roots`` (not ``path`` itself) holds ``path``."""
    return any(path != root and is_under(path, root) for root in roots)


def _offered(entry: os.DirEntry[str]) -> bool:
    """A folder (or a link to one) that is not hidden."""
    if is_hidden_or_temporary(entry.name):
        return False
    try:
        return entry.is_dir(follow_symlinks=True)
    except OSError:
        return False


def _watched(path: str, source: Source, already: bool, job: JobDict | None) -> Watched:
    answer: Watched = {"folder": path, "source": source, "already": already, "job": job}
    if (encoded := _raw(path)) is not None:
        answer["path_base64"] = encoded
    return answer


def _offer(name: str, path: str, real: str, watched: list[tuple[str, str]]) -> BrowseEntry:
    """A sub-folder offered by ``browse``: watched when it or a folder above it is (by name, or by its
    real path ``real``); ``watched``: (each watched folder, its real path)."""
    covered = any(is_under(path, root) or is_under(real, root_real) for root, root_real in watched)
    entry: BrowseEntry = {"name": name, "path": path, "watched": covered}
    if (encoded := _raw(path)) is not None:
        entry["path_base64"] = encoded
    return entry


def outermost(roots: list[str]) -> list[str]:
    """The roots, each once, without those inside another (a config folder inside ``server.allowed_roots``)."""
    unique = list(dict.fromkeys(roots))
    return [r for r in unique if not any(o != r and is_under(r, o) for o in unique)]
