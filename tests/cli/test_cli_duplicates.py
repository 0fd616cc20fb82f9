"""``imgsearchd duplicates`` (tiers, keepers), ``duplicates resolve`` and ``duplicates undo``.

Against a real daemon on loopback with real pictures (skimage photos, byte copies, Pillow edits),
on a pseudo-terminal and piped: a dry run touches nothing, ``--yes`` trashes (the home Trash under
a temporary ``XDG_DATA_HOME`` on the same file system) and prints the undo command, ``undo``
brings the files back, and piped without ``--yes`` it refuses (exit 2). The paging, the split
into requests of at most ``MAX_FILES`` files and the views are tested against a scripted client.
"""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import subprocess
import time
from argparse import Namespace
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from PIL import Image, ImageEnhance

from imgsearchd.cli import duplicates as cli_duplicates
from imgsearchd.cli.answers import DuplicateGroup, DuplicateMember, Resolved, ResolvedFile
from imgsearchd.cli.client import ApiFailure
from imgsearchd.cli.duplicate_views import plan_view, resolved_view
from imgsearchd.config import Config

from cli_terminal import PROXY_ENV, on_terminal
from helpers import Live, cli_command, live_server, run_cli, server_config, wait_for, write_config


class Scripted:
    """Stands in for the HTTP client: answers GET /duplicates from pages, POST /duplicates/resolve
    from a function of the body; records every call."""

    def __init__(self, pages: list[dict[str, Any]], resolve: Any = None) -> None:
        self.pages, self.resolve = pages, resolve
        self.calls: list[tuple[str, str, Any]] = []

    def call(self, method: str, path: str, params: Any = None, body: bytes | None = None, *rest: Any) -> Any:
        self.calls.append((method, path, json.loads(body) if body else dict(params or {})))
        if path == "/duplicates":
            return 200, self.pages.pop(0)
        assert path == "/duplicates/resolve" and self.resolve is not None
        return 200, self.resolve(json.loads(body or b"{}"))

    def posted(self) -> list[dict[str, Any]]:
        return [body for method, path, body in self.calls if method == "POST"]


def group(keep: str, *others: str, reason: str = "most pixels: 4x3 (next 2x1)") -> DuplicateGroup:
    members: list[DuplicateMember] = [
        {"image": p, "score": 1.0, "size": 1, "width": 4, "height": 3, "keep": p == keep} for p in (keep, *others)
    ]
    return {
        "kind": "identical",
        "files": len(members),
        "similarity": 1.0,
        "members": members,
        "keep": keep,
        "keep_reason": reason,
    }


def page(groups: list[DuplicateGroup], offset: int, next_offset: int | None, seq: int = 1) -> dict[str, Any]:
    return {
        "groups": groups,
        "total": 9,
        "threshold": 0.9,
        "extractor": "e",
        "offset": offset,
        "next_offset": next_offset,
        "stale": False,
        "seq": seq,
    }


def answer_to(body: dict[str, Any], undo: int = 7) -> Resolved:
    """What the daemon would answer: every other file done (or planned), into the home Trash."""
    state = "planned" if body["dry_run"] else "done"
    files: list[ResolvedFile] = [
        {
            "image": o,
            "keep": g["keep"],
            "state": state,
            "to": f"/home/u/.local/share/Trash/files/{o.rsplit('/', 1)[1]}",
            "reason": None,
        }
        for g in body["groups"]
        for o in g["others"]
    ]
    return {
        "undo": None if body["dry_run"] else undo,
        "action": body["action"],
        "dry_run": body["dry_run"],
        "to": None,
        "done": 0 if body["dry_run"] else len(files),
        "skipped": 0,
        "files": files,
    }


def resolve_args(**given: Any) -> Namespace:
    fields = dict(
        extractor=None,
        threshold=None,
        kind="identical",
        folder=None,
        keep_in=None,
        sort=None,
        action="trash",
        to=None,
        dry_run=False,
        yes=True,
        json=True,
    )
    return Namespace(**{**fields, **given})


