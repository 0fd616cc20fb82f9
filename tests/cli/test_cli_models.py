"""The offline commands load their models as the daemon does: for the index the data folder holds."""

from __future__ import annotations

from pathlib import Path

from imgsearchd.cli.models import _index_ids
from imgsearchd.config import load_config
from imgsearchd.store.catalog import Catalog
from imgsearchd.store.models import SERVING, ModelRow

from helpers import server_config


def test_the_model_ids_come_from_the_catalogue_and_a_new_data_folder_has_none(tmp_path: Path) -> None:
    config = load_config(server_config(tmp_path))
    assert _index_ids(config, ["efficientnet"]) == {}  # no catalogue yet: nothing is created either
    assert not config.catalog_path.exists()
    config.data_dir.mkdir(parents=True)
    with Catalog(config.catalog_path) as catalog:
        catalog.record_model(ModelRow("efficientnet", SERVING, "efficientnet:x", "{}", "efficientnet", 1.0))
    assert _index_ids(config, ["efficientnet", ""]) == {"efficientnet": "efficientnet:x"}


def test_a_catalogue_that_cannot_be_read_gives_none(tmp_path: Path) -> None:
    config = load_config(server_config(tmp_path))
    config.data_dir.mkdir(parents=True)
    config.catalog_path.write_bytes(b"not a database at all" * 100)
    assert _index_ids(config, ["efficientnet"]) == {}
