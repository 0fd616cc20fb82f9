"""How a picture is framed into the model's square input: ``letterbox``, ``squash`` or ``crop``.

- ``crop``: the classification recipe (shorter side to S, the centre kept; crop.py). A square
  picture loses 23% of its area at S = 256, a 2:1 panorama more than half.
- ``squash``: the whole picture scaled to the square, its aspect ratio not kept.
- ``letterbox``: the whole picture scaled to fit inside the square, aspect ratio kept, the
  rest padded with the model's mean colour, so the padding is exactly 0 after normalisation
  (open_clip's ``resize_mode = "longest"``; it pads with ``fill_color``, 0 unless set).

``auto`` is ``DEFAULT_MODE``, chosen by bench/bench_retrieval.py (BENCHMARKS.md,
"Preprocessing (issue 12)"). The mode is part of the model id, so a change re-embeds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from PIL import Image

from .crop import NormalizedTensor, model_transform

MODES = ("letterbox", "squash", "crop")
# What every extractor framed pictures with before issue 12: a model id made then meant "crop".
LEGACY_MODE = "crop"
# Measured with EfficientNet-Lite0's real weights (bench_retrieval.py, three seeded sets of real
# photos, 2,360 copies; BENCHMARKS.md): copy recall@1 crop 70.5%, letterbox 80.6%, squash 81.2%.
# Squash won two sets of three and recall@5 and @10 pooled, by less than a point (within
# noise); it also gives every input pixel to the picture and a ViT no padding tokens.
# ResNet and CLIP have only random weights offline: they follow on that geometry argument.
DEFAULT_MODE = "squash"

Transform = Callable[[Image.Image], torch.Tensor]


def mode_from(mode: str, extractor: str) -> str:
    """The framing an extractor section's ``preprocess`` names, checked (config.py checks it first)."""
    if mode == "auto":
        return DEFAULT_MODE
    if mode not in MODES:
        raise ValueError(f"[extractors.{extractor}] preprocess must be auto or one of {', '.join(MODES)}, not {mode!r}")
    return str(mode)


def framed_id(model_id: str, mode: str, legacy: str = LEGACY_MODE) -> str:
    """The model id with the framing in it; the mode ids were made with before (``legacy``) keeps
    the old id, so a catalogue embedded then stays valid for it."""
    return model_id if mode == legacy else f"{model_id}:{mode}"


@dataclass(frozen=True)
class Letterbox:
    """The size a picture is scaled to so that it fits inside ``side`` x ``side``, and where it sits.

    The arithmetic of open_clip's ``ResizeKeepRatio(longest=1)`` + ``CenterCropOrPad``, with
    each side at least 1 pixel (a 100000x1 strip would otherwise round to 0 and fail).
    """

    side: int

    def size(self, width: int, height: int) -> tuple[int, int]:
        ratio = max(height / self.side, width / self.side)
        return max(1, round(width / ratio)), max(1, round(height / ratio))

    def offset(self, width: int, height: int) -> tuple[int, int]:
        """Left and top of a ``width`` x ``height`` picture centred in the square."""
        return (self.side - width) // 2, (self.side - height) // 2


class LetterboxTensor:
    """RGB picture to a normalised (3, side, side) tensor: scaled to fit, padded with ``fill``.

    ``fill`` is a pixel colour (0-255 per channel); None is the mean colour, i.e. exactly 0
    in the normalised tensor. The picture is normalised at its scaled size and written into
    the padded tensor, so no padded picture is ever made; work is bounded by the output.
    """

    def __init__(
        self,
        side: int,
        resample: Image.Resampling,
        mean: Sequence[float],
        std: Sequence[float],
        fill: Sequence[float] | None = None,
    ) -> None:
        self.box = Letterbox(side)
        self.resample = resample
        self.normalized = NormalizedTensor(mean, std)
        self.pad = torch.zeros(3, 1, 1)
        if fill is not None:
            self.pad = (torch.tensor([float(c) for c in fill]) / 255 - torch.tensor(mean)) / torch.tensor(std)
            self.pad = self.pad.view(3, 1, 1)

    def __call__(self, image: Image.Image) -> torch.Tensor:
        if image.mode != "RGB":
            image = image.convert("RGB")
        width, height = self.box.size(*image.size)
        if (width, height) != image.size:
            image = image.resize((width, height), self.resample)
        side = self.box.side
        out = self.pad.to(torch.get_default_dtype()).expand(3, side, side).clone()
        left, top = self.box.offset(width, height)
        out[:, top : top + height, left : left + width] = self.normalized(image)
        return out


def transform(
    mode: str,
    side: int,
    crop_resize: int,
    resample: Image.Resampling,
    mean: Sequence[float],
    std: Sequence[float],
) -> Transform:
    """RGB picture to a normalised (3, side, side) tensor, framed by ``mode``.

    ``crop_resize`` is the shorter side the crop mode scales to before keeping the centre.
    """
    if mode == "crop":
        return model_transform(crop_resize, side, resample, mean, std)
    if mode == "squash":
        return model_transform(0, side, resample, mean, std)
    if mode == "letterbox":
        return LetterboxTensor(side, resample, mean, std)
    raise ValueError(f"unknown preprocess mode {mode!r}; known: {', '.join(MODES)}")


def decode_side(mode: str, side: int, crop_resize: int) -> int:
    """The shorter side the loader must decode to (images.decode) for ``mode`` to lose nothing.

    The crop scales the shorter side to ``crop_resize``. Squash scales each side to ``side`` and
    letterbox the longer one (<= ``side`` for the shorter), so a shorter side of ``side`` is
    enough: every output pixel still comes from at least one decoded pixel.
    """
    return crop_resize if mode == "crop" else side
