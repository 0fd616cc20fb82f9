"""Load and validate the TOML settings.

Every setting has a type, a default and a check; an unknown key or a bad value is a
``ConfigError`` that names the key and the file. Where the file is found:
``--config``, else ``$IMGSEARCHD_CONFIG``, else the user's ``$XDG_CONFIG_HOME/imgsearchd/imgsearchd.toml``
(``~/.config``: the user service's), else ``/etc/imgsearchd/imgsearchd.toml``,
else ``config/imgsearchd.toml`` in the current folder, else the default file shipped inside
the package (``PACKAGED_PATH``; in a checkout a link to ``config/imgsearchd.toml``).
Relative paths in the file are taken relative to the current working folder.
"""

from __future__ import annotations

import copy
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

ENV_VAR = "IMGSEARCHD_CONFIG"
SYSTEM_PATH = Path("/etc/imgsearchd/imgsearchd.toml")
# The commented default settings, package data (pyproject.toml); all keys equal SCHEMA's defaults.
PACKAGED_PATH = Path(__file__).resolve().parent / "imgsearchd.toml"
KNOWN_EXTRACTORS = ("clip", "resnet", "efficientnet")
# The file names watched folders and folder adds index (the formats ``images`` reads).
# HEIC/HEIF need pillow-heif and RAW needs rawpy; without them such files fail with a clear reason.
DEFAULT_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")
HEIF_EXTENSIONS = (".heic", ".heif")
AVIF_EXTENSIONS = (".avif",)
RAW_EXTENSIONS = (".dng", ".cr2", ".cr3", ".nef", ".arw", ".pef", ".raf", ".orf", ".rw2")  # camera RAW
DEFAULT_EXTENSIONS += HEIF_EXTENSIONS + AVIF_EXTENSIONS + RAW_EXTENSIONS
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "int8", "fp16")  # extractors/precision.py says what each does
# The cosine above which /duplicates calls two pictures near-duplicates, per model.
# efficientnet: measured with bench/bench_duplicates.py (real weights, BENCHMARKS.md "Duplicates").
# clip and resnet cannot be measured without their weights here (see BENCHMARKS.md).
DUPLICATE_THRESHOLDS = {"clip": 0.95, "resnet": 0.9, "efficientnet": 0.84}
PREPROCESS = ("auto", "letterbox", "squash", "crop")  # extractors/framing.py says what each does


class ConfigError(Exception):
    """A settings file that cannot be used; the message names the key and the file."""


Check = Callable[[Any], str | None]  # returns a complaint, or None when the value is fine


@dataclass(frozen=True)
class Setting:
    kind: type | tuple[type, ...]
    default: Any
    check: Check | None = None
    item_kind: type | None = None  # for lists


def _positive(v: Any) -> str | None:
    return None if v > 0 else "must be greater than 0"


def _non_negative(v: Any) -> str | None:
    return None if v >= 0 else "must be 0 or more"


def _port(v: Any) -> str | None:
    return None if 1 <= v <= 65535 else "must be a port number from 1 to 65535"


def _device(v: Any) -> str | None:
    if v in DEVICES or v.startswith("cuda:"):
        return None
    return f"must be one of {', '.join(DEVICES)} or cuda:N"


def _precision(v: Any) -> str | None:
    return None if v in PRECISIONS else f"must be one of {', '.join(PRECISIONS)}"


def _cosine(v: Any) -> str | None:
    return None if 0 < v <= 1 else "must be a cosine similarity above 0 and at most 1"


def _preprocess(v: Any) -> str | None:
    return None if v in PREPROCESS else f"must be one of {', '.join(PREPROCESS)}"


def _auto_or_positive(v: Any) -> str | None:
    if isinstance(v, str):
        return None if v == "auto" else 'must be greater than 0 or "auto"'
    return None if v > 0 else 'must be greater than 0 or "auto"'


def _search_k(v: Any) -> str | None:
    if isinstance(v, str):
        return None if v == "auto" else 'must be -1 (Annoy\'s default), greater than 0 or "auto"'
    return None if v == -1 or v > 0 else 'must be -1 (Annoy\'s default), greater than 0 or "auto"'


