"""The offline commands load their models as the daemon does: for the index the data folder holds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from imgsearchd.cli.models import _index_ids
from imgsearchd.config import load_config
from imgsearchd.store.catalog import Catalog
from imgsearchd.store.models import SERVING, ModelRow

from helpers import cli_here, server_config, skimage_photos


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
    from imgsearchd.cli.vectors import refuse_int8_apart

    part = Part(tmp_path / "part.parquet", OURS, "clip", "clip:m:squash:openvino-int8", 512, 3)
    with pytest.raises(VectorsError, match=r'indexed apart from fp32/bf16 ones.*"openvino" and "int8"'):
        refuse_int8_apart([part], {"clip": ("clip:m:squash", 512)})
    refuse_int8_apart([part], {"clip": ("clip:m:squash:openvino-int8", 512)})  # the same: check_parts' turn
    refuse_int8_apart([part], {"clip": ("clip:other", 512)})  # another model: check_parts says so


def test_an_offline_index_records_its_model_and_refuses_to_mix_in_another(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``imgsearchd index`` records its model as serving, with the settings that build it (a later change
    serves from the old index, as after a daemon's start); settings that build another model are
    refused (their vectors would be missing from the index's searches: a model change is the daemon's);
    ``search --local`` with them answers from the recorded model, or, where none can be built, refuses
    rather than answer empty from a model that has no vectors there."""
    import json
    import sqlite3

    from imgsearchd.store.models import NEXT

    photos = tmp_path / "photos"
    photos.mkdir()
    pictures = skimage_photos()
    for name in ("chelsea", "coffee", "rocket"):
        pictures[name].save(photos / f"{name}.jpg")
    pictures["astronaut"].save(tmp_path / "astronaut.jpg")
    made = server_config(tmp_path)
    (tmp_path / "other").mkdir()
    other = server_config(
        tmp_path / "other",
        index={"data_dir": str(tmp_path / "data")},
        **{"extractors.efficientnet": {"preprocess": "crop"}},
    )
    done = cli_here(capsys, "index", "--json", "--no-progress", "--config", str(made), str(photos))
    assert done.returncode == 0, done.stderr
    model_id = json.loads(done.stdout)["extractors"]["efficientnet"]
    config = load_config(made)
    with Catalog(config.catalog_path) as catalog:
        serving = catalog.models("efficientnet")[SERVING]
        assert serving.model_id == model_id and serving.settings is not None
        assert catalog.vector_models("efficientnet") == {model_id: 3}

    refused = cli_here(
        capsys, "index", "--json", "--no-progress", "--config", str(other), str(tmp_path / "astronaut.jpg")
    )
    assert refused.returncode == 1 and refused.stdout == ""
    assert f"the index holds the vectors of {model_id}, and these settings run efficientnet_lite0:" in refused.stderr
    assert "imgsearchd serve" in refused.stderr and "nothing was embedded" in refused.stderr
    with Catalog(config.catalog_path) as catalog:
        assert catalog.vector_models("efficientnet") == {model_id: 3}  # nothing of the other model

    chelsea = str(photos / "chelsea.jpg")
    found = cli_here(capsys, "search", chelsea, "--local", "--json", "--config", str(other))
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["results"][0]["image"] == chelsea  # the recorded model answered

    with sqlite3.connect(config.catalog_path) as conn:  # as an earlier version's `index` left it
        conn.execute("DELETE FROM models")
    empty = cli_here(capsys, "search", chelsea, "--local", "--json", "--config", str(other))
    assert empty.returncode == 3 and empty.stdout == ""
    assert "has no vectors there to answer from" in empty.stderr and "were not recorded" in empty.stderr

    with Catalog(config.catalog_path) as catalog:  # a daemon's change under way: its to finish
        catalog.record_model(ModelRow("efficientnet", SERVING, model_id, "{}", "efficientnet", 1.0))
        catalog.record_model(ModelRow("efficientnet", NEXT, "efficientnet:next", "{}", "efficientnet-n", 2.0))
    astronaut = str(tmp_path / "astronaut.jpg")
    during = cli_here(capsys, "index", "--json", "--no-progress", "--config", str(other), astronaut)
    assert during.returncode == 1 and "a model change from" in during.stderr and "is under way" in during.stderr
    back = cli_here(capsys, "index", "--json", "--no-progress", "--config", str(made), astronaut)
    assert back.returncode == 1 and "the daemon gives the change up at its next start" in back.stderr

    with Catalog(config.catalog_path) as catalog:  # the daemon's recorded settings stay what they are
        catalog.forget_next_model("efficientnet")
        catalog.record_model(ModelRow("efficientnet", SERVING, model_id, '{"daemon": 1}', "efficientnet", 1.0))
    again = cli_here(capsys, "index", "--json", "--no-progress", "--config", str(made), astronaut)
    assert again.returncode == 0, again.stderr
    with Catalog(config.catalog_path) as catalog:
        assert catalog.models("efficientnet")[SERVING].settings == '{"daemon": 1}'
        assert catalog.vector_models("efficientnet") == {model_id: 4}
