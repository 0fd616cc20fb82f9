"""The CLI and the match levels and model changes of issue 30, against real daemons (EfficientNet
with its real ImageNet weights, real photos): the ``MATCH`` column on a real terminal, ``--min-match``
sent to the daemon and honoured by ``--local``, a value that is no level refused (exit 2, the
levels named), JSON carrying ``match`` as the daemon gives it, completion of ``--min-match`` in
bash, zsh and fish, and ``stats``' change line during a real model change."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from imgsearchd.cli.answers import ModelChange
from imgsearchd.cli.arguments import MATCH_LEVELS
from imgsearchd.cli.completion import script_for
from imgsearchd.cli.main import build_parser
from imgsearchd.cli.views import change_line
from imgsearchd.search.match_levels import LEVELS
from match_set import UNRELATED_KINDS, unrelated
from page_browser import wait_indexed

from cli_terminal import PROXY_ENV, on_terminal
from duplicate_set import SIMILAR_KINDS, scenes, second_shot, window
from helpers import Live, cli_here, live_server, run_cli, server_config, wait_for, write_config

CLOSE = ("same", "similar")
HERE = Path(__file__).parent


def make_library(folder: Path, shots: int, unrelated_each: int) -> int:
    """Real photos cut into scenes: each scene's original and ``shots`` second shots (its similar
    pictures), and unrelated pictures (drawings, text, charts...). How many were written."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(31)
    count = 0
    for n, scene in enumerate(scenes(p for p in _photos())):
        window(scene).save(folder / f"scene{n:02}.jpg", quality=90)
        for i, kind in enumerate(SIMILAR_KINDS[:shots]):
            second_shot(scene, kind, rng)[0].save(folder / f"scene{n:02}-shot{i}.jpg", quality=90)
        count += 1 + shots
    for kind in UNRELATED_KINDS:
        for i in range(unrelated_each):
            unrelated(kind, rng).convert("RGB").save(folder / f"{kind}{i}.png")
            count += 1
    return count


def _photos() -> Iterator[Any]:
    from helpers import skimage_photos

    yield from skimage_photos().values()


class Daemon:
    def __init__(self, live: Live, cli_config: Path, photos: Path, count: int) -> None:
        self.live, self.cli_config, self.photos, self.count = live, cli_config, photos, count

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, "--config", str(self.cli_config), env=PROXY_ENV, timeout=120)

    def results(self, query: Path, **params: str) -> list[dict[str, Any]]:
        status, body = self.live.get("/search", image=str(query), **params)
        assert status == 200, body
        results: list[dict[str, Any]] = body["results"]
        return results


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("cli-levels")
    count = make_library(root / "photos", shots=3, unrelated_each=2)
    config = server_config(root, watch={"directories": [str(root / "photos")]})
    with live_server(config) as live:
        wait_indexed(live, count)
        port = int(live.base.rsplit(":", 1)[1])
        cli_config = write_config(root / "cli.toml", {"server": {"port": port}})
        yield Daemon(live, cli_config, root / "photos", count)


def test_the_cli_knows_the_levels_the_search_gives():
    assert MATCH_LEVELS == LEVELS


def test_search_on_a_terminal_has_a_match_column(daemon):
    query = daemon.photos / "scene00.jpg"
    code, lines, err = on_terminal("search", str(query), "--limit", "8", "--config", str(daemon.cli_config))
    assert code == 0, err
    assert lines[0].split() == ["SCORE", "MATCH", "SIZE", "DATE", "PATH"]
    rows = [line.split() for line in lines[1:]]
    expected = daemon.results(query, limit="8")
    assert [(row[1], row[-1]) for row in rows] == [(r["match"], r["image"]) for r in expected]
    assert rows[0][1] == "same" and rows[0][-1] == str(query)
    assert {row[1] for row in rows} - set(CLOSE), "the library gives weaker results too"


