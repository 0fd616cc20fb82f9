"""``imgsearchd backfill FOLDER... --ray ADDRESS``: the first indexing of a large archive on a Ray cluster.

Plans here (a stat of every file, as a scan does), embeds on the cluster, writes here.
Progress on the console (a bar on a terminal, a log line every ``LOG_EVERY_S`` otherwise)
and in the daemon's ``/stats`` when one runs on the same catalogue. Ctrl-C or SIGTERM
stops after the batch in hand is written; a rerun does the rest.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .arguments import float_in, int_in
from .exit_codes import EXIT_ERROR, EXIT_MODEL, EXIT_OK, EXIT_USAGE
from .output import add_json_flag, counted, emit, summary

if TYPE_CHECKING:
    from ..bulk.backfill import Backfill, ClusterOptions, Plan
    from ..bulk.status import BackfillProgress
    from ..config import Config
    from ..ingest.progress import Bar
    from ..store.catalog import Catalog

log = logging.getLogger("imgsearchd.bulk.backfill")

LOG_EVERY_S = 10.0


def _prefix_pair(text: str) -> tuple[str, str]:
    here, sep, there = text.partition("=")
    if not sep or not here.startswith("/") or not there.startswith("/"):
        raise argparse.ArgumentTypeError(f"{text!r}: expected HERE=THERE, two absolute folders")
    return os.path.normpath(here), os.path.normpath(there)


def _interrupt(_signum: int, _frame: Any) -> None:
    raise KeyboardInterrupt


def add_backfill_parser(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """The ``backfill`` command."""
    parser = sub.add_parser(
        "backfill",
        help="embed the files the catalogue lacks on a Ray cluster (pip install 'imgsearchd[ray]')",
        description="Plans here as a scan does, embeds on the cluster's workers (which must reach the files, "
        "at the same paths or through --map), and writes the vectors into this machine's catalogue.",
    )
    parser.add_argument("folders", nargs="+", metavar="FOLDER", help="folders to backfill (recursive)")
    parser.add_argument(
        "--ray",
        required=True,
        metavar="ADDRESS",
        help="the cluster: auto, HOST:6379 (this machine joined it), ray://HOST:10001, or local (start one here)",
    )
    parser.add_argument("--actors", type=int_in(1), metavar="N", help="model actors (default: one per GPU, or CPUs/4)")
    parser.add_argument(
        "--cpus-per-actor", type=float_in(0, above=True), metavar="N", help="CPUs each actor decodes with"
    )
    parser.add_argument(
        "--gpus-per-actor", type=float_in(0), metavar="N", help="GPUs each actor embeds on (0: CPU only)"
    )
    parser.add_argument("--files-per-task", type=int_in(1), metavar="N", help="files per Ray task (default 4 batches)")
    parser.add_argument(
        "--map",
        type=_prefix_pair,
        action="append",
        default=[],
        metavar="HERE=THERE",
        help="the workers reach files under HERE at THERE (repeatable)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_json_flag(parser)
    common(parser)


def cmd_backfill(args: argparse.Namespace, config: Config) -> int:
    """Run a backfill; print a JSON summary."""
    from ..bulk.backfill import BackfillError, check_reachable, import_ray, only_backfill

    for folder in args.folders:
        if not os.path.isdir(folder):
            print(
                f"imgsearchd: {folder}: not a folder (backfill takes folders; 'imgsearchd index' takes files)",
                file=sys.stderr,
            )
            return EXIT_USAGE
    try:
        import_ray()  # before loading any model: say at once what is missing
    except BackfillError as exc:
        print(f"imgsearchd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        check_reachable(args.ray)  # before a plan that may take an hour
    except BackfillError as exc:
        print(f"imgsearchd: {exc}", file=sys.stderr)
        return EXIT_ERROR
    with contextlib.ExitStack() as held:
        try:
            config.catalog_path.parent.mkdir(parents=True, exist_ok=True)
            held.enter_context(only_backfill(config.catalog_path))  # before the models load: say it at once
        except (BackfillError, OSError) as exc:
            print(f"imgsearchd: {exc}", file=sys.stderr)
            return EXIT_ERROR
        return _backfill(args, config)


def _backfill(args: argparse.Namespace, config: Config) -> int:
    """Plan, run and summarise, holding the catalogue's backfill lock."""
    from ..bulk.backfill import Backfill
    from ..bulk.status import BackfillProgress
    from ..ingest.progress import Bar
    from ..media.limits import ImageLimits
    from ..paths import normalise_path
    from .models import load_extractors, models_fit_the_index, open_catalog

    loaded = load_extractors(config)
    if loaded is None:
        return EXIT_MODEL
    catalog = open_catalog(config)
    if catalog is None:
        return EXIT_ERROR
    if not models_fit_the_index(catalog, config, loaded):
        return EXIT_ERROR
    started = time.monotonic()
    roots = config.allowed_roots or None
    models = {name: e.model_id for name, e in loaded.extractors.items()}
    options = _cluster_options(args)
    # SIGTERM stops as Ctrl-C does, wherever it falls: the plan of a large archive takes minutes, and
    # the wait for the cluster's first batch as long as its actors take to start (a flag checked
    # between batches left both deaf to it). Results in hand are written first (Backfill.run).
    previous = signal.signal(signal.SIGTERM, _interrupt)
    progress = BackfillProgress(folders=[normalise_path(f) for f in args.folders], address=args.ray)
    with catalog:
        found = _plan(args, config, catalog, models, roots, progress)
        bar = Bar(len(found.paths), not args.no_progress and sys.stderr.isatty())
        settings = {name: config.extractor(name) for name in loaded.extractors}
        backfill = Backfill(
            catalog,
            loaded.extractors,
            settings,
            ImageLimits.from_config(config.images),
            roots,
            options,
            progress,
            _on_update(bar),
        )
        try:
            failed = _run(backfill, found.paths, config)
        finally:
            bar.close()
            signal.signal(signal.SIGTERM, previous)
        if failed is not None:
            return failed
    emit(_summary(args, backfill, found, models, started), args, summary)
    return EXIT_OK


