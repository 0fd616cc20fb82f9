"""``imgsearchd config check [FILE]`` and ``imgsearchd config show``.

``check`` validates a settings file as the daemon would at start or reload: every error at once,
each naming the key and the file (exit 2), and warnings that do not stop a start (a watched
folder that does not exist; exit 0). ``show`` prints every effective setting, where it came
from (the built-in default, the file, or the command line) and, where it differs, the default.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import PACKAGED_PATH, SCHEMA, Config, ConfigError, find_config_file, load_config
from .arguments import int_in
from .exit_codes import EXIT_OK, EXIT_USAGE
from .output import add_json_flag, counted, output_mode

# Shown as "***" when set: ``config show`` output gets pasted into bug reports and chats.
SECRETS = frozenset({"server.token"})
HIDDEN = "***"


def add_config_parser(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """The ``config`` command and its ``check`` and ``show`` subcommands."""
    config = sub.add_parser("config", help="check a settings file, or show the effective settings")
    actions = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = actions.add_parser(
        "check", help="validate a settings file: every error (exit 2), warnings (a watched folder missing)"
    )
    check.add_argument("file", nargs="?", metavar="FILE", help="the file (default: the one the daemon would use)")
    check.add_argument("--config", metavar="PATH", help=argparse.SUPPRESS)
    add_json_flag(check)
    show = actions.add_parser("show", help="every effective setting, where it came from, and its default")
    show.add_argument("--port", type=int_in(1, 65535), help="as 'serve --port' would set it")
    show.add_argument("--changed", action="store_true", help="only the settings that differ from the defaults")
    show.add_argument("--json", action="store_true", help="as JSON: {key: {value, default, source}}")
    common(show)


def is_packaged(config: Config) -> bool:
    """The settings came from the default file shipped in the package (its values are the defaults)."""
    return config.source is not None and config.source.resolve() == PACKAGED_PATH.resolve()


def provenance(config: Config) -> dict[str, tuple[Any, str, Any]]:
    """``{"section.key": (value, source, default)}``; source is "default", "file PATH" or "command line".

    A secret that is set (the bearer token) is given as ``"***"``; values as written (``_as_written``).
    """
    in_file: dict[str, object] = {}  # "section.key" -> the value as the file writes it
    if config.source is not None and not is_packaged(config):
        raw = tomllib.loads(config.source.read_text(encoding="utf-8"))
        for top, table in raw.items():
            tables = table.items() if top == "extractors" else [(None, table)]
            for name, keys in tables:
                section = f"extractors.{name}" if name else top
                in_file.update((f"{section}.{key}", value) for key, value in keys.items())
    found: dict[str, tuple[Any, str, Any]] = {}
    for dotted, value in config.items():
        section, _, key = dotted.rpartition(".")
        default = SCHEMA[section][key].default
        if dotted in config.overrides:
            source, written = "command line", config.overrides[dotted]
        elif dotted in in_file:
            source, written = f"file {config.source}", in_file[dotted]
        else:
            source, written = "default", default
        value = list(value) if isinstance(value, tuple) else value  # as JSON and TOML write it
        shown = HIDDEN if dotted in SECRETS and value else _as_written(value, written)
        found[dotted] = (shown, source, list(default) if isinstance(default, tuple) else default)
    return found


def _as_written(value: object, written: object) -> object:
    """A float setting as it was written: ``32`` in the file (or as the default) shows as 32, not
    32.0 (the section holds 32.0; both read back the same)."""
    return written if isinstance(value, float) and type(written) is int and written == value else value


def config_errors(exc: ConfigError) -> str:
    """Every error of a settings file, one a line (each names the key and the file)."""
    return "\n".join(f"imgsearchd: configuration error: {error}" for error in exc.errors)


def warnings_of(config: Config) -> list[str]:
    """What a start would not refuse but should be said: a watched folder or allowed root that does not exist."""
    where = f" ({config.source})" if config.source else ""
    found = []
    for key, folders in (
        ("watch.directories", config.watch.directories),
        ("server.allowed_roots", config.server.allowed_roots),
    ):
        for folder in folders:
            path = Path(folder).expanduser()
            relative = (
                ""
                if path.is_absolute()
                else f" (a relative path: from the folder the daemon starts in; here {path.absolute()})"
            )
            if path.exists() and not path.is_dir():
                found.append(f"{key}: {folder} is a file, not a folder{relative}{where}")
            elif not path.exists():
                later = "; it is watched once it appears" if key.startswith("watch") else ""
                found.append(f"{key}: {folder} does not exist{relative}{where}{later}")
    return found


def cmd_config(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    """Run ``config check`` or ``config show``; the config is loaded here, not by ``main``."""
    explicit = getattr(args, "file", None) or args.config
    try:
        config = load_config(explicit, overrides if args.config_command == "show" else None)
    except ConfigError as exc:
        if args.config_command == "check" and output_mode(args) == "json":
            print(
                json.dumps({"file": _named_file(explicit), "ok": False, "errors": exc.errors, "warnings": []}, indent=2)
            )
        print(config_errors(exc), file=sys.stderr)
        return EXIT_USAGE
    where = str(config.source) if config.source is not None else "built-in defaults (no file found)"
    if is_packaged(config):
        where += " (the packaged default)"
    if args.config_command == "check":
        return _check(args, config, where)
    found = provenance(config)
    if args.changed:
        found = {key: seen for key, seen in found.items() if seen[0] != seen[2]}
    if output_mode(args) == "json":
        settings = {k: {"value": v, "default": d, "source": s} for k, (v, s, d) in found.items()}
        print(json.dumps({"file": where, "settings": settings}))  # one line, as it always was
        return EXIT_OK
    print(show_text(where, found))
    return EXIT_OK


def _named_file(explicit: str | None) -> str | None:
    try:
        path = find_config_file(explicit)
    except ConfigError:
        return explicit
    return str(path) if path else None


def _check(args: argparse.Namespace, config: Config, where: str) -> int:
    """A file without errors: ``FILE: ok``, and each warning on stderr (exit 0 all the same)."""
    warnings = warnings_of(config)
    if output_mode(args) == "json":
        print(json.dumps({"file": where, "ok": True, "errors": [], "warnings": warnings}, indent=2))
    else:
        print(f"{where}: ok" + (f" ({len(warnings)} warning{'s' if len(warnings) > 1 else ''})" if warnings else ""))
    for warning in warnings:
        print(f"imgsearchd: warning: {warning}", file=sys.stderr)
    return EXIT_OK


def show_text(where: str, found: dict[str, tuple[Any, str, Any]]) -> str:
    """``section.key = value  # source`` lines (TOML: the output reads back as settings); a setting
    that differs from its default is marked ``*`` and says the default."""
    changed = sum(1 for value, _, default in found.values() if value != default)
    lines = [
        f"# file: {where}",
        f"# {counted(changed, 'setting')} {'differs' if changed == 1 else 'differ'} from the defaults (marked *)",
    ]
    rows = [(f"{k} = {json.dumps(v)}", s, v != d, d) for k, (v, s, d) in found.items()]
    width = min(60, max((len(text) for text, *_ in rows), default=0))  # long lists run over
    for text, source, differs, default in rows:
        note = f"* {source}, default {json.dumps(default)}" if differs else source
        lines.append(f"{text:<{width}}  # {note}")
    return "\n".join(lines)
