"""Backfill: the heavy first indexing of a large archive, embedded on a Ray cluster.

One machine serves and watches; a cluster only embeds. ``plan`` compares the folders with
the catalogue exactly as a scan does (``folders.plan_folder``: size, mtime, a vector from
every configured model), ``Backfill.run`` sends the planned paths through a Ray Data
pipeline of ``worker.FileEmbedder`` actors (the models loaded once per actor;
GPUs used when the cluster has them) and streams the results back into the catalogue,
a few hundred files per transaction. Content the catalogue already holds (a copy or a
move) is hashed on the worker but not decoded: its stored vector is reused.

Resumable by construction: what was committed stays, and a rerun plans only what is still
missing; Ray restarts a lost actor and retries its tasks (Ray Data's defaults for actor
pools), and a result delivered twice is written once (``repeated``). The progress record
(``status``) lets a daemon on the same catalogue show the backfill in ``/stats``,
and its indexes pull the new vectors by themselves (``ExtractorIndex.refresh``).

Ray is optional (``pip install 'imgsearchd[ray]'``) and imported only by ``run``.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import msgspec
import numpy as np

from ..ingest.folders import OnError, plan_folder
from ..media.failures import Reason
from ..media.limits import ImageLimits
from ..media.photo_metadata import PhotoMetadata
from ..paths import normalise_path
from ..store.catalog import Catalog
from ..store.rows import FileResult
from .status import BackfillProgress, State, heartbeat
from .worker import FileEmbedder, embedded_column, for_workers, model_column, vector_column

if TYPE_CHECKING:
    from ..config import ExtractorSettings
    from ..extractors import Extractor

log = logging.getLogger("imgsearchd.bulk.backfill")

INSTALL_HINT = "backfill needs Ray: pip install 'imgsearchd[ray]' (here and on the cluster's machines)"
# Results are written in transactions of at least this many files, or every WRITE_EVERY_S.
WRITE_ROWS = 256
WRITE_EVERY_S = 2.0
# A Ray head answers a TCP connect at once; a dead address should not take longer to say so.
CONNECT_TIMEOUT_S = 5.0


class BackfillError(Exception):
    """The backfill cannot start or go on; what it wrote so far stays in the catalogue."""


@dataclass(frozen=True)
class ClusterOptions:
    """How to use the cluster. None: decided from the cluster's resources (``actor_shape``)."""

    address: str  # a Ray address: "auto", "HOST:6379", "ray://HOST:10001", or "local" (start one here)
    actors: int | None = None
    cpus_per_actor: float | None = None
    gpus_per_actor: float | None = None
    files_per_task: int | None = None
    path_map: Sequence[tuple[str, str]] = ()  # (prefix here, prefix on the workers)


@dataclass
class Plan:
    """The files a backfill will embed, and what the walk saw besides."""

    folders: list[str]
    paths: list[str] = field(default_factory=list)
    unchanged: int = 0
    unreadable: list[str] = field(default_factory=list)
    outside: list[str] = field(default_factory=list)


def plan(
    catalog: Catalog,
    folders: Iterable[str],
    extensions: Iterable[str],
    recursive: bool,
    models: dict[str, str],
    roots: Sequence[str] | None,
    on_error: OnError | None = None,
) -> Plan:
    """Every file under ``folders`` that is new, changed, or lacks a vector of ``models``.

    Only stat'ed, as a scan plans (``folders.plan_folder``); a path is planned once even
    when folders overlap. Raises FileNotFoundError for a folder that is not there.
    """
    folders = [normalise_path(f) for f in folders]
    result = Plan(folders=folders)
    seen: set[str] = set()
    extensions = list(extensions)
    for folder in folders:
        if not os.path.isdir(folder):
            raise FileNotFoundError(f"{folder} is not a folder")
        found = plan_folder(catalog, folder, extensions, recursive, models, on_error=on_error, roots=roots)
        result.unchanged += found.unchanged
        result.unreadable += found.unreadable
        result.outside += found.outside
        for path, _mtime in found.to_add:
            if path not in seen:
                seen.add(path)
                result.paths.append(path)
    return result


def mapped(path: str, path_map: Sequence[tuple[str, str]]) -> str:
    """``path`` as the workers reach it: the first matching (here, there) prefix replaced."""
    for here, there in path_map:
        here = here.rstrip("/")
        if path == here or path.startswith(here + "/"):
            return there.rstrip("/") + path[len(here) :]
    return path


