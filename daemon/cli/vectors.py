"""``imgsearchd export --format parquet DIR`` and ``imgsearchd import DIR``: vectors in and out.

The work is ``bulk.parquet``'s; this module parses the options, loads what is needed, shows
progress on a console and prints a summary (JSON when piped or with ``--json``). Without pyarrow both commands exit 2 and
say how to install it.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import LOG_LEVELS
from .exit_codes import EXIT_ERROR, EXIT_MODEL, EXIT_OK, EXIT_USAGE
from .models import load_extractors, models_fit_the_index, open_catalog
from .output import add_json_flag, emit, summary

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ..bulk.sources import Part
    from ..config import Config
    from ..extractors import LoadedExtractors

FORMATS = ("parquet",)


def _options(parser: argparse.ArgumentParser, extractor_help: str) -> None:
    """The common options, but ``--extractor`` as this command's own (``vectors_extractor``):
    the shared one replaces the configured extractors, and ``import`` must check against them."""
    parser.add_argument("--config", metavar="PATH", help="settings file (default: see README)")
    parser.add_argument("--extractor", dest="vectors_extractor", metavar="NAME", help=extractor_help)
    parser.add_argument("--data-dir", metavar="DIR", help="state folder (catalogue and indexes)")
    parser.add_argument("--log-level", choices=LOG_LEVELS, help="how much the log says")
    add_json_flag(parser)


def add_vectors_parsers(sub: Any) -> None:
    """The ``export`` and ``import`` commands."""
    export = sub.add_parser(
        "export",
        help="write every indexed file's vectors to Parquet files in DIR",
        description="Writes DIR/<extractor>/part-NNNNN.parquet from one consistent read of the catalogue "
        "(the daemon may run meanwhile). --extractor NAME: only that extractor's vectors.",
    )
    export.add_argument("folder", metavar="DIR")
    export.add_argument("--format", choices=FORMATS, default="parquet", help="file format (default parquet)")
    export.add_argument("--force", action="store_true", help="replace an earlier export in DIR")
    export.add_argument("--no-progress", action="store_true", help="no progress bar")
    _options(export, "only this extractor's vectors (default: every configured one)")
    into = sub.add_parser(
        "import",
        help="bring vectors made elsewhere (an export, or clip-retrieval's output) into the catalogue",
        description="DIR is an 'imgsearchd export' or clip-retrieval's output (img_emb/ + metadata/). "
        "Vectors whose model id or dimension differs from the configured extractor's are refused.",
    )
    into.add_argument("folder", metavar="DIR")
    into.add_argument(
        "--model",
        metavar="NAME",
        help="clip-retrieval only: its --clip_model (ViT-B/32, open_clip:ViT-B-32/laion2b_s34b_b79k) or our model id",
    )
    into.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="FROM=TO",
        help="read paths under FROM as under TO (the archive mounted elsewhere where the vectors were made)",
    )
    into.add_argument("--no-progress", action="store_true", help="no progress bar")
    _options(into, "ours: only this extractor's files; clip-retrieval's: the target (default clip)")


def _fail(message: str, status: int) -> int:
    print(f"imgsearchd: {message}", file=sys.stderr)
    return status


def cmd_export(args: argparse.Namespace, config: Config) -> int:
    """Export the configured extractors' vectors (or ``--extractor``'s)."""
    from ..bulk.parquet import export
    from ..bulk.sources import ParquetMissing, VectorsError, pyarrow_modules
    from ..ingest.progress import Bar

    try:
        pyarrow_modules()
    except ParquetMissing as exc:
        return _fail(str(exc), EXIT_USAGE)
    if not config.catalog_path.exists():
        return _fail(f"no catalogue at {config.catalog_path}: nothing to export", EXIT_USAGE)
    catalog = open_catalog(config)
    if catalog is None:
        return EXIT_ERROR
    names = [args.vectors_extractor] if args.vectors_extractor else list(config.index.extractors)
    folder = Path(args.folder).absolute()
    if folder.exists() and not folder.is_dir():
        return _fail(f"{folder} is not a folder", EXIT_USAGE)
    with catalog:
        held = catalog.counts()["vectors"]
        if args.vectors_extractor and not held.get(args.vectors_extractor):  # a typo would export nothing, "ok"
            return _fail(
                f"the catalogue holds no vectors of extractor {args.vectors_extractor!r} "
                f"(it holds: {', '.join(n for n, c in held.items() if c) or 'none'})",
                EXIT_USAGE,
            )
        total = sum(n for name, n in held.items() if name in names)
        bar = Bar(total, not args.no_progress and sys.stderr.isatty())
        try:
            done = export(catalog, folder, names, args.force, on_rows=bar.update)
        except VectorsError as exc:
            return _fail(str(exc), EXIT_USAGE)
        except OSError as exc:
            return _fail(f"cannot write {args.folder}: {exc}", EXIT_ERROR)
        finally:
            bar.close()
    emit(done, args, summary)
    return EXIT_OK


def cmd_import(args: argparse.Namespace, config: Config) -> int:
    """Import an export or clip-retrieval's output into the configured extractors."""
    from ..bulk.import_rows import ImportOptions
    from ..bulk.parquet import check_parts, import_vectors, parse_map
    from ..bulk.sources import VectorsError, clip_model_id, find_parts, open_clip_default_tag, pyarrow_modules
    from ..ingest.progress import Bar
    from ..media.limits import ImageLimits

    try:
        pyarrow_modules()
        maps = [parse_map(m) for m in args.map]
        model = clip_model_id(args.model, open_clip_default_tag) if args.model else None
        parts = find_parts(Path(args.folder).absolute(), args.vectors_extractor, model)
    except (VectorsError, ValueError) as exc:
        return _fail(str(exc), EXIT_USAGE)
    wanted = sorted({p.extractor for p in parts if p.rows})
    configured = list(config.index.extractors)
    for name in wanted:
        if name not in configured:
            return _fail(
                f"{args.folder} holds {name} vectors, but extractor {name} is not configured "
                f"(configured: {', '.join(configured)}); nothing was imported",
                EXIT_ERROR,
            )
    loaded = _loaded(wanted, config, {p.extractor: p.model_id for p in parts})
    if loaded is None:
        return EXIT_MODEL
    expected = {name: (e.model_id, e.dim) for name, e in loaded.extractors.items()}
    try:  # before the catalogue is opened (or made): a refusal writes nothing at all
        refuse_int8_apart(parts, expected)
        check_parts(parts, expected)
    except VectorsError as exc:
        return _fail(str(exc), EXIT_ERROR)
    catalog = open_catalog(config)
    if catalog is None:
        return EXIT_ERROR
    if not models_fit_the_index(catalog, config, loaded, "imported"):  # vectors the index would never search
        return EXIT_ERROR
    options = ImportOptions(
        maps=maps, limits=ImageLimits.from_config(config.images), roots=config.allowed_roots or None
    )
    bar = Bar(sum(p.rows for p in parts), not args.no_progress and sys.stderr.isatty())
    with catalog, contextlib.closing(bar):
        try:
            imported = import_vectors(catalog, parts, expected, options, on_rows=bar.update)
        except VectorsError as exc:
            return _fail(str(exc), EXIT_ERROR)
    answer = imported.as_json()
    if imported.missing and not imported.imported and not imported.already:
        # Nothing found at all: nearly always vectors made where the archive is mounted elsewhere.
        print(
            f"imgsearchd: {_none_of(imported.missing, args.folder)} "
            f"(first: {imported.first_missing}); if the archive is mounted elsewhere here, give --map FROM=TO",
            file=sys.stderr,
        )
    answer["extractors"] = {name: model_id for name, (model_id, _) in expected.items()}
    answer["files"] = len(parts)
    emit(answer, args, summary)
    return EXIT_OK