def test_min_match_is_sent_and_the_json_carries_match_as_given(daemon):
    query = daemon.photos / "scene01.jpg"
    everything = daemon.results(query, limit="20")
    close = daemon.results(query, limit="20", min_match="similar")
    assert close == [r for r in everything if r["match"] in CLOSE] and len(close) < len(everything)
    piped = daemon.cli("search", str(query), "--limit", "20", "--min-match", "similar")
    assert piped.returncode == 0, piped.stderr
    results = json.loads(piped.stdout)["results"]
    assert [(r["image"], r["match"]) for r in results] == [(r["image"], r["match"]) for r in close]
    same = daemon.cli("search", str(query), "--limit", "20", "--min-match", "same", "--paths")
    assert same.stdout.splitlines() == [r["image"] for r in everything if r["match"] == "same"]
    # on a terminal: the kept ones, and how many of the page were left out (the answer's ``weaker``)
    args = ("search", str(query), "--limit", "20", "--min-match", "similar", "--config", str(daemon.cli_config))
    code, lines, err = on_terminal(*args)
    assert code == 0 and [line.split()[1] for line in lines[1:-1]] == [r["match"] for r in close], (lines, err)
    assert lines[-1] == f"({len(everything) - len(close)} weaker results left out by --min-match)"


def test_a_value_that_is_no_level_is_a_usage_error_naming_the_levels(capsys):
    result = cli_here(capsys, "search", "x.jpg", "--min-match", "close")
    assert result.returncode == 2 and not result.stdout, result
    assert "--min-match" in result.stderr and all(f"'{level}'" in result.stderr for level in LEVELS), result.stderr


def test_search_local_honours_min_match(daemon, tmp_path, capsys):
    """``--local`` on a data folder of its own (``index`` first): the same levels, filtered the same way."""
    config = server_config(tmp_path)
    indexed = cli_here(capsys, "index", str(daemon.photos), "--no-progress", "--config", str(config))
    assert indexed.returncode == 0, indexed.stderr
    query = str(daemon.photos / "scene02.jpg")
    args = ("search", query, "--local", "--limit", "20", "--json", "--config", str(config))
    everything = json.loads(cli_here(capsys, *args).stdout)["results"]
    kept = cli_here(capsys, *args, "--min-match", "similar")
    assert kept.returncode == 0, kept.stderr
    close = json.loads(kept.stdout)["results"]
    assert everything[0]["image"] == query and everything[0]["match"] == "same"
    assert [r["image"] for r in close] == [r["image"] for r in everything if r["match"] in CLOSE]
    assert len(close) < len(everything)


# -- completion ---------------------------------------------------------------------------------


def _shell(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        pytest.skip(f"no {name} here")
    return found


TYPED = ("imgsearchd search --min-match ", "imgsearchd search --min-m")
OFFERED = (sorted(LEVELS), ["--min-match"])


def test_bash_completes_min_match_and_its_levels(tmp_path):
    script = tmp_path / "imgsearchd.bash"
    script.write_text(script_for("bash", build_parser()))
    probes = [
        f"COMP_WORDS=({' '.join(repr(w) for w in typed.split(' '))}); COMP_CWORD={len(typed.split(' ')) - 1}; "
        '_imgsearchd; echo "${COMPREPLY[@]}"'
        for typed in TYPED
    ]
    done = subprocess.run(
        [_shell("bash"), "-c", f"source {script}\n" + "\n".join(probes)], capture_output=True, text=True, timeout=30
    )
    assert tuple(sorted(line.split()) for line in done.stdout.splitlines()) == OFFERED, done.stderr


def test_zsh_completes_min_match_and_its_levels(tmp_path):
    script = tmp_path / "imgsearchd.zsh"
    script.write_text(script_for("zsh", build_parser()))
    done = subprocess.run(
        [_shell("zsh"), "-f", str(HERE / "zsh_complete.zsh"), str(script), *TYPED],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "TMPDIR": str(tmp_path), "TERM": "dumb"},
    )
    offered = tuple(sorted(block.split()) for block in done.stdout.split("--\n")[: len(TYPED)])
    assert offered == OFFERED, (done.stdout, done.stderr)