def _extractor_list(v: Any) -> str | None:
    if not v:
        return "must name at least one extractor"
    unknown = [x for x in v if x not in KNOWN_EXTRACTORS]
    if unknown:
        return f"unknown extractor {unknown[0]!r}; known: {', '.join(KNOWN_EXTRACTORS)}"
    if len(set(v)) != len(v):
        return "names an extractor twice"
    return None


def _fallback(v: Any) -> str | None:
    if v == "" or v in KNOWN_EXTRACTORS:
        return None
    return f'must be "" or one of {", ".join(KNOWN_EXTRACTORS)}'


def _extensions(v: Any) -> str | None:
    bad = [x for x in v if not x.startswith(".") or len(x) < 2]
    return f'{bad[0]!r} is not an extension like ".jpg"' if bad else None


_HOST = re.compile(r"(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+)(:[0-9]{1,5})?")


def _hosts(v: Any) -> str | None:
    bad = [x for x in v if x != "*" and not _HOST.fullmatch(x)]
    if bad:
        return f'holds {bad[0]!r}, not a host name like "photos.example" or "photos.example:8443" (no scheme or path)'
    return None


SCHEMA: dict[str, dict[str, Setting]] = {
    "server": {
        "host": Setting(str, "127.0.0.1"),
        "port": Setting(int, 8080, _port),
        "allowed_roots": Setting(list, [], item_kind=str),
        "allowed_hosts": Setting(list, [], _hosts, item_kind=str),
        "max_upload_mb": Setting((int, float), 32, _positive),
        "token": Setting(str, ""),
        "wrong_tokens_per_minute": Setting(int, 10, _positive),
    },
    "index": {
        "data_dir": Setting(str, "data"),
        "extractors": Setting(list, ["clip"], _extractor_list, item_kind=str),
        "fallback_extractor": Setting(str, "efficientnet", _fallback),
        "rebuild_after_changes": Setting(int, 1000, _positive),
        "rebuild_after_seconds": Setting((int, float), 60, _positive),
        "kind": Setting(str, "hnsw", lambda v: None if v in ("hnsw", "annoy") else 'must be "hnsw" or "annoy"'),
        "ef": Setting((int, str), "auto", _auto_or_positive),
        "trees": Setting((int, str), "auto", _auto_or_positive),
        "search_k": Setting((int, str), "auto", _search_k),
        "target_recall": Setting((int, float), 0.95, lambda v: None if 0 < v <= 1 else "must be in (0, 1]"),
        "search_budget_ms": Setting((int, float), 10, _positive),
        "loader_threads": Setting(int, 0, _non_negative),
    },
    "images": {
        "max_file_mb": Setting((int, float), 100, _positive),
        "max_megapixels": Setting((int, float), 178, _positive),
        "decode_budget_megapixels": Setting((int, float), 256, _positive),
    },
    "thumbnails": {
        "size": Setting(int, 256, lambda v: None if 16 <= v <= 1024 else "must be from 16 to 1024 (pixels)"),
        "max_mb": Setting((int, float), 2048, _positive),
        "format": Setting(str, "jpeg", lambda v: None if v in ("webp", "jpeg") else 'must be "webp" or "jpeg"'),
    },
    "watch": {
        "directories": Setting(list, [], item_kind=str),
        "recursive": Setting(bool, True),
        "rescan_seconds": Setting((int, float), 3600, _non_negative),
        "settle_seconds": Setting((int, float), 2.0, _positive),
        "poll_seconds": Setting((int, float), 5.0, _positive),
        "force_polling": Setting(bool, False),
        "extensions": Setting(list, list(DEFAULT_EXTENSIONS), _extensions, item_kind=str),
    },
    "log": {
        "level": Setting(
            str,
            "info",
            lambda v: (
                None if v.lower() in ("debug", "info", "warning", "error") else "must be debug, info, warning or error"
            ),
        ),
        "format": Setting(str, "text", lambda v: None if v in ("text", "json") else 'must be "text" or "json"'),
    },
    "extractors.clip": {
        "model": Setting(str, "ViT-B-32"),
        "pretrained": Setting(str, "laion2b_s34b_b79k"),
        "device": Setting(str, "auto", _device),
        "batch_size": Setting(int, 32, _positive),
        "precision": Setting(str, "auto", _precision),
        "duplicate_threshold": Setting((int, float), DUPLICATE_THRESHOLDS["clip"], _cosine),
        "preprocess": Setting(str, "auto", _preprocess),
    },
    "extractors.resnet": {
        "weights": Setting(str, ""),
        "device": Setting(str, "auto", _device),
        "batch_size": Setting(int, 32, _positive),
        "precision": Setting(str, "auto", _precision),
        "duplicate_threshold": Setting((int, float), DUPLICATE_THRESHOLDS["resnet"], _cosine),
        "preprocess": Setting(str, "auto", _preprocess),
    },
    "extractors.efficientnet": {
        "weights": Setting(str, ""),
        "device": Setting(str, "auto", _device),
        "batch_size": Setting(int, 32, _positive),
        "precision": Setting(str, "auto", _precision),
        "duplicate_threshold": Setting((int, float), DUPLICATE_THRESHOLDS["efficientnet"], _cosine),
        "preprocess": Setting(str, "auto", _preprocess),
    },
}


