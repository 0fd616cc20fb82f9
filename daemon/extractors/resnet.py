"""ResNet-50 with torchvision's ImageNet weights: 2048-d globally pooled features."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image
from torchvision import models

from .base import (
    RANDOM_WEIGHTS,
    RANDOM_WEIGHTS_SEED,
    Extractor,
    ModelUnavailableError,
    file_fingerprint,
    host_reachable,
    log,
    read_state_dict,
)
from .framing import decode_side as framed_decode_side
from .framing import framed_id, mode_from
from .framing import transform as framed_transform
from .layout import for_inference

if TYPE_CHECKING:
    from ..config import ResNetSettings

WEIGHTS = models.ResNet50_Weights.IMAGENET1K_V2
DOWNLOAD_HOST = "download.pytorch.org"


def cached_weights_path() -> str:
    """Where torchvision keeps the downloaded weights."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(WEIGHTS.url))


class ResNetExtractor(Extractor):
    """torchvision ResNet-50, classifier removed."""

    name = "resnet"
    channels_last = True  # convolutional: channels-last and batch norms folded (layout.py)
    dim = 2048
    side = 224
    crop_resize = 232  # the crop mode's Resize(232, bilinear) before CenterCrop(224)

    def __init__(self, settings: ResNetSettings) -> None:
        super().__init__(settings)
        weights = settings.weights
        self.preprocess_mode = mode = mode_from(settings.preprocess, self.name)
        if weights in RANDOM_WEIGHTS:
            torch.manual_seed(RANDOM_WEIGHTS_SEED)
        model = models.resnet50(weights=None)
        if weights in RANDOM_WEIGHTS:
            log.warning("resnet: weights = %r: RANDOM weights, for tests and benchmarks only", weights)
            self.model_id = f"resnet50:random-seed{RANDOM_WEIGHTS_SEED}"
        elif weights:
            model.load_state_dict(self._load_file(weights))
            self.model_id = f"resnet50:{file_fingerprint(weights)}"
        else:
            model.load_state_dict(self._load_torchvision())
            self.model_id = "resnet50:IMAGENET1K_V2"
        self.model_id = framed_id(self.model_id, mode)
        model.fc = torch.nn.Identity()
        self.model = for_inference(model.to(self.device))
        # crop: torchvision's IMAGENET1K_V2 eval transform (Resize(232, bilinear) + CenterCrop(224)),
        # over the kept box only (crop.py): cosine to the old vectors >= 0.9999997.
        self._transform = framed_transform(
            mode, self.side, self.crop_resize, Image.Resampling.BILINEAR, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
        )
        self.decode_side = framed_decode_side(mode, self.side, self.crop_resize)

    @staticmethod
    def _load_file(path: str) -> dict[str, torch.Tensor]:
        if not os.path.isfile(path):
            raise ModelUnavailableError("resnet", f"weights file {path} (extractors.resnet.weights) does not exist")
        return read_state_dict("resnet", path)

    @staticmethod
    def _load_torchvision() -> dict[str, torch.Tensor]:
        cached = cached_weights_path()
        hint = (
            f"download {WEIGHTS.url} on a machine with internet and put it at {cached}, "
            'or set extractors.resnet.weights = "/path/to/resnet50.pth"'
        )
        if not os.path.isfile(cached) and not host_reachable(DOWNLOAD_HOST):
            why = f"ResNet-50 ImageNet weights are not cached and {DOWNLOAD_HOST} cannot be reached (offline?)"
            raise ModelUnavailableError("resnet", f"{why}; {hint}", why=why)
        try:
            return WEIGHTS.get_state_dict(progress=True)
        except Exception as exc:  # network, disk or a corrupt download
            why = f"cannot load ResNet-50 ImageNet weights: {exc}"
            raise ModelUnavailableError("resnet", f"{why}; {hint}", why=why) from exc

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self._transform(image)

    def _image_features(self, model: Any, batch: torch.Tensor) -> torch.Tensor:
        return model(batch)
