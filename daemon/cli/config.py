"""``imgsearchd config check [FILE]`` and ``imgsearchd config show``.

``check`` validates a settings file as the daemon would at start or reload (exit 0, or 2
with the key and the file named). ``show`` prints every effective setting and where it came
from: the built-in default, the file, or the command line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from collections.abc import Callable
from typing import Any

from ..config import PACKAGED_PATH, SCHEMA, Config, ConfigError, load_config
from .exit_codes import EXIT_OK, EXIT_USAGE

# Shown as "***" when set: ``config show`` output gets pasted into bug reports and chats.
SECRETS = frozenset({"server.token"})
HIDDEN = "***"


def add_config_parser(sub: Any, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """The ``config`` command and its ``check`` and ``show`` subcommands."""
    config = sub.add_parser("config", help="check a settings file, or show the effective settings")
    actions = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = actions.add_parser("check", help="validate a settings file (exit 2 naming the key and file if bad)")
    check.add_argument("file", nargs="?", metavar="FILE", help="the file (default: the one the daemon would use)")
    check.add_argument("--config", metavar="PATH", help=argparse.SUPPRESS)
    show = actions.add_parser("show", help="every effective setting and where it came from")
    show.add_argument("--port", type=int, help="as 'serve --port' would set it")
    show.add_argument("--json", action="store_true", help="as JSON: {key: {value, source}}")
    common(show)


def is_packaged(config: Config) -> bool:
    """The settings came from the default file shipped in the package (its values are the defaults)."""
    return config.source is not None and config.source.resolve() == PACKAGED_PATH.resolve()


def provenance(config: Config) -> dict[str, tuple[Any, str]]:
    """``{"section.key": (value, source)}``; source is "default", "file PATH" or "command line".

    A secret that is set (the bearer token) is given as ``"***"``.
    """
    in_file: dict[str, object] = {}  # "section.key" -> the value as the file writes it
    if config.source is not None and not is_packaged(config):
        raw = tomllib.loads(config.source.read_text(encoding="utf-8"))
        for top, table in raw.items():
            tables = table.items() if top == "extractors" else [(None, table)]
            for name, keys in tables:
                section = f"extractors.{name}" if name else top
                in_file.update((f"{section}.{key}", value) for key, value in keys.items())
    found: dict[str, tuple[Any, str]] = {}
    for dotted, value in config.items():
        section, _, key = dotted.rpartition(".")
        if dotted in config.overrides:
            source, written = "command line", config.overrides[dotted]
        elif dotted in in_file:
            source, written = f"file {config.source}", in_file[dotted]
        else:
            source, written = "default", SCHEMA[section][key].default
        found[dotted] = (HIDDEN if dotted in SECRETS and value else _as_written(value, written), source)
    return found


def _as_written(value: object, written: object) -> object:
    """A float setting as it was written: ``32`` in the file (or as the default) shows as 32, not
    32.0 (the section holds 32.0; both read back the same)."""
    return written if isinstance(value, float) and type(written) is int and written == value else value


def cmd_config(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    """Run ``config check`` or ``config show``; the config is loaded here, not by ``main``."""
    explicit = getattr(args, "file", None) or args.config
    try:
        config = load_config(explicit, overrides if args.config_command == "show" else None)
    except ConfigError as exc:
        print(f"imgsearchd: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    where = str(config.source) if config.source is not None else "built-in defaults (no file found)"
    if is_packaged(config):
        where += " (the packaged default)"
    if args.config_command == "check":
        print(f"{where}: ok")
        return EXIT_OK
    found = provenance(config)
    if args.json:
        print(json.dumps({"file": where, "settings": {k: {"value": v, "source": s} for k, (v, s) in found.items()}}))
        return EXIT_OK
    print(f"# file: {where}")
    width = min(60, max(len(f"{k} = {json.dumps(v)}") for k, (v, _) in found.items()))  # long lists run over
    for key, (value, source) in found.items():
        print(f"{f'{key} = {json.dumps(value)}':<{width}}  # {source}")
    return EXIT_OK