@dataclass
class Config:
    """Validated settings: ``section(name)`` gives a section's values as a dict."""

    values: dict[str, dict[str, Any]]
    source: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    extra_watch: list[str] = field(default_factory=list)  # `--watch DIR`, kept across reloads
    # Each root's real path, resolved the first time it is asked for once the root exists (at
    # start, or when a folder is added or appears) and kept: a watched folder later replaced by
    # a link to /etc must not take the allowed area with it. A reload (SIGHUP) resolves again.
    _resolved: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def section(self, name: str) -> dict[str, Any]:
        return self.values[name]

    @property
    def server(self) -> dict[str, Any]:
        return self.values["server"]

    @property
    def index(self) -> dict[str, Any]:
        return self.values["index"]

    @property
    def watch(self) -> dict[str, Any]:
        return self.values["watch"]

    @property
    def images(self) -> dict[str, Any]:
        return self.values["images"]

    def extractor(self, name: str) -> dict[str, Any]:
        return self.values[f"extractors.{name}"]

    @property
    def data_dir(self) -> Path:
        return Path(self.index["data_dir"]).expanduser().absolute()

    @property
    def catalog_path(self) -> Path:
        return self.data_dir / "catalog.sqlite3"

    @property
    def watch_dirs(self) -> list[Path]:
        """The watched folders: the file's, then any given with ``--watch``, each once."""
        folders: list[Path] = []
        for d in [*self.watch["directories"], *self.extra_watch]:
            path = Path(d).expanduser().absolute()
            if path not in folders:
                folders.append(path)
        return folders

    @property
    def allowed_roots(self) -> list[str]:
        """Real paths (links resolved, once: see ``_resolved``) of the watched folders and
        ``server.allowed_roots``: where requests and indexed files may be. Empty: anywhere."""
        return [real for _, real in self.root_pairs()]

    def resolve_roots(self) -> None:
        """Resolve the roots now (at start, or a reload): not at first use, which may come after
        a watched folder was swapped for a link (the lazy first use let one in: issue 26, O5)."""
        self.root_pairs()

    def root_pairs(self) -> list[tuple[str, str]]:
        """(each root as configured, its real path)."""
        roots = [str(p) for p in self.watch_dirs]
        roots += [str(Path(r).expanduser().absolute()) for r in self.server["allowed_roots"]]
        return [(r, self._resolve(r)) for r in roots]

    def _resolve(self, root: str) -> str:
        """A root's real path, kept once the root exists (``_resolved``); one that does not exist
        yet (a disk not mounted, a folder made later, maybe as a link) is resolved again."""
        real = self._resolved.get(root)
        if real is None:
            real = os.path.realpath(root)
            if os.path.exists(root):
                # The first one kept wins: a thread that resolved just after a swap must not
                # replace what another kept just before it (seen under load in CI).
                real = self._resolved.setdefault(root, real)
        return real

    def reload(self) -> Config:
        """Read the same file again with the same command-line settings (for SIGHUP)."""
        fresh = load_config(self.source, self.overrides)
        fresh.extra_watch = list(self.extra_watch)
        return fresh