def test_groups_go_in_requests_of_at_most_the_limit_and_none_is_lost():
    groups = [{"keep": f"/k{i}", "others": [f"/k{i}/o{j}" for j in range(i + 1)]} for i in range(6)]
    groups.append({"keep": "/big", "others": [f"/big/o{j}" for j in range(11)]})  # larger than a request
    requests = cli_duplicates.batches(groups, 5)  # type: ignore[arg-type]
    assert all(sum(1 + len(g["others"]) for g in batch) <= 5 for batch in requests)
    sent = sorted(o for batch in requests for g in batch for o in g["others"])
    assert sent == sorted(o for g in groups for o in g["others"])
    assert {g["keep"] for batch in requests for g in batch if g["others"][0].startswith("/big/")} == {"/big"}


def test_the_limit_is_the_daemon_s():
    """The CLI splits where the daemon refuses: the same number (the CLI does not import the service)."""
    from imgsearchd.service.tidying import MAX_FILES

    assert cli_duplicates.MAX_FILES == MAX_FILES


def test_every_page_is_read_and_a_recomputation_starts_again(capsys):
    first, second = [group("/a", "/b")], [group("/c", "/d")]
    client = Scripted(
        [page(first, 0, 1), page(second, 1, None, seq=2), page(first, 0, 1, seq=2), page(second, 1, None, seq=2)]
    )
    assert cli_duplicates.all_groups(client, {"kind": "identical"}) == first + second  # type: ignore[arg-type]
    asked = [body["offset"] for _, _, body in client.calls]
    assert asked == [0, 1, 0, 1]  # seq changed between the pages: read again from the first
    changing = Scripted([page(first, 0, 1, seq=n) if n % 2 else page(second, 1, None, seq=n) for n in range(1, 7)])
    assert cli_duplicates.all_groups(changing, {}, tries=3) == first  # type: ignore[arg-type]
    assert "the groups changed 3 times while read: some may be left; run again" in capsys.readouterr().err


def test_several_requests_print_each_undo_id(monkeypatch, capsys):
    groups = [group(f"/k{i}", f"/k{i}/a", f"/k{i}/b") for i in range(3)]
    undo_ids = iter(range(41, 50))
    client = Scripted([page(groups, 0, None)], lambda body: answer_to(body, next(undo_ids)))
    monkeypatch.setattr(cli_duplicates, "client_for", lambda config: client)
    monkeypatch.setattr(cli_duplicates, "MAX_FILES", 6)  # two groups a request
    assert cli_duplicates.resolve_remote(resolve_args(), Config()) == 0
    posted = client.posted()
    assert [len(body["groups"]) for body in posted] == [2, 1] and not any(body["dry_run"] for body in posted)
    out = capsys.readouterr().out
    decoder, at, answers = json.JSONDecoder(), 0, []
    while at < len(out.rstrip()):  # one JSON document a request, in turn
        found, at = decoder.raw_decode(out, at)
        answers.append(found)
        at = len(out) - len(out[at:].lstrip())
    assert [a["undo"] for a in answers] == [41, 42]
    assert "undo: imgsearchd duplicates undo 41\nundo: imgsearchd duplicates undo 42" in resolved_view(answers)