def plan_table(paths: Sequence[str], path_map: Sequence[tuple[str, str]]) -> Any:
    """The plan as the pipeline's input: ``row``, ``path`` (file system bytes) and, with a
    ``path_map`` only, ``open`` (the name on the workers, ``worker`` reads ``path``
    without it). At 10M files of ~80-byte names a second copy of every name would cost the
    driver and the object store ~0.8 GB for nothing when the workers see the same paths.
    """
    import pyarrow as pa

    columns = {
        "row": pa.array(np.arange(len(paths), dtype=np.int64)),
        "path": pa.array([os.fsencode(p) for p in paths], pa.binary()),
    }
    if path_map:
        columns["open"] = pa.array([os.fsencode(mapped(p, path_map)) for p in paths], pa.binary())
    return pa.table(columns)


def import_ray() -> Any:
    """The ``ray`` module with Ray Data, or BackfillError saying how to install it."""
    try:
        import ray
        import ray.data  # the pipeline: a bare ``ray`` install lacks it
    except ImportError as exc:
        raise BackfillError(f"{INSTALL_HINT} ({exc})") from None
    return ray


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """BackfillError unless something answers at ``address`` ("HOST:PORT" or "ray://HOST:PORT").

    ray.init retries a dead address for minutes, logging a warning every few seconds (seen:
    over 3 minutes for 127.0.0.1:1); a TCP connect says it at once. "auto" and "local" pass.
    """
    if address in ("auto", "local"):
        return
    host, sep, port = address.split("://", 1)[-1].rpartition(":")
    if not sep or not host or not port.isdigit():
        raise BackfillError(f"{address!r} is not a Ray address: auto, local, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise BackfillError(
            f"nothing answers at the Ray address {address!r} ({exc.strerror or exc}): is the cluster started "
            "(ray start --head) and the address its head's?"
        ) from None


