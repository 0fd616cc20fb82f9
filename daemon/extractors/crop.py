"""The models' resize-then-centre-crop, computed only over the part of the picture it keeps.

torchvision's ``Resize(S)`` + ``CenterCrop(C)`` scales the whole picture first (shorter
side to S) and then throws most of it away: a 100000x1 PNG became a 25600000x256 picture
(22 GB) for the 224x224 kept. ``ResizeCrop`` asks Pillow to resample only the source box
that maps onto the crop, at the same scale and the same pixel centres as the full resize,
so the output matches the old one while work and memory are bounded by the output.
``NormalizedTensor`` is torchvision's ToTensor + Normalize with fewer passes, same bits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torchvision import transforms

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class ResizeCrop:
    """Shorter side to ``resize``, then the centre ``crop`` x ``crop``; ``resize`` 0 squashes.

    Same arithmetic as torchvision's ``Resize(resize)`` then ``CenterCrop(crop)`` on a PIL
    picture: the resized long side is truncated, the crop offset rounded.
    """

    resize: int
    crop: int
    resample: Image.Resampling

    def box(self, width: int, height: int) -> Box:
        """The region of a ``width`` x ``height`` picture that becomes the crop."""
        return self._plan(width, height)[0]

    def _plan(self, width: int, height: int) -> tuple[Box, bool]:
        """The source box, and whether the full resize would have run its vertical pass first."""
        if self.resize == 0:
            new_w = new_h = self.crop
            box = (0.0, 0.0, float(width), float(height))
        else:
            short, long = min(width, height), max(width, height)
            new_long = max(int(self.resize * long / short), self.resize)
            new_w, new_h = (self.resize, new_long) if width <= height else (new_long, self.resize)
            left, top = round((new_w - self.crop) / 2.0), round((new_h - self.crop) / 2.0)
            scale_x, scale_y = width / new_w, height / new_h
            # Clamped because float rounding can put the far edge a hair past the picture,
            # which Pillow refuses; the near edge cannot go below 0 as resize >= crop.
            box = (
                left * scale_x,
                top * scale_y,
                min((left + self.crop) * scale_x, float(width)),
                min((top + self.crop) * scale_y, float(height)),
            )
        # Pillow's own rule (Resample.c): vertical first when the height shrinks by more
        # than twice what the width does.
        return box, height - new_h > 0 and height - new_h > 2 * (width - new_w)

    def __call__(self, image: Image.Image) -> Image.Image:
        if image.mode != "RGB":
            image = image.convert("RGB")
        (x0, y0, x1, y1), vertical_first = self._plan(*image.size)
        # Two one-axis passes over just the pixels the filters read, in the order Pillow's
        # full resize ran them: one call with a box may choose the other order, and the
        # 8-bit rounding between passes then moved upscaled edges by up to 6 levels (cosine
        # 0.9974 on tall thumbnails with EfficientNet-Lite0). What remains is 1 level here and
        # there (2 at most): Pillow takes the box as float32, which moves the filter by ~1e-5 px.
        left, right = self._taps(x0, x1, image.width)
        top, bottom = self._taps(y0, y1, image.height)
        band = image.crop((left, top, right, bottom))
        x0, x1, y0, y1 = x0 - left, x1 - left, y0 - top, y1 - top
        size, resample = self.crop, self.resample
        if vertical_first:
            cols = band.resize((band.width, size), resample, box=(0, y0, band.width, y1))
            return cols.resize((size, size), resample, box=(x0, 0, x1, size))
        rows = band.resize((size, band.height), resample, box=(x0, 0, x1, band.height))
        return rows.resize((size, size), resample, box=(0, y0, size, y1))

    def _taps(self, start: float, end: float, size: int) -> tuple[int, int]:
        """The source pixels a filter over [start, end) at this scale reads, clipped to the picture."""
        support = _SUPPORT.get(self.resample, _SUPPORT_DEFAULT) * max((end - start) / self.crop, 1.0) + 1
        return max(0, math.floor(start - support)), min(size, math.ceil(end + support))


# Filter radius in source pixels at scale 1 (Pillow's Resample.c); others read 3, the most.
_SUPPORT = {Image.Resampling.BILINEAR: 1.0, Image.Resampling.BICUBIC: 2.0}
_SUPPORT_DEFAULT = 3.0


class NormalizedTensor:
    """torchvision's ``ToTensor()`` then ``Normalize(mean, std)`` on an RGB picture, to the bit.

    The same float operations in the same order (to float, /255, -mean, /std), done in place
    on the one tensor that the channel shuffle writes into: four passes over the pixels and
    one new tensor instead of six passes and four new tensors, about half the CPU time.

    They stay torch operators on purpose. A numpy table look-up was as exact and as cheap,
    but it took torch's parallel operators out of the loader threads, and without those
    threads' OpenMP teams libgomp no longer throttles the spin-wait of the forward pass's
    team (it does while it manages more threads than there are cores): with the default
    OMP_WAIT_POLICY on a busy 2-core machine, indexing then took up to twice the CPU.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f"need a mean and a std for each of 3 channels, got {len(mean)} and {len(std)}")
        self.mean, self.std = tuple(mean), tuple(std)
        self._constants: dict[torch.dtype, tuple[torch.Tensor, torch.Tensor]] = {}
        if (self._for(torch.get_default_dtype())[1] == 0).any():
            raise ValueError(f"std {self.std} has a zero")

    def _for(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """mean and std as (3, 1, 1) tensors of ``dtype``, as Normalize makes them."""
        if dtype not in self._constants:
            mean = torch.as_tensor(self.mean, dtype=dtype).view(-1, 1, 1)
            std = torch.as_tensor(self.std, dtype=dtype).view(-1, 1, 1)
            self._constants[dtype] = (mean, std)
        return self._constants[dtype]

    def __call__(self, image: Image.Image) -> torch.Tensor:
        if image.mode != "RGB":
            image = image.convert("RGB")
        dtype = torch.get_default_dtype()  # what ToTensor converts to
        mean, std = self._for(dtype)
        pixels = torch.from_numpy(np.array(image))  # (H, W, 3) uint8, writable
        out = torch.empty((3, image.height, image.width), dtype=dtype)
        out.copy_(pixels.permute(2, 0, 1))
        return out.div_(255).sub_(mean).div_(std)


def model_transform(
    resize: int, crop: int, resample: Image.Resampling, mean: Sequence[float], std: Sequence[float]
) -> transforms.Compose:
    """RGB picture to a normalised (3, crop, crop) tensor, bounded by the output size."""
    if 0 < resize < crop:
        raise ValueError(f"resize {resize} is smaller than the crop {crop}")
    return transforms.Compose([ResizeCrop(resize, crop, resample), NormalizedTensor(mean, std)])
