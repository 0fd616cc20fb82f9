"""CLIP through open_clip: image and text vectors in one space.

``pretrained`` is an open_clip tag (downloaded once from Hugging Face and cached),
a checkpoint file, or ``local-dir:/path`` (open_clip's own folder format, which
also names the model). ``none`` gives seeded random weights, for tests and benchmarks.

The multilingual models (``xlm-roberta-base-ViT-B-32``, ``nllb-clip-base`` ...) have a Hugging
Face text tower: it needs ``transformers`` (the ``multilingual`` extra) and its config and
tokenizer from their own repository (openclip_table.TextTower), fetched once like the weights.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import torch
from PIL import Image

from .base import (
    RANDOM_WEIGHTS,
    RANDOM_WEIGHTS_SEED,
    Extractor,
    ModelUnavailableError,
    file_fingerprint,
    host_reachable,
    log,
)
from .framing import Transform, framed_id, mode_from
from .framing import transform as framed_transform
from .openclip_table import HF_HOST, MULTILINGUAL_INSTALL, Source, known_tags, model_known, text_tower, weights_source

if TYPE_CHECKING:
    from ..config import ClipSettings


def _cached(repo: str, file: str) -> bool:
    """True when ``file`` of Hugging Face repository ``repo`` is already in the cache."""
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo, file), str)


def _tag_is_cached(found: Source) -> bool:
    """True when the weights for an open_clip tag are already in the Hugging Face cache."""
    return bool(found.repo) and any(_cached(found.repo, name) for name in found.files)


# open_clip's ``resize_mode`` for each framing (framing.py), and back.
OPEN_CLIP_MODES = {"crop": "shortest", "squash": "squash", "letterbox": "longest"}
FRAMINGS = {v: k for k, v in OPEN_CLIP_MODES.items()}


def own_mode(model: Any) -> str:
    """The framing of the model's own open_clip preprocess config (what its ids meant before)."""
    cfg = getattr(model.visual, "preprocess_cfg", None) or {}
    return FRAMINGS.get(cfg.get("resize_mode", "shortest"), "crop")


def clip_transform(model: Any, preprocess: Any, mode: str) -> Transform:
    """The eval transform for framing ``mode``, from the model's open_clip preprocess config.

    Its own mode is open_clip's own transform, as it was: "shortest" (every stock model) and
    "squash" rebuilt on ``ResizeCrop`` over only the kept box (cosine to open_clip's own
    >= 0.9999998 on the scikit-image photos and their 3:1 and 1:4 crops, ViT-B-32), "longest"
    kept as open_clip has it (bounded already). Another mode on a square input is framing.py's
    with the config's size, interpolation, mean and std (letterbox: open_clip's "longest" with
    the padding at the mean colour, see framing.py); a non-square input takes open_clip's
    ``image_transform`` with that ``resize_mode``.
    """
    cfg = getattr(model.visual, "preprocess_cfg", None) or {}
    size = cfg.get("size", getattr(model.visual, "image_size", 224))
    side = size if isinstance(size, int) else size[0]
    own = own_mode(model)
    if (not isinstance(size, int) and size[0] != size[1]) or "mean" not in cfg:
        if mode == own:
            return cast(Transform, preprocess)
        from open_clip import image_transform

        return cast(
            Transform,
            image_transform(
                size,
                is_train=False,
                mean=cfg.get("mean"),
                std=cfg.get("std"),
                resize_mode=OPEN_CLIP_MODES[mode],
                interpolation=cfg.get("interpolation"),
                fill_color=cfg.get("fill_color", 0),
            ),
        )
    if mode == own == "letterbox":
        return cast(Transform, preprocess)  # with the model's own fill colour
    resample = Image.Resampling.BILINEAR if cfg.get("interpolation") == "bilinear" else Image.Resampling.BICUBIC
    return framed_transform(mode, side, side, resample, cfg["mean"], cfg["std"])


