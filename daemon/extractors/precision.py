"""The numeric precision a model runs in: picked for the hardware, checked against fp32 at load.

``precision`` in an extractor's config section is ``auto``, ``fp32``, ``bf16``, ``int8`` or
``fp16``. ``plan`` turns the setting and the hardware into one candidate and a reason;
the extractor (base.py) then converts a copy of its model, embeds the built-in probe
pictures (and texts, for CLIP) with both, and keeps the candidate only when the smallest
cosine to fp32 reaches ``MIN_COSINE`` (and, for ``auto`` int8, when it measures faster).

Why these choices, measured (batch 32, 2 threads, random weights unless said):
- bf16 pays only where the CPU computes it natively (avx512_bf16 or AMX): 1.9x fp32 for
  CLIP ViT-B-32 on a Zen 4 EPYC with avx512_bf16, but 0.17x (six times slower) on the
  AVX2-only Zen 3 EPYC of our development VM, where oneDNN emulates it.
- int8 dynamic quantisation of the Linear layers: 1.6x fp32 for ViT-B-32 on that Zen 3
  (1.7x on the Zen 4), min cosine 0.9998; it quantises Linear layers only, so it does
  nothing for the convolutional models.
- ``torch.autocast`` to bf16 was slower than fp32 (0.8x): the weights are cast on every call.
  Converting the weights once is what is done here.

Vectors made at different precisions share one index: the precision is not part of the
model id (see ``MIN_COSINE`` and BENCHMARKS.md "Precision" for the measurement). ``auto``
may pick another precision on another machine or after a failed check, and re-embedding a
whole library for a difference well inside the check's tolerance would cost hours for nothing.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import torch
from PIL import Image
from torch import nn

from ..config import PRECISIONS
from .probes import TEXTS
from .probes import images as probe_images

log = logging.getLogger("imgsearchd.extractors")

# The faster precision is kept only when every built-in probe's vector has at least this
# cosine to its fp32 vector. Measured on real photos with EfficientNet-Lite0's real weights:
# bf16 gives a min cosine of 0.989 and copy-detection recall@1 within 1 point of fp32, and
# vectors pushed to a cosine of 0.98 still keep it; a broken kernel gives far less.
MIN_COSINE = 0.98
# auto picks int8 over fp32 (on a CPU without native bf16) only when it measures at least
# this much faster on the probes: below it the difference is inside timing noise.
INT8_MIN_SPEEDUP = 1.15
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "int8": torch.float32, "fp16": torch.float16}


# OpenVINO int8's vectors are indexed apart: its model id is the model's with this added (engines.py says why).
INT8_ID = ":openvino-int8"


def int8_apart(model_id: str, other: str) -> bool:
    """Whether two model ids are one model's, one of them OpenVINO int8's (the same vectors' model, another index)."""
    return model_id != other and model_id.removesuffix(INT8_ID) == other.removesuffix(INT8_ID)


@dataclass(frozen=True)
class Option:
    """An engine and precision to try, and why (engines.py)."""

    engine: str
    precision: str
    reason: str

    @property
    def label(self) -> str:
        return f"{self.engine} {self.precision}"


@dataclass(frozen=True)
class Tried:
    """One engine and precision tried at load (engines.py): what became of it and what was measured."""

    engine: str
    precision: str
    outcome: str  # "kept", "slower", "failed the check", "cannot run: ...", "not tried: ..."
    min_cosine: float | None = None
    mean_cosine: float | None = None
    seconds: float | None = None  # the check pictures' forward pass, when timed


@dataclass(frozen=True)
class Precision:
    """The engine and precision a model runs in, what was asked, why, and what the check at load measured."""

    used: str
    asked: str
    reason: str
    min_cosine: float | None = None  # smallest cosine to fp32 over the probes
    speedup: float | None = None  # fp32 time / this precision's time on the probes, when timed
    engine: str = "torch"
    tried: tuple[Tried, ...] = ()  # every option engines.py tried, in order

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the model's input is given in."""
        return DTYPES[self.used]

    def as_dict(self) -> dict[str, object]:
        found = asdict(self)
        found["tried"] = list(found["tried"])  # a JSON list, as /stats gives it
        return found

    def describe(self) -> str:
        parts = [f"{self.engine} {self.used} ({self.reason})"]
        if self.min_cosine is not None:
            parts.append(f"min cosine to fp32 {self.min_cosine:.5f}")
        if self.speedup is not None:
            parts.append(f"{self.speedup:.2f}x torch fp32")
        parts += [f"{t.engine} {t.precision}: {t.outcome}" for t in self.tried if t.outcome != "kept"]
        return "; ".join(parts)


@dataclass(frozen=True)
class Plan:
    """The precision to try, and why; ``timed``: keep it only if it measures faster than fp32."""

    candidate: str
    reason: str
    timed: bool = False


def _cpuinfo(keys: tuple[str, ...], path: str) -> str | None:
    """The value of the first line of /proc/cpuinfo that starts with one of ``keys``; None where none can be read."""
    try:
        with open(path, encoding="ascii", errors="replace") as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith(keys)), None)
    except OSError:
        return None


