"""The ``imgsearchd`` command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import __version__

log = logging.getLogger("imgsearchd")

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_MODEL = 3


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="PATH", help="settings file (default: see README)")
    parser.add_argument("--extractor", metavar="NAME", help="use only this extractor (clip, resnet, efficientnet)")
    parser.add_argument("--data-dir", metavar="DIR", help="state folder (catalogue and indexes)")
    parser.add_argument("--log-level", metavar="LEVEL", help="debug, info, warning or error")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imgsearchd", description="Local image-search daemon and tools.")
    parser.add_argument("--version", action="version", version=f"imgsearchd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    index = sub.add_parser("index", help="index files and folders into the data folder")
    index.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders (recursive)")
    index.add_argument("--no-progress", action="store_true", help="no progress bar")
    _common(index)

    search = sub.add_parser("search", help="find the images most like IMAGE")
    search.add_argument("image", metavar="IMAGE")
    search.add_argument("--limit", type=int, default=10, help="how many results (1-1000, default 10)")
    _common(search)
    return parser


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


def setup_logging(level: str) -> None:
    """Plain lines on stderr: no timestamps, so the journal does not show them twice."""
    logging.basicConfig(
        level=getattr(logging, level.upper()),
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    from .config import ConfigError, load_config

    args = build_parser().parse_args(argv)
    try:
        config = load_config(args.config, _overrides(args))
    except ConfigError as exc:
        print(f"imgsearchd: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    setup_logging(config.section("log")["level"])
    handlers = {"index": cmd_index, "search": cmd_search}
    try:
        return handlers[args.command](args, config)
    except KeyboardInterrupt:
        print("imgsearchd: interrupted", file=sys.stderr)
        return 130


def _load_extractors(config: Any) -> Any:
    from .extractors import load

    return load(config.index["extractors"], config.index["fallback_extractor"], config.extractor)


def cmd_index(args: argparse.Namespace, config: Any) -> int:
    """Index files and folders with a progress bar; print a JSON summary."""
    from .catalog import Catalog, CatalogError
    from .extractors import ModelUnavailableError
    from .images import ImageLimits
    from .indexer import Indexer

    for raw in args.paths:
        if not os.path.exists(raw):
            print(f"imgsearchd: {raw}: no such file or folder", file=sys.stderr)
            return EXIT_USAGE
    try:
        loaded = _load_extractors(config)
    except ModelUnavailableError as exc:
        print(f"imgsearchd: {exc}", file=sys.stderr)
        return EXIT_MODEL
    try:
        catalog = Catalog(config.data_dir / "catalog.sqlite3")
    except CatalogError as exc:
        print(f"imgsearchd: {exc}", file=sys.stderr)
        return EXIT_ERROR
    with catalog:
        indexer = Indexer(
            catalog, loaded.extractors, ImageLimits.from_config(config.images), config.index["loader_threads"]
        )
        paths: list[str] = []
        for raw in args.paths:
            if os.path.isdir(raw):
                paths.extend(indexer.scan_folder(
                    raw, config.watch["extensions"], config.watch["recursive"],
                    on_error=lambda p, e: log.warning("cannot read %s: %s", p, e.strerror or e),
                ))
            else:
                paths.append(raw)
        show = not args.no_progress and sys.stderr.isatty()
        summary = indexer.process(paths, show_progress=show, total=len(paths))
        summary["removed"] = indexer.progress.removed
        catalog.prune_orphan_vectors()
    summary["forward_passes"] = sum(e.forward_passes for e in loaded.extractors.values())
    summary["extractors"] = {name: e.model_id for name, e in loaded.extractors.items()}
    if loaded.fallback is not None:
        summary["fallback"] = loaded.fallback.as_dict()
    print(json.dumps(summary, indent=2))
    return EXIT_OK


def cmd_search(args: argparse.Namespace, config: Any) -> int:
    """Print the images most like one image, as the HTTP API answers."""
    from . import images
    from .catalog import Catalog
    from .extractors import ModelUnavailableError
    from .query import distances_from_scores, exact_top, query_vector_for_path

    if not 1 <= args.limit <= 1000:
        print("imgsearchd: --limit must be from 1 to 1000", file=sys.stderr)
        return EXIT_USAGE
    if not Path(args.image).exists():
        print(f"imgsearchd: {args.image}: no such file", file=sys.stderr)
        return EXIT_USAGE
    try:
        loaded = _load_extractors(config)
    except ModelUnavailableError as exc:
        print(f"imgsearchd: {exc}", file=sys.stderr)
        return EXIT_MODEL
    extractor = loaded.default
    with Catalog(config.data_dir / "catalog.sqlite3") as catalog:
        try:
            vector = query_vector_for_path(catalog, extractor, args.image, images.ImageLimits.from_config(config.images))
        except images.ImageError as exc:
            print(f"imgsearchd: {args.image}: {exc}", file=sys.stderr)
            return EXIT_ERROR
        _, ids, vectors = catalog.all_vectors(extractor.name, extractor.model_id, extractor.dim)
        rows, scores = exact_top(vectors, vector, args.limit)
        paths = catalog.paths_for(ids[rows])
        distances = distances_from_scores(scores)
        results = [
            {"image": paths[int(ids[r])], "distance": round(float(d), 6), "score": round(float(s), 6)}
            for r, d, s in zip(rows, distances, scores)
            if int(ids[r]) in paths
        ]
    print(json.dumps({"results": results}, indent=2))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
