"""open_clip's table of pretrained weights, read without importing open_clip.

``import open_clip`` stays in the process for its life: 31 MiB more resident memory on top of
torch and timm (705 -> 736 MiB, measured on a 2-core EPYC), and in an idle daemon whose CLIP
could not load 529 MiB of anonymous memory against 499 with EfficientNet alone (506 without
the import; peak 882 -> 858 MiB). Deciding that CLIP cannot load (not cached, no network)
and saying what to fetch needs only the table (``open_clip/pretrained.py``, which imports
nothing of open_clip's but its constants): it is loaded here as a private package of those
three files, so ``open_clip/__init__`` (its models, tokenizers and transforms) is imported only
by a CLIP that loads. When the table cannot be read so (another open_clip layout), open_clip
is imported as before.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import logging
import os
import sys
import types
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("imgsearchd.extractors")

_PACKAGE = "_imgsearchd_open_clip_table"  # the private package the table is loaded under
HF_HOST = "huggingface.co"
HF_WEIGHTS_NAME = "open_clip_pytorch_model.bin"  # open_clip's constants: a repo's default file...
HF_SAFE_WEIGHTS_NAME = "open_clip_model.safetensors"  # ...and the one it tries first
# What installs a Hugging Face text tower's library, transformers (pyproject's optional dependencies).
MULTILINGUAL_INSTALL = "pip install 'imgsearchd[multilingual]'"
# Tokenizer repositories whose tokenizer_config.json names the tokenizer's class, which transformers
# needs: NLLB's config.json says m2m_100, and without that file AutoTokenizer refuses it (tried with
# transformers 5.25: M2M100's own tokenizer needs sentencepiece). XLM-R's class follows from its config.
CLASS_NAMED_TOKENIZERS = frozenset({"facebook/nllb-200-distilled-600M", "facebook/nllb-200-distilled-1.3B"})


@dataclass(frozen=True)
class Source:
    """Where open_clip downloads a tag's weights from: a Hugging Face repo, or a plain URL."""

    repo: str  # "" for a plain URL
    files: tuple[str, ...]  # the names open_clip tries, in order (safetensors first)
    url: str  # the first file's download address

    @property
    def host(self) -> str:
        from urllib.parse import urlparse

        return urlparse(self.url).hostname or HF_HOST


def _folder() -> str | None:
    spec = importlib.util.find_spec("open_clip")  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        return None
    return next(iter(spec.submodule_search_locations))


@functools.cache
def _table() -> Any:
    """open_clip's ``pretrained`` module: the real one once open_clip is imported, else a private copy."""
    folder = _folder()
    if "open_clip" not in sys.modules and folder is not None:
        package = types.ModuleType(_PACKAGE)
        package.__path__ = [folder]
        sys.modules[_PACKAGE] = package  # for pretrained.py's ``from .constants import ...``
        try:
            return importlib.import_module("_imgsearchd_open_clip_table.pretrained")  # _PACKAGE's
        except Exception as exc:  # another layout: open_clip itself, as before
            log.debug("open_clip's pretrained table cannot be read alone (%s); importing open_clip", exc)
    return importlib.import_module("open_clip.pretrained")


def model_known(model: str) -> bool | None:
    """Whether open_clip has an architecture ``model`` (a config file of that name); None: cannot tell."""
    folder = _folder()
    if folder is None or not os.path.isdir(os.path.join(folder, "model_configs")):
        return None
    return os.path.isfile(os.path.join(folder, "model_configs", f"{model}.json"))


@dataclass(frozen=True)
class TextTower:
    """A Hugging Face text tower (open_clip's ``HFTextEncoder``: the multilingual models): the
    repositories (or local folders) its config and its tokenizer come from, through ``transformers``.

    open_clip builds the tower from the config alone and loads its weights with the CLIP
    checkpoint (clip.py asks for no other), so only ``needed`` files are fetched: ``config.json``
    says the tower's kind and size, and transformers 5 builds the tokenizer from ``tokenizer.json``
    (with ``tokenizer_config.json`` where that names its class): caches holding only these load
    (tests/extractors/test_multilingual.py).
    """

    config: str  # hf_model_name: a repository id or a local folder
    tokenizer: str  # hf_tokenizer_name

    def needed(self) -> list[tuple[str, str]]:
        """(repository, file) pairs to fetch; a local folder is not fetched."""
        pairs = [(self.config, "config.json"), (self.tokenizer, "tokenizer.json")]
        if self.tokenizer in CLASS_NAMED_TOKENIZERS:
            pairs.append((self.tokenizer, "tokenizer_config.json"))
        return [(repo, file) for repo, file in pairs if not os.path.isdir(repo)]

    def fetch_command(self) -> str:
        """The command that puts ``needed`` in the Hugging Face cache (``hf``: huggingface_hub's CLI)."""
        files: dict[str, list[str]] = {}
        for repo, file in self.needed():
            files.setdefault(repo, []).append(file)
        return "; ".join(f"hf download {repo} {' '.join(names)}" for repo, names in files.items())


def text_tower(model: str) -> TextTower | None:
    """The Hugging Face text tower of open_clip model ``model`` (a built-in name, or
    ``local-dir:/path`` with its ``open_clip_config.json``), read without importing open_clip;
    None for open_clip's own text transformer, or when the config cannot be read."""
    if model.startswith("local-dir:"):
        path = os.path.join(model[len("local-dir:") :], "open_clip_config.json")
    else:
        folder = _folder()
        path = os.path.join(folder, "model_configs", f"{model}.json") if folder else ""
    try:
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
    except (OSError, ValueError):
        return None
    model_cfg = config.get("model_cfg", config) if isinstance(config, dict) else None
    text = model_cfg.get("text_cfg") if isinstance(model_cfg, dict) else None
    if not isinstance(text, dict) or not text.get("hf_model_name"):
        return None
    return TextTower(str(text["hf_model_name"]), str(text.get("hf_tokenizer_name") or text["hf_model_name"]))


def known_tags(model: str) -> list[str]:
    """The pretrained tags open_clip knows for ``model``."""
    return list(_table().list_pretrained_tags_by_model(model))


def weights_source(model: str, tag: str) -> Source | None:
    """Where the weights of ``model``/``tag`` come from; None: open_clip has no such tag."""
    cfg = _table().get_pretrained_cfg(model, tag)
    if not cfg:
        return None
    hub = str(cfg.get("hf_hub") or "")
    if hub:
        repo, filename = os.path.split(hub.rstrip("/")) if not hub.endswith("/") else (hub.rstrip("/"), "")
        files = _safe_first(filename or HF_WEIGHTS_NAME)
        return Source(repo, files, f"https://{HF_HOST}/{repo}/resolve/main/{files[0]}")
    url = str(cfg.get("url") or "")
    return Source("", (os.path.basename(url),), url) if url else None


def _safe_first(filename: str) -> tuple[str, ...]:
    """The names open_clip tries for ``filename`` with safetensors installed: the .safetensors one first."""
    if filename == HF_WEIGHTS_NAME:
        return (HF_SAFE_WEIGHTS_NAME, filename)
    if filename.endswith((".bin", ".pth")):
        return (filename[:-4] + ".safetensors", filename)
    return (filename,)
