"""The small interface every feature extractor implements."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import socket
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from .precision import DTYPES, Precision, settle

if TYPE_CHECKING:
    from ..config import ExtractorSettings

log = logging.getLogger("imgsearchd.extractors")

# Fixed seed for "pretrained = none": random weights, identical on every load (tests, benchmarks).
RANDOM_WEIGHTS_SEED = 0
RANDOM_WEIGHTS = ("none", "random")
# Only CLIP has a text encoder; it runs when index.extractors names it.
_TEXT_NEEDS = 'text search needs clip, listed in index.extractors (e.g. ["clip", "efficientnet"])'


class ModelUnavailableError(Exception):
    """The model's weights could not be loaded; the message says what to put where.

    ``why`` is the cause alone, in one line (the fallback's ``reason``: ``advice`` says the rest).
    """

    def __init__(self, extractor: str, message: str, why: str = "") -> None:
        super().__init__(f"{extractor}: {message}")
        self.extractor = extractor
        self.why = " ".join((why or message).split())


class TextNotSupportedError(Exception):
    """This extractor has no text encoder."""


def resolve_device(setting: str) -> torch.device:
    """'auto' is CUDA when present, else the CPU with all its cores."""
    if setting == "auto":
        setting = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(setting)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ModelUnavailableError("device", f"device {setting!r} was asked for but CUDA is not available")
    if device.type == "cpu":
        torch.set_num_threads(os.cpu_count() or 1)
    return device


def host_reachable(host: str, port: int = 443, timeout: float = 3.0) -> bool:
    """A quick check that a download host answers, so offline start-up fails fast: at most
    ``timeout`` seconds in all, the name lookup too (``create_connection``'s timeout does not
    bound it, and a resolver that does not answer takes 5 s a try)."""
    answer: list[bool] = []

    def connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout):
                answer.append(True)
        except OSError:
            answer.append(False)

    probe = threading.Thread(target=connect, name=f"reach-{host}", daemon=True)
    probe.start()
    probe.join(timeout)
    return bool(answer and answer[0])


def read_state_dict(extractor: str, path: str) -> dict[str, torch.Tensor]:
    """A weights file's tensors (a bare state dict or one under "state_dict"), no pickle code run."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as exc:
        raise ModelUnavailableError(extractor, f"cannot read weights file {path}: {exc}") from exc
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    return state


# Bytes read at a time while digesting a weights file: large reads keep the digest at the speed
# of blake2b itself, and 1 MiB of buffer is nothing next to the model.
_DIGEST_CHUNK = 1 << 20


def file_fingerprint(path: str) -> str:
    """Name, size and a blake2b digest of a weights file's bytes: part of a model id, so new
    weights re-embed and a touch or a restore of the same bytes does not. Digested once per
    (path, size, mtime, ctime) in a process (a 600 MB file takes about a second: the daemon builds a model twice at start)."""
    st = os.stat(path)
    return f"file:{os.path.basename(path)}:{st.st_size}:{_digest(path, st.st_size, st.st_mtime_ns, st.st_ctime_ns)}"


def legacy_file_fingerprint(path: str) -> str:
    """The fingerprint before content digests (name, size, mtime), with the file's current mtime:
    equal to a stored id's only when the file is as it was (``model_change`` renames such ids)."""
    st = os.stat(path)
    return f"file:{os.path.basename(path)}:{st.st_size}:{st.st_mtime_ns}"


@functools.lru_cache(maxsize=16)
def _digest(path: str, _size: int, _mtime_ns: int, _ctime_ns: int) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(_DIGEST_CHUNK):
            digest.update(chunk)
    return "b2-" + digest.hexdigest()


class Extractor(ABC):
    """Turns pictures into L2-normalised float32 vectors of a fixed dimension.

    Subclasses set ``name``, ``dim``, ``model_id``, ``decode_side`` (the shorter side
    the loader should decode to), ``preprocess_mode`` (the framing: framing.py; part of
    ``model_id``), build ``self.model`` (fp32, eval) and implement
    ``preprocess`` and ``_image_features``. ``registry.create`` then picks the engine and
    precision the model runs in and checks them against fp32 (engines.settle; ``use_precision``
    for torch alone).
    ``forward_passes`` and ``images_embedded`` count the work done (for stats and tests).
    """

    name: str = ""
    model: Any  # the torch module (fp32 until converted at load; None once OpenVINO runs it: engines.py)
    dim: int = 0
    model_id: str = ""
    decode_side: int = 224
    preprocess_mode: str = "crop"
    supports_text: bool = False
    # True when the model's work is in Linear layers, which int8 dynamic quantisation speeds up.
    quantisable: bool = False
    # Convolutional models run channels-last (layout.py); their input is given so too.
    channels_last: bool = False
    # Modules (qualified names, consecutive, from the input on) kept in fp32 under bf16/fp16;
    # the model then takes its input in fp32 (precision.convert, Fp32Stage).
    fp32_stages: tuple[str, ...] = ()
    # Why a text query is refused: set by ``registry.load`` when this model stands in for a
    # configured one (CLIP) that could not load, to say so and point at the advice.
    text_refusal_note: str = ""
    # The model on OpenVINO (openvino_run.OpenVinoModel) when engines.py chose it; then it embeds
    # (and encodes texts) and the torch ``model`` is let go.
    openvino: Any = None

    def __init__(self, settings: ExtractorSettings) -> None:
        """Device and batch size from the extractor's config section."""
        self.device = resolve_device(settings.device)
        self.batch_size = settings.batch_size
        self.forward_passes = 0
        self.images_embedded = 0
        self.precision = Precision(used="fp32", asked="fp32", reason="not chosen yet")
        self._lock = threading.Lock()  # one forward pass at a time per model

    @abstractmethod
    def preprocess(self, image: Image.Image) -> torch.Tensor:
        """One RGB picture to a (C, H, W) float tensor ready for ``embed``."""

    def _image_features(self, model: Any, batch: torch.Tensor) -> torch.Tensor:
        """Raw features of ``model`` (this extractor's, at some precision) for a prepared batch."""
        raise NotImplementedError

    def _text_features(self, model: Any, texts: Sequence[str]) -> torch.Tensor:
        """Raw text features of ``model``, for extractors with a text encoder."""
        raise TextNotSupportedError(self.text_refusal)

    def _tokens(self, texts: Sequence[str]) -> torch.Tensor:
        """Texts as the text encoder's token ids (the input of its OpenVINO model)."""
        raise TextNotSupportedError(self.text_refusal)

    def _text_module(self) -> torch.nn.Module:
        """The fp32 text encoder as a module of token ids, for conversion (openvino_build.py)."""
        raise TextNotSupportedError(self.text_refusal)

    @property
    def text_refusal(self) -> str:
        """The answer to a text query for a model without a text encoder."""
        return f"the {self.name} extractor has no text encoder: {self.text_refusal_note or _TEXT_NEEDS}"

    def weight_bytes(self) -> int:
        """The memory the model's weights hold: OpenVINO's compiled parts, or torch's parameters and buffers."""
        if self.openvino is not None:
            return int(self.openvino.weight_bytes)
        tensors = [*self.model.parameters(), *self.model.buffers()]
        return int(sum(t.numel() * t.element_size() for t in tensors))

    def _forward(self, batch: torch.Tensor) -> torch.Tensor:
        """Raw features for a batch already on the device, in the model's dtype and layout."""
        return self._image_features(self.model, batch)

    def _as_input(self, batch: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
        """A float32 (N, C, H, W) batch on the device, in the dtype and memory layout the model takes."""
        batch = batch.to(self.device, dtype=dtype or self._input_dtype(self.precision.used), non_blocking=True)
        return batch.contiguous(memory_format=torch.channels_last) if self.channels_last else batch

    def embed(self, batch: torch.Tensor) -> np.ndarray:
        """A (N, C, H, W) batch of preprocessed pictures to (N, dim) unit vectors."""
        with self._lock, torch.inference_mode():
            runs_openvino = self.openvino is not None
            features = self.openvino.image(batch) if runs_openvino else self._forward(self._as_input(batch))
            features = torch.nn.functional.normalize(features.float(), dim=-1)
            self.forward_passes += 1
            self.images_embedded += int(batch.shape[0])
        return features.cpu().numpy().astype(np.float32, copy=False)

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """Convenience: preprocess and embed pictures, ``batch_size`` at a time."""
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start : start + self.batch_size]
            parts.append(self.embed(torch.stack([self.preprocess(im) for im in chunk])))
        return np.concatenate(parts)

    def encode_text(self, texts: Sequence[str]) -> np.ndarray:
        """Texts to unit vectors comparable with this extractor's image vectors."""
        with self._lock, torch.inference_mode():
            if self.openvino is not None and self.openvino.text_part is not None:
                features = self.openvino.text(self._tokens(texts))
            else:
                features = self._text_features(self.model, texts)
            features = torch.nn.functional.normalize(features.float(), dim=-1)
        return features.cpu().numpy().astype(np.float32, copy=False)

    # -- precision

    def _input_dtype(self, precision: str) -> torch.dtype:
        """The dtype the model takes its input in at ``precision`` (fp32 when its first stages are)."""
        return torch.float32 if self.fp32_stages else DTYPES[precision]

    def use_precision(self, asked: str, min_cosine: float | None = None) -> Precision:
        """Run the torch model at the precision ``asked`` for, checked against fp32 (precision.settle)."""
        self.openvino = None
        self.precision = settle(self, asked, min_cosine)
        return self.precision

    def _converted(self, model: Any, precision: str) -> Any:
        """A hook for a model that needs a hand after conversion (CLIP's int8 text tower)."""
        return model
