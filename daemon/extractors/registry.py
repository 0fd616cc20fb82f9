"""Extractor names to classes, and loading with the configured fallback."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..config import Config, ExtractorSettings, validate
from .advice import Advice, FallbackDict, advise
from .base import Extractor, ModelUnavailableError
from .engines import settle
from .precision import INT8_ID

log = logging.getLogger("imgsearchd.extractors")


def _classes() -> dict[str, type[Extractor]]:
    from .clip import ClipExtractor
    from .efficientnet import EfficientNetExtractor
    from .resnet import ResNetExtractor

    return {"clip": ClipExtractor, "resnet": ResNetExtractor, "efficientnet": EfficientNetExtractor}


def models_dir(config: Config) -> Path:
    """Where OpenVINO's converted models are cached: ``data_dir/models`` (openvino_ir.py)."""
    return config.data_dir / "models"


def extractor_settings(name: str, values: Mapping[str, Any], where: str = "extractor settings") -> ExtractorSettings:
    """An extractor's section from a few keys, the rest defaults (tests, benchmarks), checked as the
    settings file's ``[extractors.NAME]`` is: a ``config.ConfigError`` naming the key (and ``where``)."""
    return validate({"extractors": {name: dict(values)}}, where).extractor(name)


def create(
    name: str,
    settings: ExtractorSettings | Mapping[str, Any],
    models_dir: Path | None = None,
    index_id: str | None = None,
    old_index: bool = False,
) -> Extractor:
    """Build one extractor by name from its ``[extractors.NAME]`` section; ModelUnavailableError
    when its weights cannot load. A mapping of a few keys (tests, benchmarks) fills in the rest
    with the defaults, checked as the settings file is (``config.ConfigError`` naming the key).
    ``models_dir``: where OpenVINO's converted models are cached (None: made at every load).
    ``index_id``: the model id of the vectors its index holds (None: a new index; engines.settle);
    ``old_index``: built only to answer from that index during a model change (engines.settle)."""
    classes = _classes()
    if name not in classes:
        raise ModelUnavailableError(name, f"unknown extractor; known: {', '.join(classes)}")
    if isinstance(settings, Mapping):
        settings = extractor_settings(name, settings)
    if index_id is not None and index_id.endswith(INT8_ID) and settings.engine != "torch" and settings.device == "auto":
        # OpenVINO's int8 runs on the CPU: a GPU found now would re-embed the library in fp16
        log.info('%s: the index holds OpenVINO int8\'s vectors: on the CPU (device = "auto")', name)
        settings = replace(settings, device="cpu")
    log.info("loading extractor %s", name)
    extractor = classes[name](settings)
    extractor.precision = settle(extractor, settings.engine, settings.precision, models_dir, index_id, old_index)
    return extractor


@dataclass(frozen=True)
class Fallback:
    """A configured extractor that could not load, what runs instead, and what to do (``advice``)."""

    configured: str
    running: str
    reason: str
    advice: Advice | None = None

    def as_dict(self) -> FallbackDict:
        if self.advice is not None:
            return self.advice.as_dict()
        return {"configured": self.configured, "running": self.running, "reason": self.reason}


@dataclass
class LoadedExtractors:
    """The extractors that run, the one that answers searches by default, and any fallback."""

    extractors: dict[str, Extractor]
    primary: str
    fallback: Fallback | None = None

    @property
    def default(self) -> Extractor:
        return self.extractors[self.primary]


def load(
    wanted: Sequence[str],
    fallback: str,
    settings_for: Callable[[str], ExtractorSettings | Mapping[str, Any]],
    models_dir: Path | None = None,
    index_ids: Mapping[str, str] | None = None,
) -> LoadedExtractors:
    """Load the wanted extractors in order; replace one that cannot load with the fallback.

    ``settings_for(name)`` gives an extractor's config section; ``index_ids`` the model id of the
    vectors each one's index holds (``create``). Without a fallback, or when the fallback fails
    too, the ModelUnavailableError propagates.
    """
    ids = index_ids or {}
    loaded: dict[str, Extractor] = {}
    used_fallback: Fallback | None = None
    for name in wanted:
        if name in loaded:
            continue
        try:
            loaded[name] = create(name, settings_for(name), models_dir, ids.get(name))
        except ModelUnavailableError as exc:
            if not fallback or fallback == name or used_fallback is not None:
                raise
            if fallback not in loaded:
                loaded[fallback] = create(fallback, settings_for(fallback), models_dir, ids.get(fallback))
            used_fallback = _fell_back(name, fallback, exc, settings_for(name), wanted)
            if name == "clip":
                loaded[fallback].text_refusal_note = (
                    f"text search needs clip, which could not load ({used_fallback.reason}); "
                    "GET /stats (fallback) or `imgsearchd stats` says what to fetch and where to put it"
                )
    primary = wanted[0]
    if used_fallback is not None and used_fallback.configured == primary:
        primary = used_fallback.running
    return LoadedExtractors(extractors=loaded, primary=primary, fallback=used_fallback)


def _fell_back(
    name: str,
    fallback: str,
    exc: ModelUnavailableError,
    settings: ExtractorSettings | Mapping[str, Any],
    wanted: Sequence[str],
) -> Fallback:
    """The fallback and its advice, logged once: which model, why, what to fetch and where to put it."""
    if isinstance(settings, Mapping):
        settings = extractor_settings(name, settings)
    advice = advise(name, settings, exc.why, fallback, wanted)
    log.warning("FALLING BACK to %s: %s cannot load.\n  %s", fallback, name, "\n  ".join(advice.lines))
    return Fallback(configured=name, running=fallback, reason=exc.why, advice=advice)