def cpu_flags(path: str = "/proc/cpuinfo") -> frozenset[str]:
    """The CPU's feature flags (Linux); empty where they cannot be read, which means "none"."""
    return frozenset((_cpuinfo(("flags", "Features"), path) or "").split())


def cpu_model(path: str = "/proc/cpuinfo") -> str:
    """The CPU's model name (Linux), or "" where it cannot be read."""
    return _cpuinfo(("model name",), path) or ""


def native_bf16(flags: frozenset[str]) -> str | None:
    """The flag that gives this CPU native bf16 arithmetic, or None."""
    return next((flag for flag in NATIVE_BF16_FLAGS if flag in flags), None)


def plan(asked: str, device: torch.device, quantisable: bool, flags: frozenset[str] | None = None) -> Plan:
    """What to try for a setting on this hardware; ``quantisable``: the model's work is in Linear layers."""
    if asked not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, not {asked!r}")
    cuda = device.type == "cuda"
    flags = cpu_flags() if flags is None else flags
    bf16_flag = native_bf16(flags)
    if asked == "fp32":
        return Plan("fp32", "set in the config")
    if asked == "fp16":
        return (
            Plan("fp16", "set in the config") if cuda else Plan("fp32", "fp16 runs only on CUDA; this runs on the CPU")
        )
    if asked == "bf16":
        if cuda or bf16_flag:
            return Plan("bf16", "set in the config" + (f"; the CPU has {bf16_flag}" if bf16_flag else ""))
        return Plan("bf16", "set in the config; this CPU has no native bf16 (avx512_bf16, amx_bf16): emulated, slower")
    if asked == "int8":
        if cuda:
            return Plan("fp32", "int8 dynamic quantisation runs only on the CPU")
        if not quantisable:
            return Plan("fp32", "int8 quantises Linear layers, and this model's work is in convolutions")
        return Plan("int8", "set in the config")
    if cuda:
        return Plan("fp16", "auto: CUDA computes fp16 natively")
    if bf16_flag:
        return Plan("bf16", f"auto: the CPU has {bf16_flag}")
    if quantisable:
        return Plan("int8", "auto: no native bf16 on this CPU; int8 if it measures faster", timed=True)
    return Plan("fp32", "auto: no native bf16 on this CPU, and int8 has no Linear layers to speed up here")


class Fp32Stage(nn.Module):
    """One part of a reduced-precision model that computes in fp32: input cast up, output to ``out``."""

    def __init__(self, stage: nn.Module, out: torch.dtype) -> None:
        super().__init__()
        self.stage = stage
        self.out = out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stage(x.float()).to(self.out)


def convert(model: nn.Module, precision: str, fp32_stages: Sequence[str] = ()) -> nn.Module:
    """A copy of the fp32 ``model`` in ``precision`` (the original is left as it was).

    Under bf16/fp16 the named ``fp32_stages`` (consecutive modules, in order) keep their fp32
    weights and compute in fp32; the last of them hands the model's dtype on.
    """
    if precision == "int8":
        with warnings.catch_warnings():
            # torch.ao's eager quantisation warns that it moves to torchao; it is what runs
            # fast in eager mode on CPUs today (torchao's int8 path relies on torch.compile).
            warnings.simplefilter("ignore")
            return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8, inplace=False)
    if precision in ("bf16", "fp16"):
        converted = copy.deepcopy(model).to(DTYPES[precision])
        for position, name in enumerate(fp32_stages):
            out = DTYPES[precision] if position == len(fp32_stages) - 1 else torch.float32
            _replace(converted, name, Fp32Stage(copy.deepcopy(model.get_submodule(name)), out))
        return converted
    if precision == "fp32":
        return model
    raise ValueError(f"no conversion to {precision!r}")


