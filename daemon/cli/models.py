"""The offline commands' shared first steps (``index``, ``backfill``, ``export``, ``import``): the
configured models, and the catalogue, each with its error said on stderr."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..config import Config
    from ..extractors import LoadedExtractors
    from ..store.catalog import Catalog


def load_extractors(
    config: Config,
    names: list[str] | None = None,
    fallback: str | None = None,
    index_ids: dict[str, str] | None = None,
) -> LoadedExtractors | None:
    """The configured extractors (or ``names``) with the configured fallback (or ``fallback``;
    "" for none), or None after saying why they cannot load. Each loads for the kind of index the
    catalogue holds; ``index_ids`` stand in where it holds none (an import's model ids)."""
    # Imported here: torch takes seconds to import, and the thin clients never need it.
    from ..extractors import ModelUnavailableError, load, models_dir

    wanted = list(config.index.extractors) if names is None else names
    stand_in = config.index.fallback_extractor if fallback is None else fallback
    try:
        ids = {**(index_ids or {}), **_index_ids(config, [*wanted, stand_in])}
        return load(wanted, stand_in, config.extractor, models_dir(config), ids)
    except ModelUnavailableError as exc:
        print(f"imgsearchd: {exc}", file=sys.stderr)
        return None


def _index_ids(config: Config, names: list[str]) -> dict[str, str]:
    """The model id of the vectors each extractor's index holds, as the daemon reads them at start
    (``engine = "auto"`` keeps to an index's kind); none for a new data folder."""
    if not config.catalog_path.is_file():
        return {}
    from ..service.model_change import index_model_ids
    from ..store.catalog import Catalog
    from ..store.database import CatalogError

    try:
        with Catalog(config.catalog_path) as catalog:
            return index_model_ids(catalog, [name for name in names if name])
    except CatalogError:
        return {}  # the command says why when it opens the catalogue itself


def open_catalog(config: Config) -> Catalog | None:
    """The data folder's catalogue, or None after saying why it cannot be opened."""
    from ..store.catalog import Catalog
    from ..store.database import CatalogError

    try:
        return Catalog(config.catalog_path)
    except CatalogError as exc:
        print(f"imgsearchd: {exc}", file=sys.stderr)
        return None


def models_fit_the_index(catalog: Catalog, config: Config, loaded: LoadedExtractors, done: str = "embedded") -> bool:
    """Whether the command may embed: each model is the one its index holds (recorded as serving, as a
    daemon's start records it), or the index is new; False after saying why not (the catalogue closed)."""
    from ..service.model_change import offline_models
    from ..store.disk_health import is_storage_error

    try:
        refusals = offline_models(catalog, config, loaded)
    except Exception as exc:  # recording the model writes the catalogue: a full or read-only disk says so
        if not is_storage_error(exc):
            raise
        refusals = [f"cannot write the catalogue {config.catalog_path}: {exc}"]
    for refusal in refusals:
        print(f"imgsearchd: {refusal}; nothing was {done}", file=sys.stderr)
    if refusals:
        catalog.close()
    return not refusals