def _cluster_options(args: argparse.Namespace) -> ClusterOptions:
    """The cluster and the shape of its work, from the command line."""
    from ..bulk.backfill import ClusterOptions

    return ClusterOptions(
        address=args.ray,
        actors=args.actors,
        cpus_per_actor=args.cpus_per_actor,
        gpus_per_actor=args.gpus_per_actor,
        files_per_task=args.files_per_task,
        path_map=args.map,
    )


def _plan(
    args: argparse.Namespace,
    config: Config,
    catalog: Catalog,
    models: dict[str, str],
    roots: Sequence[str] | None,
    progress: BackfillProgress,
) -> Plan:
    """The files the catalogue lacks, as a scan finds them; /stats says "planning" meanwhile."""
    from ..bulk.backfill import plan
    from ..bulk.status import heartbeat

    # /stats says "planning" from the start: walking millions of files takes minutes.
    with heartbeat(lambda: progress.save(catalog)):
        found = plan(
            catalog,
            args.folders,
            config.watch.extensions,
            config.watch.recursive,
            models,
            roots,
            on_error=lambda p, e: log.warning("cannot read %s: %s", p, e.strerror or e),
        )
    log.info("backfill plan: %d files to embed, %d already in the catalogue", len(found.paths), found.unchanged)
    return found


def _on_update(bar: Bar) -> Callable[[BackfillProgress, int], None]:
    """What each write tells the console: the bar moves, and a log line every ``LOG_EVERY_S``."""
    last_log = [time.monotonic()]

    def on_update(progress: BackfillProgress, written: int) -> None:
        bar.update(written)
        bar.set_rate(progress.images_per_second())
        if time.monotonic() - last_log[0] >= LOG_EVERY_S:
            last_log[0] = time.monotonic()
            log.info(
                "backfill: %d of %d files, %.1f files/s",
                progress.done,
                progress.planned,
                progress.images_per_second(),
            )

    return on_update


def _run(backfill: Backfill, paths: Sequence[str], config: Config) -> int | None:
    """Run the backfill; None when it finished, else the exit code after saying why it stopped."""
    from ..bulk.backfill import BackfillError
    from ..store.disk_health import is_storage_error

    try:
        # Ray prints its workers' troubles (a lost actor, retried) on stdout: the summary owns stdout.
        with contextlib.redirect_stdout(sys.stderr):
            backfill.run(paths)
    except (KeyboardInterrupt, SystemExit):  # SystemExit: a SIGTERM during ray.init (Ray's handler)
        print(
            f"imgsearchd: backfill stopped; {backfill.progress.done} of {counted(len(paths), 'file')} written "
            "stay in the catalogue (run it again to do the rest)",
            file=sys.stderr,
        )
        return 130
    except BackfillError as exc:
        cause = exc.__cause__
        if cause is not None and is_storage_error(cause):
            print(f"imgsearchd: cannot write the catalogue {config.catalog_path}: {cause}", file=sys.stderr)
        else:
            print(f"imgsearchd: {exc}", file=sys.stderr)
        print(
            f"imgsearchd: {counted(backfill.progress.done, 'file')} written stay; run it again to do the rest",
            file=sys.stderr,
        )
        return EXIT_ERROR
    return None


def _summary(
    args: argparse.Namespace, backfill: Backfill, found: Plan, models: dict[str, str], started: float
) -> dict[str, object]:
    """The JSON summary printed at the end."""
    progress = backfill.progress  # what ``Backfill.run`` returned
    actors, cpus, gpus = backfill.shape or (0, 0.0, 0.0)
    return {
        "planned": progress.planned,
        "embedded": progress.embedded,
        "reused": progress.reused,
        "failed": progress.failed,
        "vanished": progress.vanished,
        "repeated": progress.repeated,
        "unchanged": found.unchanged,
        "unreadable": len(found.unreadable),
        "outside": len(found.outside),
        "seconds": round(time.monotonic() - started, 3),
        "images_per_second": progress.images_per_second(),
        "cluster": {"address": args.ray, "actors": actors, "cpus_per_actor": cpus, "gpus_per_actor": gpus},
        "extractors": models,
    }