class ClipExtractor(Extractor):
    """open_clip image and text towers; the framing set by ``preprocess`` (clip_transform)."""

    name = "clip"
    supports_text = True
    quantisable = True  # a transformer: most of its work is in Linear layers

    def __init__(self, settings: ClipSettings) -> None:
        super().__init__(settings)
        self._reachable: dict[str, bool] = {}
        local = settings.pretrained.startswith("local-dir:")
        self._text_library(settings.pretrained if local else settings.model)  # first: nothing works without it
        model_name, weights, model_id = self._weights(settings.model, settings.pretrained)
        self._text_files(model_name)
        import open_clip  # only now: a CLIP that cannot load never imports it (openclip_table.py)

        if settings.pretrained in RANDOM_WEIGHTS:
            log.warning("clip: pretrained = %r: RANDOM weights, for tests and benchmarks only", settings.pretrained)
            torch.manual_seed(RANDOM_WEIGHTS_SEED)
        try:
            # pretrained_text=False: a Hugging Face text tower's own weights (xlm-roberta-base: 1.1 GB)
            # are never fetched: the CLIP checkpoint holds the tower as trained with the pictures.
            model, _, preprocess = open_clip.create_model_and_transforms(
                model_name, pretrained=weights, device=self.device, pretrained_text=False
            )
            self._tokenizer = open_clip.get_tokenizer(model_name)
        except Exception as exc:
            raise ModelUnavailableError(
                "clip",
                f"cannot load CLIP {model_name} with weights {settings.pretrained!r}: {exc}. {self._hint(model_name)}",
                why=f"cannot load CLIP {model_name} with weights {settings.pretrained!r}: {exc}",
            ) from exc
        self.model = model.eval()
        self.preprocess_mode = mode = mode_from(settings.preprocess, self.name)
        self.model_id = framed_id(model_id, mode, legacy=own_mode(model))
        self._transform = clip_transform(model, preprocess, mode)
        size = getattr(model.visual, "image_size", 224)
        self.decode_side = int(size[0] if isinstance(size, (tuple, list)) else size)
        with torch.inference_mode():
            probe = torch.zeros(1, 3, self.decode_side, self.decode_side, device=self.device)
            self.dim = int(self.model.encode_image(probe).shape[-1])

    def _weights(self, model_name: str, pretrained: str) -> tuple[str, str | None, str]:
        """(the model name open_clip takes, the weights it loads, the model id) for the settings;
        ModelUnavailableError, before open_clip is imported, when they cannot load."""
        if pretrained.startswith("local-dir:"):
            folder = pretrained[len("local-dir:") :]
            if not os.path.isdir(folder):
                raise ModelUnavailableError("clip", f"local-dir {folder} (extractors.clip.pretrained) does not exist")
            return pretrained, None, f"clip:local-dir:{os.path.abspath(folder)}"
        if pretrained == "":
            raise ModelUnavailableError(
                "clip", "extractors.clip.pretrained is empty; name an open_clip tag, a file or local-dir:"
            )
        if pretrained in RANDOM_WEIGHTS:
            return model_name, None, f"clip:{model_name}:random-seed{RANDOM_WEIGHTS_SEED}"
        if os.path.sep in pretrained or os.path.isfile(pretrained):
            if not os.path.isfile(pretrained):
                raise ModelUnavailableError(
                    "clip", f"checkpoint file {pretrained} (extractors.clip.pretrained) does not exist"
                )
            return model_name, pretrained, f"clip:{model_name}:{file_fingerprint(pretrained)}"
        self._check_tag(model_name, pretrained)
        return model_name, pretrained, f"clip:{model_name}:{pretrained}"

    @staticmethod
    def _hint(model_name: str) -> str:
        tower = text_tower(model_name)
        text = f"; its text tower's config and tokenizer too (`{tower.fetch_command()}`)" if tower else ""
        return (
            "To run offline, download the checkpoint (open_clip_model.safetensors) on a machine "
            'with internet and set extractors.clip.pretrained = "/path/to/open_clip_model.safetensors"'
            f"{text}, or copy the Hugging Face cache (~/.cache/huggingface/hub) here, or use local-dir:/path "
            f"(model {model_name}); GET /stats (fallback) names the file, its size and address."
        )

    def _reaches(self, host: str) -> bool:
        """``host_reachable``, asked once per host while this model loads (each try may take 3 s)."""
        if host not in self._reachable:
            self._reachable[host] = host_reachable(host)
        return self._reachable[host]

    @staticmethod
    def _text_library(model_name: str) -> None:
        """A Hugging Face text tower needs transformers: else ModelUnavailableError saying what to install."""
        tower = text_tower(model_name)
        if tower is not None and importlib.util.find_spec("transformers") is None:
            why = (
                f"CLIP {model_name} has a Hugging Face text tower ({tower.config}), which needs transformers: "
                f"{MULTILINGUAL_INSTALL} (into the daemon's environment)"
            )
            raise ModelUnavailableError("clip", why, why=why)

    def _text_files(self, model_name: str) -> None:
        """A Hugging Face text tower's config and tokenizer, cached or huggingface.co reachable: else
        ModelUnavailableError naming them, before open_clip is imported."""
        tower = text_tower(model_name)
        if tower is None:
            return
        missing = [f"{repo}/{file}" for repo, file in tower.needed() if not _cached(repo, file)]
        if missing and not self._reaches(HF_HOST):
            why = (
                f"the text tower of CLIP {model_name} needs {', '.join(missing)}: not in the Hugging Face "
                f"cache, and {HF_HOST} cannot be reached (offline?)"
            )
            raise ModelUnavailableError("clip", f"{why}. {self._hint(model_name)}", why=why)

    def _check_tag(self, model_name: str, tag: str) -> None:
        """An unknown model or tag, or weights neither cached nor downloadable: ModelUnavailableError."""
        known_model = model_known(model_name)
        if known_model is None:  # no config folder where expected: ask open_clip itself
            import open_clip

            known_model = model_name in open_clip.list_models()
        if not known_model:
            raise ModelUnavailableError("clip", f"unknown open_clip model {model_name!r} (extractors.clip.model)")
        found = weights_source(model_name, tag)
        if found is None:
            known = ", ".join(known_tags(model_name)) or "none"
            raise ModelUnavailableError(
                "clip", f"open_clip has no pretrained tag {tag!r} for {model_name}; known tags: {known}"
            )
        if not _tag_is_cached(found) and not self._reaches(found.host):
            why = (
                f"CLIP weights {model_name}/{tag} are not in the Hugging Face cache and {found.host} "
                "cannot be reached (offline?)"
            )
            raise ModelUnavailableError("clip", f"{why}. {self._hint(model_name)}", why=why)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self._transform(image)

    def _converted(self, model: Any, precision: str) -> Any:
        transformer = getattr(model, "transformer", None)
        if precision == "int8" and transformer is not None and hasattr(transformer, "get_cast_dtype"):
            # open_clip's encode_text reads its dtype off an MLP's ``weight``, which a
            # quantised Linear has as a method; the text tower's activations stay fp32.
            transformer.get_cast_dtype = lambda: torch.float32
        return model

    def _image_features(self, model: Any, batch: torch.Tensor) -> torch.Tensor:
        return model.encode_image(batch)

    def _text_features(self, model: Any, texts: Sequence[str]) -> torch.Tensor:
        return model.encode_text(self._tokens(texts).to(self.device))

    def _tokens(self, texts: Sequence[str]) -> torch.Tensor:
        return self._tokenizer(list(texts))

    def _text_module(self) -> torch.nn.Module:
        from .openvino_build import Features

        return Features(self.model, lambda model, tokens: model.encode_text(tokens))
