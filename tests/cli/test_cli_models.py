"""The offline commands load their models as the daemon does: for the index the data folder holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

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


def test_the_catalogues_ids_win_and_an_archives_fill_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An import into a new data folder loads for the kind of vectors the archive holds (the load is recorded)."""
    import imgsearchd.extractors
    from imgsearchd.cli.models import load_extractors

    asked: list[dict[str, str]] = []

    def recorded(*args: Any) -> str:
        asked.append(dict(args[4]))
        return "loaded"

    monkeypatch.setattr(imgsearchd.extractors, "load", recorded)
    config = load_config(server_config(tmp_path))
    archive = {"efficientnet": "efficientnet:x:openvino-int8", "clip": "clip:y"}
    assert load_extractors(config, ["efficientnet"], "", archive) == "loaded"
    config.data_dir.mkdir(parents=True)
    with Catalog(config.catalog_path) as catalog:
        catalog.record_model(ModelRow("efficientnet", SERVING, "efficientnet:x", "{}", "efficientnet", 1.0))
    load_extractors(config, ["efficientnet"], "", archive)
    assert asked == [archive, {**archive, "efficientnet": "efficientnet:x"}]


def test_int8_vectors_of_the_configured_model_are_refused_naming_engine_and_precision(tmp_path: Path) -> None:
    """The same model, but OpenVINO int8's vectors are indexed apart: the message says what to set."""
    from imgsearchd.bulk.sources import OURS, Part, VectorsError
    from imgsearchd.cli.vectors import int8_apart

    part = Part(tmp_path / "part.parquet", OURS, "clip", "clip:m:squash:openvino-int8", 512, 3)
    with pytest.raises(VectorsError, match=r'indexed apart from fp32/bf16 ones.*"openvino" and "int8"'):
        int8_apart([part], {"clip": ("clip:m:squash", 512)})
    int8_apart([part], {"clip": ("clip:m:squash:openvino-int8", 512)})  # the same: check_parts' turn
    int8_apart([part], {"clip": ("clip:other", 512)})  # another model: check_parts says so