def user_config_path() -> Path:
    """The desktop user's settings (``imgsearchd.user.service``): ``$XDG_CONFIG_HOME`` or ``~/.config``."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "imgsearchd" / "imgsearchd.toml"


def find_config_file(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The settings file to use, by the documented order; None when there is none."""
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        return path
    env = os.environ.get(ENV_VAR)
    if env:
        path = Path(env)
        if not path.is_file():
            raise ConfigError(f"${ENV_VAR} names {path}, which does not exist")
        return path
    for candidate in (user_config_path(), SYSTEM_PATH, Path("config/imgsearchd.toml"), PACKAGED_PATH):
        if candidate.is_file():
            return candidate
    return None


def load_config(
    explicit: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Config:
    """Find, parse and validate the settings, then apply command-line overrides.

    ``overrides`` maps "section.key" to a value, e.g. {"server.port": 9000}.
    """
    path = find_config_file(explicit)
    raw: dict[str, Any] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
        except OSError as exc:
            raise ConfigError(f"{path}: cannot be read: {exc.strerror}") from exc
    values = validate(raw, str(path) if path else "<defaults>")
    overrides = dict(overrides or {})
    for dotted, value in overrides.items():
        section, _, key = dotted.rpartition(".")
        setting = SCHEMA[section][key]
        values[section][key] = _check_value(f"{section}.{key}", value, setting, "command line")
    return Config(values=values, source=path, overrides=overrides)


def validate(raw: Mapping[str, Any], where: str) -> dict[str, dict[str, Any]]:
    """Check a parsed TOML document against the schema and fill in defaults."""
    values = {name: {k: copy.deepcopy(s.default) for k, s in keys.items()} for name, keys in SCHEMA.items()}
    for top, content in raw.items():
        if top == "extractors":
            if not isinstance(content, dict):
                raise ConfigError(f"{where}: [extractors] must be a table")
            for name, table in content.items():
                _apply_section(values, f"extractors.{name}", table, where)
        else:
            _apply_section(values, top, content, where)
    return values


def _apply_section(values: dict[str, dict[str, Any]], section: str, table: Any, where: str) -> None:
    if section not in SCHEMA:
        known = ", ".join(f"[{s}]" for s in SCHEMA)
        raise ConfigError(f"{where}: unknown section [{section}]; known sections: {known}")
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: [{section}] must be a table")
    for key, value in table.items():
        if key not in SCHEMA[section]:
            known = ", ".join(SCHEMA[section])
            raise ConfigError(f"{where}: unknown key {section}.{key}; known keys in [{section}]: {known}")
        values[section][key] = _check_value(f"{section}.{key}", value, SCHEMA[section][key], where)


def _check_value(name: str, value: Any, setting: Setting, where: str) -> Any:
    kinds = setting.kind if isinstance(setting.kind, tuple) else (setting.kind,)
    # TOML booleans are ints in Python; never accept one for the other.
    if isinstance(value, bool) != (bool in kinds) or not isinstance(value, kinds):
        expected = " or ".join(k.__name__ for k in kinds)
        raise ConfigError(f"{where}: {name} must be {expected}, not {type(value).__name__} {value!r}")
    if setting.item_kind is not None:
        for item in cast(list[Any], value):  # item_kind is only set on list settings
            if not isinstance(item, setting.item_kind):
                raise ConfigError(f"{where}: {name} must be a list of {setting.item_kind.__name__}, but holds {item!r}")
    if setting.check is not None:
        complaint = setting.check(value)
        if complaint:
            raise ConfigError(f"{where}: {name} {complaint} (got {value!r})")
    return value
