"""With CLIP configured and unable to load, the CLI says which model runs instead, why, and what
to do, in the daemon's words (``/stats`` ``fallback.advice``): ``stats`` on a terminal, and a text
search (a usage error, exit 2), against a real daemon whose CLIP checkpoint is missing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from imgsearchd.cli.views import stats_view

from cli_terminal import PROXY_ENV, on_terminal
from helpers import EFFICIENTNET_FP32, live_server, run_cli, server_config, write_config


@pytest.fixture(scope="module")
def fallen_back(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path]]:
    root = tmp_path_factory.mktemp("cli-fallback")
    config = server_config(
        root,
        index={"extractors": ["clip"], "fallback_extractor": "efficientnet"},
        **{"extractors.clip": {"pretrained": str(root / "missing.safetensors")}},
        **{"extractors.efficientnet": dict(EFFICIENTNET_FP32)},
    )
    with live_server(config) as live:
        port = int(live.base.rsplit(":", 1)[1])
        yield live, write_config(root / "cli.toml", {"server": {"port": port}})


def test_stats_on_a_terminal_gives_the_daemon_s_advice(fallen_back):
    live, cli_config = fallen_back
    status, stats = live.get("/stats")
    assert status == 200 and stats["fallback"]["configured"] == "clip", stats
    code, lines, err = on_terminal("stats", "--config", str(cli_config))
    assert code == 0, err
    assert "fallback    clip is not running; efficientnet runs instead" in lines
    shown = " ".join(line[12:].strip() for line in lines if line.startswith(" " * 12))
    said = stats["fallback"].get("advice") or [stats["fallback"]["reason"]]
    for sentence in said:  # every sentence, wrapped to the terminal but word for word
        assert " ".join(sentence.split()) in shown, (sentence, lines)
    assert "use clip" not in "\n".join(lines)


def test_a_text_search_says_why_there_is_no_text_search_and_what_to_do(fallen_back):
    live, cli_config = fallen_back
    result = run_cli("search", "--text", "a cat", "--config", str(cli_config), env=PROXY_ENV, timeout=120)
    assert result.returncode == 2, result.stderr
    first, *advice = result.stderr.splitlines()
    assert first.startswith("imgsearchd: ") and "text encoder" in first
    stats = live.get("/stats")[1]
    expected = stats["fallback"].get("advice") or []
    assert [line.strip() for line in advice][: len(expected)] == expected
    assert advice, result.stderr  # at least the reason, from an older daemon too


def test_the_view_falls_back_to_the_reason_without_advice():
    """A daemon without ``advice`` (older): its reason is shown; without a fallback, no line."""
    stats: Any = {"version": "1", "ready": True, "images": 3, "extractors": {}, "watch": []}
    assert "fallback" not in stats_view(stats)
    stats["fallback"] = {"configured": "clip", "running": "efficientnet", "reason": "weights missing"}
    assert [line for line in stats_view(stats).splitlines() if "weights missing" in line] == [
        " " * 12 + "weights missing"
    ]


def test_stats_lists_a_few_folders_and_says_how_many_more():
    stats: Any = {"version": "1", "ready": True, "images": 0, "extractors": {}}
    stats["watch"] = [{"folder": f"/p/{i}", "state": "watching"} for i in range(12)]
    lines = stats_view(stats).splitlines()
    assert sum(line.startswith("folder ") for line in lines) == 8
    assert " " * 12 + "and 4 more (imgsearchd folders)" in lines
