"""A model run by OpenVINO: its parts compiled at a precision, called with torch tensors like the torch model.

The image runs as one compiled model, or as two where the extractor keeps its first stages in fp32
(``fp32_stages``: EfficientNet's stem and first block): OpenVINO's CPU plugin computes a whole model
at its inference precision, and marking single operations fp32 from Python changed nothing
(identical vectors), while the cut model kept them: min cosine to fp32 0.9916 against 0.9761 whole,
top-10 neighbour overlap on 300 real photos 0.968 against 0.949 (BENCHMARKS.md "Engines").
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .openvino_ir import core

# OpenVINO's names for the precisions it computes in (INFERENCE_PRECISION_HINT).
HINTS = {"fp32": "f32", "bf16": "bf16"}


def compiled(model: Any, precision: str, threads: int | None = None) -> Any:
    """``model`` compiled for the CPU at ``precision`` ("fp32" or "bf16"), on ``threads`` threads.

    The hint is always given: the CPU plugin's own default is bf16 on a CPU that has it, so a
    bare compile is not fp32. One stream, latency mode: two streams of 16 instead of one of 32
    measured 0-4 % faster (within noise) and double the memory.
    """
    config = {
        "INFERENCE_PRECISION_HINT": HINTS[precision],
        "INFERENCE_NUM_THREADS": threads or os.cpu_count() or 1,
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": 1,
    }
    return core().compile_model(model, "CPU", config)


def weight_bytes(model: Any) -> int:
    """The bytes of an OpenVINO model's constants: its weights."""
    return int(sum(op.get_byte_size() for op in model.get_ops() if op.get_type_name() == "Constant"))


class Compiled:
    """One compiled model with its request: numpy in, numpy (float32) out."""

    def __init__(self, model: Any, weights: int = 0) -> None:
        self.model = model
        self.weights = weights  # the bytes of the source model's constants
        self._request = model.create_infer_request()

    @classmethod
    def of(cls, model: Any, precision: str) -> Compiled:
        """``model`` compiled at ``precision`` (``compiled``), its weights counted."""
        return cls(compiled(model, precision), weight_bytes(model))

    def __call__(self, data: np.ndarray) -> np.ndarray:
        result = self._request.infer({0: data})
        return np.array(result[self.model.output(0)], dtype=np.float32)


@dataclass
class OpenVinoModel:
    """An extractor's model on OpenVINO: the image parts in order, and a text part for CLIP."""

    image_parts: Sequence[Compiled]
    text_part: Compiled | None = None

    @property
    def weight_bytes(self) -> int:
        """What its weights hold in memory (model_change.py: what a second model costs)."""
        parts = [*self.image_parts, *([self.text_part] if self.text_part else [])]
        return sum(part.weights for part in parts)

    def image(self, batch: torch.Tensor) -> torch.Tensor:
        """Raw features of a (N, C, H, W) float32 batch."""
        data = np.ascontiguousarray(batch.detach().cpu().numpy(), dtype=np.float32)
        for part in self.image_parts:
            data = part(data)
        return torch.from_numpy(data)

    def text(self, tokens: torch.Tensor) -> torch.Tensor:
        """Raw features of a (N, L) batch of token ids."""
        if self.text_part is None:
            raise RuntimeError("this OpenVINO model has no text part")
        return torch.from_numpy(self.text_part(np.ascontiguousarray(tokens.cpu().numpy())))