def refuse_int8_apart(parts: Sequence[Part], expected: dict[str, tuple[str, int]]) -> None:
    """Refuse, saying what to set, vectors of the configured model made on the other kind of index
    (OpenVINO int8's vectors are indexed apart from fp32/bf16 ones: extractors/engines.py)."""
    from ..bulk.sources import VectorsError
    from ..extractors.precision import int8_apart

    for part in parts:
        model_id = expected.get(part.extractor, ("", 0))[0]
        if int8_apart(part.model_id, model_id):
            raise VectorsError(
                f"{part.file}: its vectors are from model {part.model_id!r}, but the {part.extractor} extractor "
                f"runs {model_id!r}: the same model, but OpenVINO int8's vectors are indexed apart from fp32/bf16 "
                'ones; nothing was imported. Set engine and precision to what made them ("openvino" and '
                '"int8", or a float precision) and import again'
            )


def _loaded(names: list[str], config: Config, archive: dict[str, str]) -> LoadedExtractors | None:
    """These extractors, loaded as the daemon would (no fallback: a stand-in's vectors would not be the
    ones asked for), for the kind of vectors the archive holds where the catalogue holds none; None
    after saying why one cannot load."""
    if not names:
        from ..extractors import LoadedExtractors  # torch: only here, never at the CLI's start

        return LoadedExtractors({}, "")
    return load_extractors(config, names, fallback="", index_ids=archive)


def _none_of(missing: int, folder: object) -> str:
    """ "none of the 3 files named in FOLDER exist here", in the right number for one file."""
    if missing == 1:
        return f"the 1 file named in {folder} does not exist here"
    return f"none of the {missing} files named in {folder} exist here"
