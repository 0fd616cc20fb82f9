"""The ``imgsearchd`` command line."""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..api.bounds import DEFAULT_LIMIT, MAX_DISTANCE, MAX_LIMIT
from ..config import KNOWN_EXTRACTORS, LOG_LEVELS
from ..logs import setup_logging
from ..process.data_lock import DataFolderBusy, DataLock, holder_of
from .arguments import MATCH_LEVELS, float_in, int_in
from .backfill import add_backfill_parser, cmd_backfill
from .completion import SHELLS, script_for
from .config import add_config_parser, cmd_config, config_errors
from .duplicates import add_duplicates_parsers, cmd_duplicates
from .exit_codes import EXIT_BUSY, EXIT_ERROR, EXIT_MODEL, EXIT_OK, EXIT_USAGE
from .folders import add_folders_parsers, cmd_folders, cmd_unwatch, cmd_watch
from .models import load_extractors, models_fit_the_index, open_catalog
from .output import add_json_flag, add_output_flags, emit, output_mode, print_results, summary
from .remote import QueryPart, add_remote, call_and_show, search_remote
from .vectors import add_vectors_parsers, cmd_export, cmd_import
from .views import rebuild_view, removed_view, stats_view

if TYPE_CHECKING:
    from ..config import Config
    from ..search.request import Query