@contextlib.contextmanager
def only_backfill(catalog_path: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the catalogue's backfill lock, or BackfillError naming the backfill that holds it.

    Two backfills of one catalogue would each embed every planned file (neither sees the
    other's uncommitted work) and overwrite each other's progress record. An flock: the
    kernel drops it when its process dies, so a killed backfill never blocks the next.
    """
    path = f"{os.fspath(catalog_path)}.backfill-lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise BackfillError(
                f"another backfill (process {holder}) is running on the catalogue {os.fspath(catalog_path)}: "
                "wait for it, or stop it (a rerun does the rest)"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def actor_shape(resources: dict[str, float], options: ClusterOptions) -> tuple[int, float, float]:
    """(actors, CPUs each, GPUs each) for a cluster with these total resources.

    With GPUs: one actor per GPU, the CPUs shared out among them for decoding (a GPU embeds
    faster than one core decodes). Without: actors of up to 4 CPUs (decode threads and torch
    threads), as many as fit.
    """
    cpus = max(1.0, float(resources.get("CPU", 1)))
    gpus = float(resources.get("GPU", 0))
    gpus_each = options.gpus_per_actor if options.gpus_per_actor is not None else (1.0 if gpus >= 1 else 0.0)
    if options.actors is not None:
        actors = options.actors
    elif gpus_each > 0:
        actors = max(1, int(gpus // gpus_each))
    else:
        actors = max(1, int(cpus // (options.cpus_per_actor or min(cpus, 4.0))))
    cpus_each = options.cpus_per_actor or max(1.0, min(cpus // actors, 8.0))
    return actors, cpus_each, gpus_each


class Backfill:
    """Runs one backfill: the pipeline on the cluster, the writes here."""

    def __init__(
        self,
        catalog: Catalog,
        extractors: dict[str, Extractor],
        settings: dict[str, ExtractorSettings],
        limits: ImageLimits,
        roots: Sequence[str] | None,
        options: ClusterOptions,
        progress: BackfillProgress,
        on_update: Callable[[BackfillProgress, int], None] | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.catalog = catalog
        self.extractors = extractors
        self.models = {name: e.model_id for name, e in extractors.items()}
        self.settings = settings
        self.limits = limits
        self.roots = roots
        self.options = options
        self.progress = progress
        self.on_update = on_update
        self.stop = stop or threading.Event()
        self.shape: tuple[int, float, float] | None = None
        self._lock = threading.Lock()  # the progress record: the heartbeat saves it too
        self._pending: list[FileResult] = []
        self._last_write = time.monotonic()
        self._written: np.ndarray = np.zeros(0, dtype=bool)

    # -- the record

    def _save(self) -> None:
        with self._lock:
            self.progress.save(self.catalog)

    # -- running

    def run(self, paths: Sequence[str]) -> BackfillProgress:
        """Embed ``paths`` on the cluster and write them; returns the final progress.

        KeyboardInterrupt or ``stop`` ends it early (state ``stopped``); a failure raises
        BackfillError (state ``failed``). Either way what was committed stays.
        """
        self.progress.planned = len(paths)
        self._written = np.zeros(len(paths), dtype=bool)
        if not paths:
            self.progress.state = State.FINISHED
            self._save()
            return self.progress
        ray = import_ray()
        self.progress.state = State.RUNNING
        try:
            with heartbeat(self._save):
                self._stream(ray, paths)
            self.progress.state = State.FINISHED
        except (KeyboardInterrupt, SystemExit):  # SystemExit: a SIGTERM while Ray's own handler was set
            self._finish_early(State.STOPPED, None)
            raise
        except BackfillError as exc:
            self._finish_early(State.FAILED, str(exc))
            raise
        except Exception as exc:
            self._finish_early(State.FAILED, f"{type(exc).__name__}: {exc}")
            raise BackfillError(f"the backfill failed: {type(exc).__name__}: {exc}") from exc
        finally:
            ray.shutdown()  # also after an init cut short: it stops the processes a "local" start had made
        self._save()
        return self.progress

    def _stream(self, ray: Any, paths: Sequence[str]) -> None:
        """Connect, run the pipeline, write its results as they come."""
        self._connect(ray)
        self.progress.pipeline_started = time.time()
        for batch in self._dataset(ray, paths).iter_batches(batch_size=None, batch_format="numpy"):
            self._take(batch)
            if len(self._pending) >= WRITE_ROWS or time.monotonic() - self._last_write >= WRITE_EVERY_S:
                self._write()
            if self.stop.is_set():
                raise KeyboardInterrupt
        self._write()

    def _finish_early(self, state: str, error: str | None) -> None:
        """Write what came back (unless the catalogue is what failed), then record the state."""
        try:
            self._write()
        except Exception as exc:
            log.warning("cannot write the last %d results: %s (a rerun redoes them)", len(self._pending), exc)
        self.progress.done = self._committed()
        self.progress.state = state
        self.progress.error = error
        try:
            self._save()
        except Exception as exc:
            log.warning("cannot record the backfill's end: %s", exc)

    def _connect(self, ray: Any) -> None:
        address = self.options.address
        check_reachable(address)
        # ray.init replaces the SIGTERM handler with sys.exit: the caller's (the CLI's: stop and
        # record "stopped") is put back, or a SIGTERM would leave the record "running" and lose
        # the results in hand.
        sigterm = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
        try:
            if address == "local":
                ray.init(logging_level=logging.WARNING, log_to_driver=False, include_dashboard=False)
            else:
                ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        except Exception as exc:
            raise BackfillError(
                f"cannot connect to the Ray cluster at {address!r}: {exc} (is the address right? A cluster with "
                "token authentication also needs RAY_AUTH_MODE=token and its token in RAY_AUTH_TOKEN, in the "
                "file RAY_AUTH_TOKEN_PATH names, or in ~/.ray/auth_token)"
            ) from exc
        finally:
            if sigterm is not None:
                signal.signal(signal.SIGTERM, sigterm)
        from ..extractors.precision import INT8_ID  # the models are loaded: torch is in already

        options = self.options
        if self.models and all(model_id.endswith(INT8_ID) for model_id in self.models.values()):
            # OpenVINO int8's models run on the workers' CPUs (``for_workers``): no GPU held for nothing
            options = replace(options, gpus_per_actor=0.0)
        self.shape = actor_shape(ray.cluster_resources(), options)
        actors, cpus, gpus = self.shape
        log.info(
            "backfill: %d files on %s with %d actors (%g CPUs, %g GPUs each)",
            self.progress.planned,
            address,
            actors,
            cpus,
            gpus,
        )

    def _dataset(self, ray: Any, paths: Sequence[str]) -> Any:
        """The Ray Data pipeline: blocks of paths -> FileEmbedder actors -> result batches."""
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # ours is on the console and in /stats
        logging.getLogger("ray.data").setLevel(logging.ERROR)  # its per-dataset banners and hints
        assert self.shape is not None
        actors, cpus, gpus = self.shape
        largest_batch = max(e.batch_size for e in self.extractors.values())
        per_task = self.options.files_per_task or 4 * largest_batch
        path_map = self.options.path_map
        table = plan_table(paths, path_map)
        # One block per task, so the tasks spread over the actors and a lost actor costs one block.
        blocks = [table.slice(start, per_task) for start in range(0, len(paths), per_task)]
        roots = [mapped(r, path_map) for r in self.roots] if self.roots is not None else None
        known = np.array(sorted(h.encode() for h in self.catalog.hashes_with_vectors(self.models)), dtype="S32")
        device = "auto" if gpus > 0 else "cpu"
        worker_settings = {name: for_workers(s, self.models.get(name, ""), device) for name, s in self.settings.items()}
        return ray.data.from_arrow(blocks).map_batches(
            FileEmbedder,
            fn_constructor_kwargs={
                "settings": worker_settings,
                "index_ids": dict(self.models),
                "limits": self.limits,
                "roots": roots,
                "known": known,
                "threads": max(1, int(cpus)),
            },
            batch_size=per_task,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=cpus,
            num_gpus=gpus or None,
        )

    # -- results

    def _take(self, batch: dict[str, np.ndarray]) -> None:
        """Turn one batch of worker results into catalogue rows (written by ``_write``)."""
        for name, model_id in self.models.items():
            made = {str(m) for m in batch[model_column(name)]}
            if made - {model_id}:
                raise BackfillError(
                    f"a worker ({batch['worker'][0]}) made {name} vectors with model id {sorted(made)[0]!r}, "
                    f"but this machine's {name} is {model_id!r}: the cluster must run the same imgsearchd, "
                    "model weights and [extractors] settings"
                )
        progress = self.progress
        for i, row in enumerate(batch["row"]):
            row = int(row)
            if self._written[row]:
                progress.repeated += 1
                continue
            self._written[row] = True
            path = os.fsdecode(bytes(batch["path"][i]))
            reason = str(batch["error_reason"][i]) or None
            if reason == Reason.MISSING:
                progress.vanished += 1  # gone since the plan: the watcher or a scan forgets it
                continue
            content_hash = str(batch["content_hash"][i]) or None
            vectors: dict[str, tuple[str, np.ndarray]] = {}
            if reason is None and content_hash is not None:
                embedded = False
                for name, model_id in self.models.items():
                    if batch[embedded_column(name)][i]:
                        vectors[name] = (model_id, np.asarray(batch[vector_column(name)][i], dtype=np.float32))
                        embedded = True
                    else:
                        stored = self.catalog.vector_for_hash(content_hash, name, model_id)
                        if stored is None:  # pruned since the plan: the next run embeds it
                            self._written[row] = False
                            break
                        vectors[name] = (model_id, stored)
                else:
                    progress.embedded += embedded
                    progress.reused += not embedded
                if not self._written[row]:
                    continue
            else:
                progress.failed += 1
            metadata = str(batch["metadata"][i])
            self._pending.append(
                FileResult(
                    path=path,
                    size=int(batch["size"][i]),
                    mtime_ns=int(batch["mtime_ns"][i]),
                    content_hash=content_hash,
                    vectors=vectors,
                    error_reason=reason,
                    error_detail=(str(batch["error_detail"][i]) or None) if reason else None,
                    metadata=_metadata(metadata) if metadata and reason is None else None,
                )
            )

    def _write(self) -> None:
        """One transaction for the results in hand, then the progress record."""
        pending = self._pending
        self._last_write = time.monotonic()
        if pending:
            # Dropped only once committed: a write that fails (a full disk, a Ctrl-C inside it) keeps
            # them for _finish_early's last try, and ``done`` never counts what is not in the catalogue.
            self.catalog.record_batch(pending)
            self._pending = []
        with self._lock:
            progress = self.progress
            progress.done = self._committed()
            progress.save(self.catalog)
        if self.on_update is not None:
            self.on_update(progress, len(pending))

    def _committed(self) -> int:
        """Files of the plan the catalogue has (or that vanished): taken from the cluster, not pending."""
        return int(self._written.sum()) - len(self._pending)


def _metadata(text: str) -> PhotoMetadata:
    """A worker's photo metadata (``json.dumps(asdict(...))`` there) back as the record; a
    ValueError (``msgspec.ValidationError``) when it is not one."""
    return msgspec.json.decode(text, type=PhotoMetadata)
