"""The engine in the API: a real daemon running EfficientNet on OpenVINO shows it in /stats and answers searches."""

from __future__ import annotations

from pathlib import Path

import pytest

from openapi_checker import OpenApiChecker

from helpers import EFFICIENTNET_FP32, live_server, server_config

NAMES = ("chelsea", "coffee", "motorcycle_left", "motorcycle_right")


@pytest.fixture(scope="module")
def shared_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The models folder the engine tests share (one per session and xdist worker): each model converts once."""
    return tmp_path_factory.getbasetemp() / "openvino-models"


def test_stats_show_the_openvino_engine_and_search_answers(tmp_path, photos, shared_models):
    """engine openvino, fp32: /stats says openvino and lists what was tried; /search finds the pair."""
    paths = {}
    for name in NAMES:
        paths[name] = tmp_path / "photos" / f"{name}.jpg"
        paths[name].parent.mkdir(exist_ok=True)
        photos[name].convert("RGB").save(paths[name], quality=90)
    shared_models.mkdir(parents=True, exist_ok=True)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "models").symlink_to(shared_models)  # the daemon's models folder: data_dir/models
    openvino = {**EFFICIENTNET_FP32, "engine": "openvino"}
    config = server_config(tmp_path, server={"allowed_roots": [str(tmp_path)]}, **{"extractors.efficientnet": openvino})
    with live_server(config) as live:
        assert live.service.loaded.default.openvino is not None
        for path in paths.values():
            status, body = live.get("/add", image=str(path))
            assert status == 200, body
        status, body = live.get("/search", image=str(paths["motorcycle_left"]), limit=2)
        assert status == 200, body
        assert [r["image"] for r in body["results"]] == [str(paths["motorcycle_left"]), str(paths["motorcycle_right"])]
        status, stats = live.get("/stats")
    assert status == 200
    OpenApiChecker().check("GET", "/stats", status, stats)
    chosen = stats["extractors"]["efficientnet"]["precision"]
    assert (chosen["engine"], chosen["used"], chosen["asked"]) == ("openvino", "fp32", "fp32")
    assert isinstance(chosen["tried"], list)
    assert [(t["engine"], t["precision"], t["outcome"]) for t in chosen["tried"]] == [("openvino", "fp32", "kept")]
    assert chosen["tried"][0]["min_cosine"] >= 0.9999
    assert any(shared_models.glob("efficientnet-image-fp32-*/model.xml"))