log = logging.getLogger("imgsearchd")


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="PATH", help="settings file (default: see README)")
    parser.add_argument("--extractor", choices=KNOWN_EXTRACTORS, help="use only this extractor")
    parser.add_argument("--data-dir", metavar="DIR", help="state folder (catalogue and indexes)")
    parser.add_argument("--log-level", choices=LOG_LEVELS, help="how much the log says")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imgsearchd", description="Local image-search daemon and tools.")
    parser.add_argument("--version", action="version", version=f"imgsearchd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    index = sub.add_parser("index", help="index files and folders into the data folder")
    index.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders (recursive)")
    index.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_json_flag(index)
    _common(index)

    _add_search_parser(sub)

    serve = sub.add_parser("serve", help="run the daemon: HTTP API, indexing, index rebuilds")
    serve.add_argument("--port", type=int_in(1, 65535), metavar="N", help="listen on this port")
    serve.add_argument("--watch", action="append", metavar="DIR", default=[], help="also watch DIR (repeatable)")
    _common(serve)

    _add_client_parsers(sub)
    add_folders_parsers(sub, _common)
    add_config_parser(sub, _common)
    add_backfill_parser(sub, _common)
    add_vectors_parsers(sub)
    completion = sub.add_parser(
        "completion", help="print a shell completion script: source <(imgsearchd completion bash|zsh|fish)"
    )
    completion.add_argument("shell", choices=SHELLS, help="the shell: " + ", ".join(SHELLS))
    return parser


def _add_search_parser(sub: Any) -> None:
    search = sub.add_parser(
        "search",
        help="find the images most like IMAGE (or matching --text), or a combined query",
        description="TERM is an image (an existing file) or a text; several make a combined query: "
        "'a.jpg + \"at night\" - people' adds the first two and subtracts the third, "
        "and TERM:WEIGHT (night:0.5) weighs a term (default 1).",
    )
    search.add_argument("terms", nargs="*", metavar="TERM", help="an image path or a text; + and - between terms")
    search.add_argument("--text", help="search by text (CLIP); added to the TERMs")
    search.add_argument("--folder", metavar="DIR", help="only files at or below this folder")
    search.add_argument(
        "--taken-after", metavar="WHEN", help="only photos taken from WHEN on: 2019, 2019-07, 2019-07-14, or a time"
    )
    search.add_argument(
        "--taken-before", metavar="WHEN", help="only photos taken up to the end of WHEN (2019-07: all of July)"
    )
    search.add_argument(
        "--limit",
        type=int_in(1, MAX_LIMIT),
        default=DEFAULT_LIMIT,
        metavar="N",
        help=f"how many results (1-{MAX_LIMIT}, default {DEFAULT_LIMIT})",
    )
    search.add_argument(
        "--max-distance",
        type=float_in(0, MAX_DISTANCE),
        metavar="D",
        help=f"drop results further than this (0-{MAX_DISTANCE})",
    )
    search.add_argument(
        "--min-match",
        choices=MATCH_LEVELS,
        metavar="LEVEL",
        help="only results at this level or stronger: " + ", ".join(MATCH_LEVELS) + " (strongest first)",
    )
    search.add_argument(
        "--local", action="store_true", help="search the data folder directly instead of asking the running daemon"
    )
    add_output_flags(search)
    _common(search)


def _add_client_parsers(sub: Any) -> None:
    """The thin clients of a running daemon (``search`` aside)."""
    add = sub.add_parser("add", help="ask the running daemon to index a file or folder")
    add.add_argument("path", metavar="PATH")
    add.add_argument("--wait", action="store_true", help="follow a folder's job to the end (progress on stderr)")
    remove = sub.add_parser("remove", help="ask the running daemon to forget a file or folder")
    remove.add_argument("path", metavar="PATH")
    stats = sub.add_parser("stats", help="the running daemon's state in a screen (--json: all of it)")
    rebuild = sub.add_parser("rebuild", help="ask the running daemon to rebuild its indexes now")
    for thin in (add, remove, stats, rebuild):
        add_json_flag(thin)
        _common(thin)
    add_duplicates_parsers(sub, _common)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    if getattr(args, "extractor", None):
        overrides["index.extractors"] = [args.extractor]
    if getattr(args, "data_dir", None):
        overrides["index.data_dir"] = args.data_dir
    if getattr(args, "port", None) is not None:
        overrides["server.port"] = args.port
    if getattr(args, "log_level", None):
        overrides["log.level"] = args.log_level
    return overrides


def _without_config(args: argparse.Namespace) -> int | None:
    """Commands that load no settings first (``config`` reports a bad file itself), else None."""
    if args.command == "config":
        return cmd_config(args, _overrides(args))
    if args.command == "completion":
        print(script_for(args.shell, build_parser()), end="")
        return EXIT_OK
    return None


def _add_watch_dirs(config: Config, folders: list[str]) -> None:
    """``--watch DIR`` adds to the configured folders (and stays added across reloads)."""
    config.extra_watch = list(folders)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; its exit status."""
    try:
        code = _run(argv)
        # An answer smaller than the buffer meets a gone reader only at this flush: inside the
        # try, not at exit (where Python prints "Exception ignored" and exits 120)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # ``imgsearchd search X --paths | head -1``: the reader has what it wanted. Point stdout
        # at /dev/null so the flush at exit does not fail again (Python's documented recipe).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR


def _run(argv: Sequence[str] | None) -> int:
    from ..config import ConfigError, load_config

    args = build_parser().parse_args(argv)
    early = _without_config(args)
    if early is not None:
        return early
    try:
        config = load_config(args.config, _overrides(args))
    except ConfigError as exc:
        print(config_errors(exc), file=sys.stderr)
        return EXIT_USAGE
    setup_logging(config.log.level, config.log.format)
    if getattr(args, "watch", None):
        _add_watch_dirs(config, [os.path.abspath(f) for f in args.watch])
    handlers = {
        "index": cmd_index,
        "search": cmd_search,
        "serve": cmd_serve,
        "add": cmd_add,
        "remove": cmd_remove,
        "stats": cmd_stats,
        "rebuild": cmd_rebuild,
        "duplicates": cmd_duplicates,
        "backfill": cmd_backfill,
        "export": cmd_export,
        "import": cmd_import,
        "watch": cmd_watch,
        "unwatch": cmd_unwatch,
        "folders": cmd_folders,
    }
    try:
        return handlers[args.command](args, config)
    except KeyboardInterrupt:
        print("imgsearchd: interrupted", file=sys.stderr)
        return 130


def cmd_index(args: argparse.Namespace, config: Config) -> int:
    """Index files and folders with a progress bar; print a JSON summary."""
    from ..ingest.pipeline import Pipeline
    from ..media.limits import ImageLimits
    from ..media.thumbnails import ThumbnailStore
    from ..store.disk_health import is_storage_error

    for raw in args.paths:
        if not os.path.exists(raw):
            print(f"imgsearchd: {raw}: no such file or folder", file=sys.stderr)
            return EXIT_USAGE
    loaded = load_extractors(config)
    if loaded is None:
        return EXIT_MODEL
    catalog = open_catalog(config)
    if catalog is None:
        return EXIT_ERROR
    if not models_fit_the_index(catalog, config, loaded):
        return EXIT_ERROR
    limits = ImageLimits.from_config(config.images)
    roots = config.allowed_roots or None  # as the daemon: links out of them are skipped or refused
    thumbnails = ThumbnailStore.from_settings(config.data_dir, config.thumbnails)
    with (
        contextlib.closing(thumbnails),
        catalog,
        Pipeline(
            catalog,
            loaded.extractors,
            limits,
            config.index.loader_threads,
            roots=lambda: roots,
            thumbnails=thumbnails,
        ) as pipeline,
    ):
        paths: list[str] = []
        for raw in args.paths:
            if os.path.isdir(raw):
                found = pipeline.prune_folder(
                    raw,
                    config.watch.extensions,
                    config.watch.recursive,
                    on_error=lambda p, e: log.warning("cannot read %s: %s", p, e.strerror or e),
                )
                paths.extend(found)
            else:
                paths.append(raw)
        show = not args.no_progress and sys.stderr.isatty()
        try:  # named on the command line: files that failed before are tried again
            done = pipeline.process(paths, show_progress=show, total=len(paths), retry_failed=True)
        except Exception as exc:
            if not is_storage_error(exc):
                raise
            print(f"imgsearchd: cannot write the catalogue {config.catalog_path}: {exc}", file=sys.stderr)
            return EXIT_ERROR
        done["removed"] = pipeline.progress.removed
        pipeline.prune_unused()
    done["forward_passes"] = sum(e.forward_passes for e in loaded.extractors.values())
    done["extractors"] = {name: e.model_id for name, e in loaded.extractors.items()}
    done["precision"] = {name: e.precision.used for name, e in loaded.extractors.items()}
    done["engine"] = {name: e.precision.engine for name, e in loaded.extractors.items()}
    if loaded.fallback is not None:
        done["fallback"] = loaded.fallback.as_dict()
    emit(done, args, summary)
    return EXIT_OK


class BadTerms(ValueError):
    """A search's TERMs cannot be read as a query."""


def terms_to_parts(terms: Sequence[str], text: str | None = None) -> list[QueryPart]:
    """rclip-style terms as combined-query parts: ``a.jpg + "at night" - people:0.5``.

    A term naming an existing file is an image (its absolute path), one that looks like a
    path or an image file name but does not exist is an error, anything else is a text.
    ``+``/``-`` set the sign of the next term; ``TERM:WEIGHT`` its weight.
    """
    parts: list[QueryPart] = []
    sign = 1.0
    pending_sign = False
    for term in terms:
        if term in ("+", "-"):
            if pending_sign:
                raise BadTerms(f"'{term}' follows another sign; put a term between them")
            sign, pending_sign = (1.0 if term == "+" else -1.0), True
            continue
        weight = 1.0
        name = term
        if not os.path.exists(term) and ":" in term:
            head, _, tail = term.rpartition(":")
            try:
                weight = float(tail)
            except ValueError:
                pass
            else:
                if not math.isfinite(weight):
                    raise BadTerms(f"{term}: the weight must be a finite number")
                name = head
        if os.path.exists(name):
            part: QueryPart = {"image": os.path.abspath(name)}
        elif os.sep in name or os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES:
            raise BadTerms(f"{name}: no such file")
        elif not name.strip():
            raise BadTerms("an empty term")
        else:
            part = {"text": name}
        if sign * weight != 1.0:
            part["weight"] = sign * weight
        parts.append(part)
        sign, pending_sign = 1.0, False
    if pending_sign:
        raise BadTerms("the query ends with a sign; a term must follow it")
    if text is not None:
        parts.append({"text": text})
    return parts


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff", ".heic", ".avif")


def cmd_search(args: argparse.Namespace, config: Config) -> int:
    """Print the images most like one image (or matching a text, or a combined query), as the API answers."""
    try:
        parts = terms_to_parts(args.terms, args.text)
    except BadTerms as exc:
        print(f"imgsearchd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if not parts:
        print("imgsearchd: give an IMAGE, a text, or --text", file=sys.stderr)
        return EXIT_USAGE
    folder = os.path.abspath(args.folder) if args.folder else None
    from ..search.time_range import BadTimeBound, parse_range

    try:  # checked here too, so a typo is a usage error before a model is loaded
        parse_range(args.taken_after, args.taken_before)
    except BadTimeBound as exc:
        print(f"imgsearchd: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.local:
        return _search_local(args, config, parts, folder)
    return search_remote(args, config, parts, folder)


def _search_local(args: argparse.Namespace, config: Config, parts: list[QueryPart], folder: str | None) -> int:
    """Search the data folder without a daemon: load the model and the index here."""
    holder = holder_of(config.data_dir)
    if holder is not None:  # its indexes are locked: say so now, not after seconds of imports and models
        print(f"imgsearchd: {DataFolderBusy(config.data_dir, holder)}; search it without --local", file=sys.stderr)
        return EXIT_BUSY
    from ..errors import DomainError
    from ..media.limits import ImageLimits
    from ..paths import normalise_path
    from ..search import run
    from ..search.framing_prints import FramingChecker
    from ..search.index import ExtractorIndex, index_for
    from ..search.request import SearchRequest
    from ..search.time_range import parse_range
    from ..service.model_change import use_serving_models
    from ..store.catalog import Catalog
    from ..store.rows import SearchScope

    loaded = load_extractors(config)
    if loaded is None:
        return EXIT_MODEL
    after, before = parse_range(args.taken_after, args.taken_before)
    scope = SearchScope(normalise_path(folder) if folder else None, after, before)
    request = SearchRequest(None, args.limit, args.max_distance, scope, min_match=args.min_match)
    limits = ImageLimits.from_config(config.images)
    with Catalog(config.catalog_path) as catalog, contextlib.ExitStack() as opened:
        # a model change under way: the old model answers; an index of another model's vectors: refused
        notes, refusals = use_serving_models(catalog, loaded, config)
        for line in [*notes, *refusals]:
            print(f"imgsearchd: {line}", file=sys.stderr)
        if refusals:
            return EXIT_MODEL

        def index(name: str) -> ExtractorIndex:  # opens the snapshot (or builds it) once asked, closes it after
            return opened.enter_context(index_for(catalog, config, loaded.extractors[name]))

        searcher = run.Searcher(
            catalog, loaded.extractors, loaded.default, index, limits, None, normalise_path, 1 << 62,
            framing=FramingChecker(catalog, limits=limits),  # match levels: copies by their pixels
            copy_floor=lambda name: float(config.extractor(name).duplicate_threshold),
        )  # fmt: skip
        try:
            answer = run.search(searcher, request, _local_query(parts, normalise_path))
        except DomainError as exc:
            print(f"imgsearchd: {exc.message}", file=sys.stderr)
            return EXIT_ERROR
    print_results(dict(answer), output_mode(args))
    return EXIT_OK


def _local_query(parts: list[QueryPart], normalise: Callable[[str], str]) -> Query:
    """One plain image or text as the daemon's ``GET /search`` takes it (a picture's own file
    can be ``same`` only so), several parts as a combined query."""
    from ..search.request import ByPath, ByText, Combined

    only = parts[0] if len(parts) == 1 and "weight" not in parts[0] else None
    if only is not None and "image" in only:
        return ByPath(normalise(only["image"]))
    if only is not None and "text" in only:
        return ByText(only["text"])
    return Combined(parts)


def _stop_while_importing(_signum: int, _frame: object) -> None:
    """SIGTERM or SIGINT while the daemon's modules (torch) are still being imported: exit 0 now.

    Nothing is open or written yet, so there is nothing to unwind. Raising instead (as this did)
    can land inside torch's C++ import code, where pybind11 turns the exception into
    ``std::terminate``: an abort, seen once in CI (exit -6 instead of 0).
    """
    log.info("stopped while starting")
    for handler in logging.getLogger().handlers:
        handler.flush()
    os._exit(EXIT_OK)


def cmd_serve(args: argparse.Namespace, config: Config) -> int:
    """Run the daemon in the foreground.

    Importing torch takes seconds; a stop meanwhile ends the process cleanly (exit 0, a log
    line) instead of by the signal's default action. ``run_daemon`` then takes the signals.
    """
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, _stop_while_importing)
    lock = DataLock(config.data_dir)
    try:  # before torch is imported: a second daemon on the same data folder is told at once
        lock.acquire()
    except DataFolderBusy as exc:
        print(f"imgsearchd: {exc}", file=sys.stderr)
        return EXIT_BUSY
    except OSError as exc:
        from ..store.database import folder_trouble  # only on this error: the CLI starts without sqlite

        why = f"{exc.strerror or exc}{folder_trouble(config.data_dir)}"
        print(f"imgsearchd: cannot use the data folder {config.data_dir}: {why}", file=sys.stderr)
        return EXIT_ERROR
    from ..process.serve import run_daemon

    return run_daemon(config, lock)  # which takes the signals over at once


def cmd_add(args: argparse.Namespace, config: Config) -> int:
    return add_remote(args, config)


def cmd_remove(args: argparse.Namespace, config: Config) -> int:
    return call_and_show(args, config, ("GET", "/remove", {"image": os.path.abspath(args.path)}), removed_view)


def cmd_stats(args: argparse.Namespace, config: Config) -> int:
    return call_and_show(args, config, ("GET", "/stats", None), stats_view)


def cmd_rebuild(args: argparse.Namespace, config: Config) -> int:
    return call_and_show(args, config, ("POST", "/rebuild", {"extractor": args.extractor}), rebuild_view)


if __name__ == "__main__":
    sys.exit(main())