def _replace(model: nn.Module, qualified_name: str, new: nn.Module) -> None:
    parent_name, _, child = qualified_name.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, child, new)


def min_cosine(reference: torch.Tensor, candidate: torch.Tensor) -> float:
    """The smallest row-wise cosine between two (N, D) feature sets."""
    cos = nn.functional.cosine_similarity(reference.float(), candidate.float(), dim=-1)
    return float(cos.min())


def seconds(run: Callable[[], object], repeats: int = 2) -> float:
    """The best wall time of ``repeats`` calls (after the caller's own warm-up call)."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


class Checkable(Protocol):
    """What ``settle`` needs of an extractor (base.Extractor has it all)."""

    name: str
    device: torch.device
    quantisable: bool
    supports_text: bool
    model: Any
    fp32_stages: tuple[str, ...]
    _lock: threading.Lock

    def preprocess(self, image: Image.Image) -> torch.Tensor: ...
    def _as_input(self, batch: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor: ...
    def _input_dtype(self, precision: str) -> torch.dtype: ...
    def _image_features(self, model: Any, batch: torch.Tensor) -> torch.Tensor: ...
    def _text_features(self, model: Any, texts: Sequence[str]) -> torch.Tensor: ...
    def _converted(self, model: Any, precision: str) -> Any: ...


def settle(extractor: Checkable, asked: str, threshold: float | None = None) -> Precision:
    """Put ``extractor.model`` in the precision ``asked`` for (``auto``: chosen for the hardware).

    A reduced precision is kept only when the probes' vectors (pictures, and texts where
    there is a text encoder) have a cosine of at least ``threshold`` (MIN_COSINE) to fp32's;
    otherwise, with a warning, the model stays fp32. Returns the outcome, with its reason
    and what was measured.
    """
    threshold = MIN_COSINE if threshold is None else threshold
    chosen = plan(asked, extractor.device, extractor.quantisable)
    outcome = Precision(used="fp32", asked=asked, reason=chosen.reason)
    if chosen.candidate != "fp32":
        outcome = _check(extractor, asked, chosen, threshold)
    if outcome.used == "fp32" and outcome.min_cosine is not None and outcome.min_cosine < threshold:
        log.warning(
            "%s: %s FAILED the check at load; running fp32: %s", extractor.name, chosen.candidate, outcome.reason
        )
    log.info("%s: %s", extractor.name, outcome.describe())
    return outcome


def _check(extractor: Checkable, asked: str, chosen: Plan, threshold: float) -> Precision:
    """Convert a copy, compare it with fp32 on the probes (and time it when asked); keep it if it passes."""
    candidate = extractor._converted(
        convert(extractor.model, chosen.candidate, extractor.fp32_stages), chosen.candidate
    )
    batch = torch.stack([extractor.preprocess(picture) for picture in probe_images()])
    with extractor._lock, torch.inference_mode():
        fp32_input = extractor._as_input(batch, torch.float32)
        new_input = extractor._as_input(batch, extractor._input_dtype(chosen.candidate))
        worst = min_cosine(
            extractor._image_features(extractor.model, fp32_input), extractor._image_features(candidate, new_input)
        )
        if extractor.supports_text:
            reference = extractor._text_features(extractor.model, TEXTS)
            worst = min(worst, min_cosine(reference, extractor._text_features(candidate, TEXTS)))
        if worst < threshold:
            reason = (
                f"{chosen.candidate} failed the check at load: min cosine to fp32 {worst:.5f} < {threshold} "
                "on the built-in probes"
            )
            return Precision("fp32", asked, reason, min_cosine=worst)
        speedup = None
        if chosen.timed:
            fp32_seconds = seconds(lambda: extractor._image_features(extractor.model, fp32_input))
            speedup = fp32_seconds / seconds(lambda: extractor._image_features(candidate, new_input))
            if speedup < INT8_MIN_SPEEDUP:
                reason = f"{chosen.reason}: measured {speedup:.2f}x fp32 (< {INT8_MIN_SPEEDUP}x), so fp32"
                return Precision("fp32", asked, reason)
    extractor.model = candidate
    return Precision(chosen.candidate, asked, chosen.reason, min_cosine=worst, speedup=speedup)
