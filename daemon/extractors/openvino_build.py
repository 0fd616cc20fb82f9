"""An extractor's model made ready for OpenVINO: converted (cached), cut where stages stay fp32, quantised, compiled."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from .openvino_ir import Part, cached, convert, quantised
from .openvino_run import Compiled, OpenVinoModel
from .precision import INT8_ID, _replace, cpu_flags, native_bf16

if TYPE_CHECKING:
    from .base import Extractor

# Pictures the int8 calibration takes (crops of the shipped photos): NNCF's statistics settle by then.
CALIBRATION_SAMPLES = 64
CALIBRATION_SEED = 9


class Features(nn.Module):
    """``call(model, x)`` as a module, for tracing (an extractor's ``_image_features`` of its model)."""

    def __init__(self, model: nn.Module, call: Callable[[Any, torch.Tensor], torch.Tensor]) -> None:
        super().__init__()
        self.model = model
        self.call = call

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.call(self.model, x)


def cut(model: nn.Module, stages: tuple[str, ...]) -> tuple[nn.Module, nn.Module]:
    """The model as two: its first ``stages`` (consecutive, from the input on) and the rest (copies)."""
    head = nn.Sequential(*[copy.deepcopy(model.get_submodule(name)) for name in stages])
    rest = copy.deepcopy(model)
    for name in stages:
        _replace(rest, name, nn.Identity())
    return head.eval(), rest.eval()


def compute_precision(precision: str, flags: frozenset[str] | None = None) -> str:
    """What OpenVINO computes in for a precision: int8's float operations in bf16 where the CPU has it."""
    if precision == "int8":
        return "bf16" if native_bf16(cpu_flags() if flags is None else flags) else "fp32"
    return precision


def openvino_model(extractor: Extractor, precision: str, models_dir: Path | None) -> OpenVinoModel:
    """``extractor``'s fp32 torch model on OpenVINO at ``precision`` ("fp32", "bf16" or "int8").

    Parts read from the cache need no torch work: the cut, the tracing and the calibration run
    only in the build functions ``cached`` calls when a part is missing.
    """
    from .calibration import fingerprint

    name, model_id, side = extractor.name, extractor.model_id.removesuffix(INT8_ID), extractor.decode_side
    calibration_id = f"{fingerprint()}-{CALIBRATION_SAMPLES}-{CALIBRATION_SEED}"
    compute = compute_precision(precision)

    def weights(
        part: str, convert_fp32: Callable[[], Any], calibrate: Callable[[], list[np.ndarray]], transformer: bool
    ) -> Any:
        """The part's fp32 model, or for int8 its quantised one (from the cache, the fp32 one is not read)."""

        def fp32() -> Any:
            return cached(Part(name, model_id, part), models_dir, convert_fp32)

        if precision != "int8":
            return fp32()
        build = lambda: quantised(fp32(), calibrate(), transformer=transformer)  # noqa: E731
        return cached(Part(name, model_id, part, "int8"), models_dir, build, calibration_id)

    with torch.no_grad():
        example = torch.zeros(2, 3, *_input_side(extractor, side))
        if extractor.fp32_stages and precision != "fp32":
            pieces = functools.cache(lambda: cut(extractor.model, extractor.fp32_stages))
            head_model = cached(Part(name, model_id, "image-head"), models_dir, lambda: convert(pieces()[0], example))
            head = Compiled.of(head_model, "fp32")

            def convert_rest() -> Any:
                head_module, rest_module = pieces()
                return convert(Features(rest_module, extractor._image_features), head_module(example))

            rest = weights("image-rest", convert_rest, lambda: calibration_samples(extractor, head), False)
            parts = [head, Compiled.of(rest, compute)]
        else:
            features = Features(extractor.model, extractor._image_features)
            calibrate = functools.partial(calibration_samples, extractor, None)
            image = weights("image", lambda: convert(features, example), calibrate, extractor.quantisable)
            parts = [Compiled.of(image, compute)]
        text = None
        if extractor.supports_text:
            tokens = extractor._tokens(["a photo", "a cat"])
            text_model = cached(
                Part(name, model_id, "text"), models_dir, lambda: convert(extractor._text_module(), tokens)
            )
            # The text tower stays float (one prompt a query): int8 there was not measured.
            text = Compiled.of(text_model, "fp32" if precision == "fp32" else compute_precision("int8"))
    return OpenVinoModel(parts, text)


def _input_side(extractor: Extractor, side: int) -> tuple[int, int]:
    """The (H, W) the extractor's preprocess gives (its decode side may be larger: crop's 256)."""
    from PIL import Image

    shape = extractor.preprocess(Image.new("RGB", (side, side))).shape
    return int(shape[-2]), int(shape[-1])


def calibration_samples(extractor: Extractor, head: Callable[[np.ndarray], np.ndarray] | None) -> list[np.ndarray]:
    """The int8 calibration's inputs: crops of the shipped photos, preprocessed (through ``head`` when cut)."""
    from .calibration import crops

    samples = []
    for crop in crops(CALIBRATION_SAMPLES, CALIBRATION_SEED):
        data = extractor.preprocess(crop).unsqueeze(0).numpy().astype(np.float32)
        samples.append(head(data) if head is not None else data)
    return samples
