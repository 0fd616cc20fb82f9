"""An honest fallback (issue 28): a real daemon whose CLIP cannot load (no network, an empty
Hugging Face cache) runs EfficientNet and says so everywhere: /health (degraded; the status alone
without the token), /stats (what to fetch, its size and address, where to put it), /metrics,
the log, and a text search's refusal."""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from imgsearchd.extractors import clip as clip_module

from helpers import EFFICIENTNET_FP32, Live, live_server, server_config

TOKEN = "health-token-28"
DEFAULT_CLIP_FILE = "open_clip_model.safetensors"
DEFAULT_CLIP_URL = (
    "https://huggingface.co/laion/CLIP-ViT-B-32-laion2B-s34B-b79K/resolve/main/open_clip_model.safetensors"
)


@pytest.fixture(scope="module")
def fallen_back(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Live, Path, list[logging.LogRecord]]]:
    """The daemon as a new offline user gets it: CLIP (the default tag) configured, EfficientNet
    as the fallback, a token; CLIP's weights neither cached nor downloadable."""
    tmp = tmp_path_factory.mktemp("fallback")
    config = server_config(
        tmp,
        server={"token": TOKEN},
        index={"extractors": ["clip"], "fallback_extractor": "efficientnet"},
        **{"extractors.clip": {"device": "cpu"}, "extractors.efficientnet": dict(EFFICIENTNET_FP32)},
    )
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign,assignment]
    logger = logging.getLogger("imgsearchd.extractors")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(clip_module, "host_reachable", lambda host, port=443, timeout=3.0: False)
        patch.setenv("HF_HUB_CACHE", str(tmp / "hf"))
        patch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp / "hf"))
        logger.addHandler(handler)
        try:
            with live_server(config) as live:
                yield live, config, records
        finally:
            logger.removeHandler(handler)


def get(live: Live, path: str, token: str | None = TOKEN, **params: Any) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {"Authorization": ""}
    status, body, _ = live.request("GET", path, params, headers=headers)
    return status, body


def test_health_says_degraded_with_the_reason_and_only_the_status_without_the_token(fallen_back):
    live, _, _ = fallen_back
    status, body = get(live, "/health")
    assert status == 200 and body["status"] == "degraded", body
    assert body["fallback"]["configured"] == "clip" and body["fallback"]["running"] == "efficientnet"
    assert "cannot be reached" in body["fallback"]["reason"] and "\n" not in body["fallback"]["reason"]
    # a monitor without the token: answered, the status alone
    status, body = get(live, "/health", token=None)
    assert (status, body) == (200, {"status": "degraded"})
    # a wrong token is refused (and counted), not treated as none
    status, body = get(live, "/health", token="not-it")
    assert status == 401, body


def test_stats_carry_what_to_fetch_and_where_to_put_it(fallen_back):
    live, config, _ = fallen_back
    status, stats = get(live, "/stats")
    assert status == 200 and stats["active_extractor"] == "efficientnet"
    fallback = stats["fallback"]
    assert fallback["model"] == "ViT-B-32" and fallback["weights"] == "laion2b_s34b_b79k"
    assert fallback["fetch"] == {
        "file": DEFAULT_CLIP_FILE,
        "bytes": 605_143_316,
        "size": "605.1 MB",
        "url": DEFAULT_CLIP_URL,
        "repo": "laion/CLIP-ViT-B-32-laion2B-s34B-b79K",
    }
    put_in = fallback["put_in"]
    assert put_in["setting"] == "extractors.clip.pretrained" and put_in["value"].endswith(DEFAULT_CLIP_FILE)
    assert put_in["cache"] == str(config.parent / "hf")  # the daemon user's Hugging Face cache, as it reads it
    assert put_in["command"] == f"hf download laion/CLIP-ViT-B-32-laion2B-s34B-b79K {DEFAULT_CLIP_FILE}"
    assert fallback["settings_file"] == str(config)
    assert fallback["keep_fallback"] == {"setting": "index.extractors", "value": ["efficientnet"]}
    assert "watched folders" in fallback["reembed"]
    advice = "\n".join(fallback["advice"])
    for needed in (
        DEFAULT_CLIP_URL,
        "605.1 MB",
        'extractors.clip.pretrained = "/path/to/',
        'index.extractors = ["efficientnet"]',
    ):
        assert needed in advice, (needed, advice)


def test_the_log_says_it_once_with_the_same_advice(fallen_back):
    live, _, records = fallen_back
    warnings = [r.getMessage() for r in records if r.levelno == logging.WARNING and "FALLING BACK" in r.getMessage()]
    assert len(warnings) == 1, warnings
    _, stats = get(live, "/stats")
    for line in stats["fallback"]["advice"]:
        assert line in warnings[0]


def test_metrics_export_the_fallback_and_the_degraded_health(fallen_back):
    live, _, _ = fallen_back
    req = urllib.request.Request(f"{live.base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    with urllib.request.urlopen(req, timeout=30) as response:
        text = response.read().decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    assert samples[("imgsearchd_extractor_fallback", (("configured", "clip"), ("running", "efficientnet")))] == 1
    assert samples[("imgsearchd_health_degraded", ())] == 1


def test_a_text_search_says_clip_could_not_load_not_use_clip(fallen_back):
    live, _, _ = fallen_back
    status, body = get(live, "/search", text="a cat")
    assert status == 400, body
    assert "could not load" in body["error"] and "use clip" not in body["error"], body


def test_while_starting_the_status_alone_without_the_token(tmp_path):
    config = server_config(tmp_path, server={"token": TOKEN})
    with live_server(config, load=False) as live:
        status, body = get(live, "/health", token=None)
        assert (status, body) == (503, {"status": "starting"})
        status, body = get(live, "/health")
        assert status == 503 and body["status"] == "starting" and body["phase"], body