def test_fish_completes_min_match_and_its_levels(tmp_path):
    script = tmp_path / "imgsearchd.fish"
    script.write_text(script_for("fish", build_parser()))
    probes = "; ".join(f"complete -C {typed!r}; echo ---" for typed in TYPED)
    done = subprocess.run(
        [_shell("fish"), "--no-config", "-c", f"source {script}; {probes}"], capture_output=True, text=True, timeout=30
    )
    offered = tuple(
        sorted(line.split("\t")[0] for line in block.strip().splitlines())
        for block in done.stdout.split("---\n")[: len(TYPED)]
    )
    assert offered == OFFERED, done.stderr


# -- stats during a model change ----------------------------------------------------------------


@pytest.fixture(scope="module")
def changing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Live, Path]]:
    """A library indexed with ``preprocess = "squash"``, then the daemon again with ``letterbox``
    (a new model id): the old model serves while the new one re-embeds, paced to last a while."""
    root = tmp_path_factory.mktemp("cli-change")
    count = make_library(root / "photos", shots=1, unrelated_each=1)
    watch = {"directories": [str(root / "photos")]}
    efficientnet = {"device": "cpu", "batch_size": 4, "precision": "fp32", "engine": "torch"}
    before = server_config(root, watch=watch, **{"extractors.efficientnet": {**efficientnet, "preprocess": "squash"}})
    with live_server(before) as live:
        wait_indexed(live, count)
    after = server_config(root, watch=watch, **{"extractors.efficientnet": {**efficientnet, "preprocess": "letterbox"}})
    with live_server(after, load=False) as live:
        live.service.change_overrides = {"pace": 1.5}  # seconds between batches of 4
        live.service.load()
        port = int(live.base.rsplit(":", 1)[1])
        yield live, write_config(root / "cli.toml", {"server": {"port": port}})


def change_of(live: Live) -> dict[str, Any] | None:
    status, stats = live.get("/stats")
    assert status == 200, stats
    change: dict[str, Any] | None = stats["extractors"]["efficientnet"].get("change")
    return change


def test_stats_shows_the_model_change_as_stats_gives_it(changing):
    live, cli_config = changing
    first = wait_for(lambda: change_of(live), 60, "a model change in /stats")
    assert first is not None
    code, lines, err = on_terminal("stats", "--config", str(cli_config))
    last = change_of(live)
    assert code == 0 and last is not None, err
    said = [line for line in lines if line.startswith("change ")]
    assert len(said) == 1, lines
    found = re.fullmatch(
        r"change\s+efficientnet: (\S+) -> (\S+), (\d+)/(\d+) different pictures \((\d+)%\)(.*)", said[0]
    )
    assert found, said[0]
    old, new, done, total = found.group(1), found.group(2), int(found.group(3)), int(found.group(4))
    assert (old, new, total) == (last["from"], last["to"], last["total"]) and old != new
    assert first["done"] <= done <= last["done"], (first, done, last)


def test_a_failed_change_says_why_and_that_the_old_model_serves():
    """The line for a failed change, from a change as ``/stats`` describes one (api/models/stats.py)."""
    failed: ModelChange = {"from": "old", "to": "new", "state": "failed", "done": 0, "total": 40, "error": "no weights"}
    assert change_line("clip", failed) == "clip: old -> new failed: no weights; old goes on serving"
    # the configured model did not load: its id is not known (the API's null; answers.ModelChange says str)
    unloaded = cast(ModelChange, {**failed, "to": None})
    assert change_line("clip", unloaded) == "clip: old -> the configured model failed: no weights; old goes on serving"
    going: ModelChange = {"from": "a", "to": "b", "state": "embedding", "done": 10, "total": 40, "rate": 12.5}
    going["eta_seconds"] = 2.4
    assert (
        change_line("efficientnet", going) == "efficientnet: a -> b, 10/40 different pictures (25%), 12.5/s, 2.4 s left"
    )
