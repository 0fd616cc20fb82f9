"""Loading the configured models for the offline commands (``index``, ``backfill``, ``import``)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .extractors import LoadedExtractors


def load_extractors(config: Any) -> LoadedExtractors | None:
    """The configured extractors (with the fallback), or None after saying why they cannot load."""
    # Imported here: torch takes seconds to import, and the thin clients never need it.
    from .extractors import ModelUnavailableError, load

    try:
        return load(config.index["extractors"], config.index["fallback_extractor"], config.extractor)
    except ModelUnavailableError as exc:
        print(f"imgsearchd: {exc}", file=sys.stderr)
        return None