def test_a_refusal_after_a_first_request_still_says_how_to_undo_it(monkeypatch, capsys):
    groups = [group(f"/k{i}", f"/k{i}/a") for i in range(2)]
    answers = iter([answer_to, ApiFailure(403, {"error": "/k1/a is outside the watched folders"})])

    def resolve(body: dict[str, Any]) -> Resolved:
        step = next(answers)
        if isinstance(step, Exception):
            raise step
        return step(body)

    client = Scripted([page(groups, 0, None)], resolve)
    monkeypatch.setattr(cli_duplicates, "client_for", lambda config: client)
    monkeypatch.setattr(cli_duplicates, "MAX_FILES", 2)
    assert cli_duplicates.resolve_remote(resolve_args(), Config()) == 1
    err = capsys.readouterr().err
    assert "undo: imgsearchd duplicates undo 7" in err and "outside the watched folders" in err


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ({"action": "move"}, "--action move needs --to DIR"),
        ({"to": "/x"}, "--to is for --action move"),
        ({"yes": False}, "add --yes"),
    ],
)
def test_options_that_cannot_go_are_refused_before_anything_is_asked(monkeypatch, capsys, given, said):
    client = Scripted([])
    monkeypatch.setattr(cli_duplicates, "client_for", lambda config: client)
    assert cli_duplicates.resolve_remote(resolve_args(**given), Config()) == 2
    assert said in capsys.readouterr().err and client.calls == []


def test_the_plan_names_the_trash_counts_the_keepers_and_groups_the_skipped():
    body = {"groups": [{"keep": "/p/k.jpg", "others": ["/p/a.jpg", "/p/b.jpg"]}], "action": "trash", "dry_run": True}
    planned = answer_to(body)
    planned["files"].append(
        {"image": "/p/c.jpg", "keep": "/p/k.jpg", "state": "skipped", "to": None, "reason": "changed since indexed"}
    )
    lines = plan_view([planned], {"/p/k.jpg": "most pixels: 4x3 (next 2x1)"}, everything=True).splitlines()
    assert lines == [
        "keep /p/k.jpg (most pixels: 4x3 (next 2x1))",
        "  trash /p/a.jpg",
        "  trash /p/b.jpg",
        "2 files go to the Trash (/home/u/.local/share/Trash), 1 kept",
        "skipped 1 file:",
        "  changed since indexed: /p/c.jpg",
        "nothing done (a dry run)",
    ]


def tiered(kind: str, keep: str, *others: str) -> DuplicateGroup:
    return {**group(keep, *others), "kind": kind}


def test_kind_all_is_the_identical_files_and_the_copies_never_the_similar_shots(monkeypatch, capsys):
    groups = [tiered("identical", "/i", "/i2"), tiered("copies", "/c", "/c2"), tiered("similar", "/s", "/s2")]
    client = Scripted([page(groups, 0, None)], answer_to)
    monkeypatch.setattr(cli_duplicates, "client_for", lambda config: client)
    assert cli_duplicates.resolve_remote(resolve_args(kind="all"), Config()) == 0
    [posted] = client.posted()
    assert posted["groups"] == [{"keep": "/i", "others": ["/i2"]}, {"keep": "/c", "others": ["/c2"]}]
    assert client.calls[0][2]["kind"] == "all"


def test_a_plan_of_similar_shots_says_they_are_different_pictures(monkeypatch, capsys):
    groups = [tiered("similar", "/s", "/s2", "/s3"), tiered("similar", "/t", "/t2")]
    client = Scripted([page(groups, 0, None)], answer_to)
    monkeypatch.setattr(cli_duplicates, "client_for", lambda config: client)
    monkeypatch.setattr(cli_duplicates, "output_mode", lambda args, stream=None: "table")
    args = resolve_args(kind="similar", dry_run=True, yes=False, json=False)
    assert cli_duplicates.resolve_remote(args, Config()) == 0
    lines = capsys.readouterr().out.splitlines()
    at = lines.index("3 files go to the Trash (/home/u/.local/share/Trash), 2 kept")
    assert lines[at + 1] == "3 of these are similar shots: different pictures, not copies", lines
    assert [body["dry_run"] for body in client.posted()] == [True]  # a dry run: nothing else sent
    one = answer_to({"groups": [{"keep": "/t", "others": ["/t2"]}], "action": "trash", "dry_run": True})
    assert "1 of these is a similar shot: a different picture, not a copy" in plan_view([one], {}, True, {"/t2"})
    assert "similar shot" not in plan_view([one], {}, True, {"/other"})  # copies' plans carry no warning


