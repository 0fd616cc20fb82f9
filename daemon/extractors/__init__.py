"""Feature extractors: one file per model behind one small interface (see ``base``)."""

from .base import Extractor, ModelUnavailableError, TextNotSupportedError
from .registry import Fallback, LoadedExtractors, create, load, models_dir

__all__ = [
    "Extractor",
    "Fallback",
    "LoadedExtractors",
    "ModelUnavailableError",
    "TextNotSupportedError",
    "create",
    "load",
    "models_dir",
]
