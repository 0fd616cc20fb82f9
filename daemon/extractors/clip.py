"""CLIP through open_clip: image and text vectors in one space.

``pretrained`` is an open_clip tag (downloaded once from Hugging Face and cached),
a checkpoint file, or ``local-dir:/path`` (open_clip's own folder format, which
also names the model). ``none`` gives seeded random weights, for tests and benchmarks.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypedDict, cast
from urllib.parse import urlparse

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

if TYPE_CHECKING:
    from ..config import ClipSettings

HF_HOST = "huggingface.co"
HF_WEIGHT_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")


class PretrainedCfg(TypedDict, total=False):
    """What is read of open_clip's ``get_pretrained_cfg``: where a tag's weights come from."""

    hf_hub: str  # "org/repo/" or "org/repo/file" on the Hugging Face hub
    url: str  # else a plain download


def _tag_is_cached(cfg: PretrainedCfg) -> bool:
    """True when the weights for an open_clip tag are already in the Hugging Face cache."""
    hub = cfg.get("hf_hub", "")
    if not hub:
        return False
    from huggingface_hub import try_to_load_from_cache

    repo_id, filename = os.path.split(hub.rstrip("/")) if not hub.endswith("/") else (hub.rstrip("/"), "")
    names = (filename,) if filename else HF_WEIGHT_FILES
    return any(isinstance(try_to_load_from_cache(repo_id, name), str) for name in names)


def _download_host(cfg: PretrainedCfg) -> str:
    if cfg.get("hf_hub"):
        return HF_HOST
    return urlparse(cfg.get("url", "")).hostname or HF_HOST


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
        import open_clip

        model_name = settings.model
        pretrained = settings.pretrained
        if pretrained.startswith("local-dir:"):
            folder = pretrained[len("local-dir:") :]
            if not os.path.isdir(folder):
                raise ModelUnavailableError("clip", f"local-dir {folder} ([extractors.clip] pretrained) does not exist")
            model_name, weights, model_id = pretrained, None, f"clip:local-dir:{os.path.abspath(folder)}"
        elif pretrained == "":
            raise ModelUnavailableError(
                "clip", "[extractors.clip] pretrained is empty; name an open_clip tag, a file or local-dir:"
            )
        elif pretrained in RANDOM_WEIGHTS:
            log.warning("clip: pretrained = %r: RANDOM weights, for tests and benchmarks only", pretrained)
            torch.manual_seed(RANDOM_WEIGHTS_SEED)
            weights, model_id = None, f"clip:{model_name}:random-seed{RANDOM_WEIGHTS_SEED}"
        elif os.path.sep in pretrained or os.path.isfile(pretrained):
            if not os.path.isfile(pretrained):
                raise ModelUnavailableError(
                    "clip", f"checkpoint file {pretrained} ([extractors.clip] pretrained) does not exist"
                )
            weights, model_id = pretrained, f"clip:{model_name}:{file_fingerprint(pretrained)}"
        else:
            self._check_tag(open_clip, model_name, pretrained)
            weights, model_id = pretrained, f"clip:{model_name}:{pretrained}"
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                model_name, pretrained=weights, device=self.device
            )
        except ModelUnavailableError:
            raise
        except Exception as exc:
            raise ModelUnavailableError(
                "clip", f"cannot load CLIP {model_name} with weights {pretrained!r}: {exc}. {self._hint(model_name)}"
            ) from exc
        self.model = model.eval()
        self.preprocess_mode = mode = mode_from(settings.preprocess, self.name)
        self.model_id = framed_id(model_id, mode, legacy=own_mode(model))
        self._transform = clip_transform(model, preprocess, mode)
        self._tokenizer = open_clip.get_tokenizer(model_name)
        size = getattr(model.visual, "image_size", 224)
        self.decode_side = int(size[0] if isinstance(size, (tuple, list)) else size)
        with torch.inference_mode():
            probe = torch.zeros(1, 3, self.decode_side, self.decode_side, device=self.device)
            self.dim = int(self.model.encode_image(probe).shape[-1])

    @staticmethod
    def _hint(model_name: str) -> str:
        return (
            "To run offline, download the checkpoint (open_clip_pytorch_model.bin) on a machine "
            'with internet and set [extractors.clip] pretrained = "/path/to/file.bin", or copy '
            f"the Hugging Face cache (~/.cache/huggingface/hub) here, or use local-dir:/path "
            f"(model {model_name})."
        )

    def _check_tag(self, open_clip: Any, model_name: str, tag: str) -> None:
        if model_name not in open_clip.list_models():
            raise ModelUnavailableError("clip", f"unknown open_clip model {model_name!r} ([extractors.clip] model)")
        cfg = open_clip.get_pretrained_cfg(model_name, tag)
        if not cfg:
            tags = ", ".join(open_clip.list_pretrained_tags_by_model(model_name)) or "none"
            raise ModelUnavailableError(
                "clip", f"open_clip has no pretrained tag {tag!r} for {model_name}; known tags: {tags}"
            )
        host = _download_host(cfg)
        if not _tag_is_cached(cfg) and not host_reachable(host):
            raise ModelUnavailableError(
                "clip",
                f"CLIP weights {model_name}/{tag} are not cached and {host} cannot be reached "
                f"(offline?). {self._hint(model_name)}",
            )

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
        return model.encode_text(self._tokenizer(list(texts)).to(self.device))