def help_of(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *command: str) -> str:
    from imgsearchd.cli.main import main

    monkeypatch.setenv("COLUMNS", "200")  # one option a line: none split by the wrapping
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    return capsys.readouterr().out


def test_the_help_shows_the_action_optional_and_only_the_options_each_reads(monkeypatch, capsys):
    usage = help_of(monkeypatch, capsys, "duplicates").split("\n\n")[0]
    assert usage.rstrip().endswith("[ACTION ...]"), usage  # without one: the groups
    undo = help_of(monkeypatch, capsys, "duplicates", "undo")
    resolve = help_of(monkeypatch, capsys, "duplicates", "resolve")
    for serve_only in ("--data-dir", "--log-level"):
        assert serve_only not in undo and serve_only not in resolve
    assert "--extractor" not in undo and "--extractor" in resolve  # resolve reads that extractor's groups
    assert "--config PATH" in undo and "--config PATH" in resolve
    assert "all (both); similar shots are different pictures, resolved only when named (--kind similar)" in resolve


# -- against a real daemon ------------------------------------------------------------------------


class Daemon:
    """The live daemon, the CLI's settings file, and the folders of the pictures and the Trash."""

    def __init__(self, live: Live, cli_config: Path, root: Path) -> None:
        self.live, self.cli_config, self.root = live, cli_config, root
        self.pictures, self.trash = root / "pictures", root / "xdg" / "Trash"

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, "--config", str(self.cli_config), env=PROXY_ENV, timeout=120)

    def terminal(self, *args: str) -> tuple[int, list[str], str]:
        return on_terminal(*args, "--config", str(self.cli_config))

    def groups(self, kind: str) -> dict[str, Any]:
        """The daemon's answer for ``kind``, once computed since the last change (a stale one is
        from before an action or its undo)."""

        def ready() -> Any:
            status, body = self.live.get("/duplicates", kind=kind, limit=1000)
            assert status in (200, 202), body
            return body if status == 200 and not body["stale"] else None

        return wait_for(ready, 120, f"the {kind} groups")

    def identical_others(self) -> list[Path]:
        """The byte copies of chelsea.jpg the identical group does not keep (as the daemon chose)."""
        [found] = [g for g in self.groups("identical")["groups"] if g["keep"].endswith("chelsea.jpg")]
        return [Path(m["image"]) for m in found["members"] if m["image"] != found["keep"]]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, photos: dict[str, Image.Image]) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("cli-duplicates")
    pictures = root / "pictures"
    (pictures / "backup").mkdir(parents=True)
    photos["chelsea"].save(pictures / "chelsea.jpg", quality=92)
    shutil.copy(pictures / "chelsea.jpg", pictures / "backup" / "chelsea.jpg")  # the same bytes
    shutil.copy(pictures / "chelsea.jpg", pictures / "backup" / "chelsea-2.jpg")
    coffee = photos["coffee"]
    coffee.save(pictures / "coffee.jpg", quality=95)
    coffee.resize((coffee.width * 3 // 4, coffee.height * 3 // 4)).save(pictures / "coffee-small.jpg", quality=70)
    brighter = ImageEnhance.Brightness(coffee).enhance(1.15)  # an edited copy: brighter, re-encoded
    brighter.save(pictures / "backup" / "coffee-bright.jpg", quality=80)
    for name in ("astronaut", "rocket", "hubble"):
        photos[name].convert("RGB").save(pictures / f"{name}.jpg")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("XDG_DATA_HOME", str(root / "xdg"))  # the home Trash, on the test folder's file system
        config = server_config(root, server={"allowed_roots": [str(root)]})
        with live_server(config) as live:
            for path in sorted(pictures.rglob("*.jpg")):
                status, body = live.get("/add", image=str(path))
                assert status == 200 and body["status"] == "indexed", body
            cli_config = write_config(root / "cli.toml", {"server": {"port": int(live.base.rsplit(":", 1)[1])}})
            yield Daemon(live, cli_config, root)


def test_the_groups_show_their_tier_and_keeper_on_a_terminal(daemon):
    answer = daemon.groups("all")
    code, lines, err = daemon.terminal("duplicates", "--limit", "1000")
    assert code == 0, err
    tiers, cuts = answer["tiers"], answer["thresholds"]
    assert tiers["identical"] >= 1, answer  # chelsea.jpg and its two byte copies
    copies = f"{tiers['copies']} copies (cosine {cuts['copies']:.2f}, framing {cuts['framing']:.2f})"
    assert (
        f"tiers: {tiers['identical']} identical, {copies}, {tiers['similar']} similar (cosine {cuts['similar']:.2f})"
        in lines
    )
    for group in answer["groups"]:
        head = f"{group['kind']} ({group['files']} files, similarity {group['similarity']:.3f})"
        assert f"{head}: keep * ({group['keep_reason']})" in lines, (head, lines)
        at = lines.index(f"{head}: keep * ({group['keep_reason']})")
        assert lines[at + 1].startswith(f"* {group['keep']}  "), lines[at : at + 3]  # the keeper first, marked
        assert not any(line.startswith("* ") for line in lines[at + 2 : at + group["files"] + 1])
    assert lines[-1].startswith(f"{answer['total']} groups at threshold")


def test_piped_without_yes_it_refuses_and_touches_nothing(daemon):
    others = daemon.identical_others()
    refused = daemon.cli("duplicates", "resolve", "--kind", "identical")
    assert refused.returncode == 2 and "add --yes" in refused.stderr and refused.stdout == "", refused
    assert all(path.exists() for path in others) and not daemon.trash.exists()


def test_a_dry_run_shows_the_plan_and_touches_nothing(daemon):
    others = daemon.identical_others()
    piped = daemon.cli("duplicates", "resolve", "--kind", "identical", "--dry-run")
    assert piped.returncode == 0, piped.stderr
    plan = json.loads(piped.stdout)
    assert plan["dry_run"] is True and plan["undo"] is None and plan["done"] == 0
    mine = [f for f in plan["files"] if Path(f["image"]) in others]
    assert {f["state"] for f in mine} == {"planned"} and len(mine) == len(others) == 2, plan
    assert all(f["to"].startswith(str(daemon.trash / "files") + "/") for f in mine)
    code, lines, err = daemon.terminal("duplicates", "resolve", "--kind", "identical", "--dry-run")
    assert code == 0, err
    planned = sum(f["state"] == "planned" for f in plan["files"])
    kept = len({f["keep"] for f in plan["files"] if f["state"] == "planned"})
    assert f"{planned} files go to the Trash ({daemon.trash}), {kept} kept" in lines, lines
    assert lines[-1] == "nothing done (a dry run)"
    assert all(path.exists() for path in others) and not (daemon.trash / "files").exists()


def test_keep_in_a_folder_makes_its_file_the_keeper(daemon):
    backup = daemon.pictures / "backup"
    piped = daemon.cli("duplicates", "resolve", "--kind", "identical", "--dry-run", "--keep-in", str(backup))
    assert piped.returncode == 0, piped.stderr
    chelsea = [f for f in json.loads(piped.stdout)["files"] if Path(f["image"]).name.startswith("chelsea")]
    assert len(chelsea) == 2 and {Path(f["keep"]).parent for f in chelsea} == {backup}, chelsea


def test_yes_trashes_prints_the_undo_command_and_undo_brings_them_back(daemon):
    others, keep = daemon.identical_others(), daemon.pictures / "chelsea.jpg"
    code, lines, err = daemon.terminal("duplicates", "resolve", "--kind", "identical", "--yes")
    assert code == 0, err
    assert f"2 files moved to the Trash ({daemon.trash}), 1 kept" in lines, lines
    assert lines[-1].startswith("undo: imgsearchd duplicates undo "), lines
    undo_id = lines[-1].rsplit(" ", 1)[1]
    assert keep.exists() and not any(path.exists() for path in others)
    trashed = sorted((daemon.trash / "files").iterdir())
    infos = sorted((daemon.trash / "info").glob("*.trashinfo"))
    assert {p.name for p in trashed} >= {p.name for p in others} and len(infos) == len(trashed)
    _, found = daemon.live.get("/search", image=str(keep), limit=20)
    assert not {str(p) for p in others} & {r["image"] for r in found["results"]}  # the index followed
    undone = daemon.cli("duplicates", "undo")  # no ID: the newest resolution not undone
    assert undone.returncode == 0, undone.stderr
    answer = json.loads(undone.stdout)
    assert str(answer["undo"]) == undo_id and answer["restored"] >= 2 and answer["skipped"] == 0, answer
    assert all(path.exists() for path in others) and not any((daemon.trash / "files").iterdir())
    _, found = daemon.live.get("/search", image=str(keep), limit=20)
    assert {str(p) for p in others} <= {r["image"] for r in found["results"]}
    code, lines, err = daemon.terminal("duplicates", "undo", undo_id)  # undone already: 409, one line
    assert code == 1 and lines == [] and err.count("\n") == 1 and "(HTTP 409)" in err, err


def test_an_unknown_undo_id_is_one_line_and_exit_1(daemon):
    code, lines, err = daemon.terminal("duplicates", "undo", "987654")
    assert code == 1 and lines == [] and err.count("\n") == 1 and "(HTTP 404)" in err, err
    piped = daemon.cli("duplicates", "undo", "987654")
    assert piped.returncode == 1 and json.loads(piped.stderr)["error"], piped.stderr


def test_a_person_is_asked_first_and_no_does_nothing(daemon):
    others = daemon.identical_others()
    moved = daemon.root / "moved"
    args = ("duplicates", "resolve", "--kind", "identical", "--action", "move", "--to", str(moved))
    code, said, err = answering("n", *args, "--config", str(daemon.cli_config))
    assert code == 1 and "go ahead? [y/N]" in said and said.rstrip().endswith("nothing done"), (said, err)
    assert f"{len(others)} files go to {moved}" in said or f"files go to {moved}" in said, said
    assert all(path.exists() for path in others) and not moved.exists()
    code, said, err = answering("y", *args, "--config", str(daemon.cli_config))
    assert code == 0, (said, err)
    assert not any(path.exists() for path in others)
    arrived = {p.name for p in moved.rglob("*.jpg")}
    assert {p.name for p in others} <= arrived, arrived
    undo_id = said.rstrip().splitlines()[-1].rsplit(" ", 1)[1]
    back = daemon.cli("duplicates", "undo", undo_id)
    assert back.returncode == 0 and all(path.exists() for path in others), back.stderr


def answering(answer: str, *args: str) -> tuple[int, str, str]:
    """``imgsearchd ARGS`` with a pseudo-terminal as stdin and stdout, ``answer`` typed when it asks:
    (exit status, what the terminal showed, stderr)."""
    leader, follower = pty.openpty()
    env = {**os.environ, **PROXY_ENV}
    env.pop("IMGSEARCHD_CONFIG", None)
    proc = subprocess.Popen(cli_command(*args), stdin=follower, stdout=follower, stderr=subprocess.PIPE, env=env)
    os.close(follower)
    shown, typed, deadline = b"", False, time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 1.0)
        if not ready:
            continue
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the process closed the terminal: the end
            break
        if not chunk:
            break
        shown += chunk
        if not typed and b"[y/N] " in shown:
            os.write(leader, answer.encode() + b"\n")
            typed = True
    os.close(leader)
    assert proc.stderr is not None
    err = proc.stderr.read().decode()
    return proc.wait(timeout=30), shown.decode().replace("\r\n", "\n"), err
