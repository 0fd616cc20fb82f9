"""GET /duplicates' tiers on real pictures through a real daemon (EfficientNet-Lite0, real weights):
a byte copy is identical, an edited copy is a copy, a shifted second shot is similar, an unrelated
picture is nowhere; each group suggests a keeper among its members, and says why."""

from __future__ import annotations

import io
import json
import shutil
import sqlite3
import sys
import time

import pytest
from PIL import Image, ImageEnhance

from imgsearchd.search.framing import FRAMING_COPY
from openapi_checker import OpenApiChecker

from helpers import live_server, server_config, wait_for, write_config


def _jpeg(picture: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    picture.convert("RGB").save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


@pytest.fixture(scope="module")
def server(tmp_path_factory, photos):
    root = tmp_path_factory.mktemp("tiers")
    folder = root / "photos"
    (folder / "backup").mkdir(parents=True)
    (folder / "edits").mkdir()
    (root / "other").mkdir()
    coffee = photos["coffee"].convert("RGB")
    coffee.save(folder / "coffee.jpg", quality=90)
    shutil.copy(folder / "coffee.jpg", folder / "backup" / "coffee.jpg")  # the same bytes
    w, h = coffee.size  # resized to 2/3, 10% brighter, JPEG q75: cosine 0.958, framing 0.998 (measured)
    edited = ImageEnhance.Brightness(coffee.resize((w * 2 // 3, h * 2 // 3))).enhance(1.1)
    _jpeg(edited, 75).save(folder / "edits" / "coffee-small.jpg", quality=95)
    cat = photos["chelsea"].convert("RGB")
    width, height = cat.size  # two windows of one scene, 15% apart: cosine 0.964, framing 0.02
    cat.crop((0, 0, int(width * 0.85), height)).save(folder / "chelsea-left.jpg", quality=90)
    cat.crop((int(width * 0.15), 0, width, height)).save(folder / "chelsea-right.jpg", quality=90)
    photos["rocket"].convert("RGB").save(folder / "rocket.jpg", quality=90)
    with live_server(server_config(root, server={"allowed_roots": [str(root)]})) as live:
        status, job = live.get("/add", image=str(folder))
        assert status == 202
        live.wait_job(job["job"])
        live.root = folder
        yield live


def _ready(server, **params):
    def answered():
        status, body = server.get("/duplicates", **params)
        assert status in (200, 202), body
        return body if status == 200 and not body["stale"] else None

    return wait_for(answered, 120, "the duplicates")


def _paths(group) -> set[str]:
    return {m["image"] for m in group["members"]}


def test_the_first_call_computes_then_pages_come_from_the_cache(server) -> None:
    openapi = OpenApiChecker()
    status, body = server.get("/duplicates")  # the first call starts the join and answers at once
    openapi.check("GET", "/duplicates", status, body)
    assert status == 202 and body["state"] == "computing"
    assert body["computing"]["phase"] in ("queued", "reading", "joining", "checking")
    body = _ready(server)
    openapi.check("GET", "/duplicates", 200, body)
    t0 = time.monotonic()
    status, page = server.get("/duplicates", limit=1)
    assert status == 200 and time.monotonic() - t0 < 1.0 and page["next_offset"] == 1
    assert page["groups"] == body["groups"][:1]
    status, page = server.get("/duplicates", limit=2, offset=1)
    assert status == 200 and page["groups"] == body["groups"][1:] and page["next_offset"] is None
    status, page = server.get("/duplicates", folder=str(server.root.parent / "other"))
    assert status == 200 and page["total"] == 0 and page["tiers"] == {"identical": 0, "copies": 0, "similar": 0}
    status, stats = server.get("/stats")
    openapi.check("GET", "/stats", status, stats)
    assert stats["duplicates"]["cached"]["efficientnet"]["current"] is True
    assert {("GET", "/duplicates", "200"), ("GET", "/duplicates", "202")} <= openapi.seen


def test_each_picture_in_its_closest_tier_once(server) -> None:
    folder = server.root
    body = _ready(server)
    OpenApiChecker().check("GET", "/duplicates", 200, body)
    by_kind = {g["kind"]: g for g in body["groups"]}
    assert sorted(by_kind) == ["copies", "identical", "similar"] and body["total"] == 3
    assert body["tiers"] == {"identical": 1, "copies": 1, "similar": 1}
    assert body["thresholds"]["framing"] == FRAMING_COPY
    assert body["threshold"] == body["thresholds"]["similar"]
    coffee, backup = str(folder / "coffee.jpg"), str(folder / "backup" / "coffee.jpg")
    assert _paths(by_kind["identical"]) == {coffee, backup}
    # the identical pair appears once: the copies group shows its content by the file it keeps
    assert _paths(by_kind["copies"]) == {coffee, str(folder / "edits" / "coffee-small.jpg")}
    assert _paths(by_kind["similar"]) == {str(folder / "chelsea-left.jpg"), str(folder / "chelsea-right.jpg")}
    every = [m["image"] for g in body["groups"] for m in g["members"]]
    assert str(folder / "rocket.jpg") not in every and every.count(backup) == 1
    copies = {m["image"]: m for m in by_kind["copies"]["members"]}
    assert copies[coffee]["same_bytes"] == 1 and copies[str(folder / "edits" / "coffee-small.jpg")]["same_bytes"] == 0
    assert all(m["framing"] >= FRAMING_COPY for m in copies.values())
    shot = [m for m in by_kind["similar"]["members"] if m["score"] < 1.0]  # not the centre (the keeper may be)
    assert len(shot) == 1 and (shot[0]["framing"] is None or shot[0]["framing"] < FRAMING_COPY)
    assert [m["same_bytes"] for m in by_kind["identical"]["members"]] == [1, 1]


def test_every_group_keeps_one_of_its_members_first_and_says_why(server) -> None:
    folder = server.root
    body = _ready(server)
    for group in body["groups"]:
        first = group["members"][0]
        assert group["keep"] == first["image"] and first["keep"] is True
        assert [m["keep"] for m in group["members"][1:]] == [False] * (len(group["members"]) - 1)
        assert group["keep_reason"]
    by_kind = {g["kind"]: g for g in body["groups"]}
    assert by_kind["identical"]["keep"] == str(folder / "coffee.jpg")
    assert by_kind["identical"]["keep_reason"] == "shortest path"
    assert by_kind["copies"]["keep"] == str(folder / "coffee.jpg")
    assert by_kind["copies"]["keep_reason"] == "most pixels: 600x400 (next 400x266)"


def test_keep_in_wins_for_that_answer_only(server) -> None:
    folder = server.root
    backup = str(folder / "backup")
    body = _ready(server, keep_in=backup)
    by_kind = {g["kind"]: g for g in body["groups"]}
    kept = str(folder / "backup" / "coffee.jpg")
    assert by_kind["identical"]["keep"] == kept and by_kind["identical"]["keep_reason"] == f"in {backup} (keep_in)"
    # the copies group shows the content by the file its identical group now keeps, and keeps it
    assert by_kind["copies"]["keep"] == kept and by_kind["copies"]["keep_reason"] == f"in {backup} (keep_in)"
    plain = {g["kind"]: g["keep"] for g in _ready(server)["groups"]}  # for that answer only
    assert plain["identical"] == plain["copies"] == str(folder / "coffee.jpg")
    status, body = server.get("/duplicates", keep_in=str(folder / "edits"), kind="copies")
    assert status == 200 and body["groups"][0]["keep"] == str(folder / "edits" / "coffee-small.jpg")


def test_kind_and_folder_filters_and_counts(server) -> None:
    folder = server.root
    _ready(server)
    for kind in ("identical", "copies", "similar"):
        status, body = server.get("/duplicates", kind=kind)
        assert status == 200 and [g["kind"] for g in body["groups"]] == [kind] and body["total"] == 1
        assert body["tiers"] == {"identical": 1, "copies": 1, "similar": 1}  # the tabs' counts, whatever the kind
    # a folder keeps the groups with a file in it, a content's byte copies included
    status, body = server.get("/duplicates", folder=str(folder / "backup"))
    assert status == 200 and body["tiers"] == {"identical": 1, "copies": 1, "similar": 0}
    # a cut above the shot's cosine: no similar group; the copy stays (its floor is duplicate_threshold)
    status, body = server.get("/duplicates", threshold=0.99)
    assert status == 200 and body["tiers"] == {"identical": 1, "copies": 1, "similar": 0}


def test_members_carry_metadata_and_a_file_without_it_reads_its_header(server) -> None:
    """Sizes and dates come from the catalogue; a row catalogued before metadata was kept
    (its columns NULL) falls back to the file's header, which here is unreadable: nulls."""
    folder = server.root
    body = _ready(server, kind="copies")
    members = {m["image"]: m for m in body["groups"][0]["members"]}
    small = members[str(folder / "edits" / "coffee-small.jpg")]
    assert (small["width"], small["height"]) == (400, 266) and small["taken_from"] == "mtime"  # no EXIF date
    assert members[str(folder / "coffee.jpg")]["size"] == (folder / "coffee.jpg").stat().st_size
    copy = folder / "backup" / "coffee.jpg"
    saved = copy.read_bytes()
    join = server.service.duplicate_finder._joins["efficientnet"]

    def forget_dimensions() -> None:
        for grouping in join.groupings.values():
            grouping.dimensions.clear()

    copy.write_bytes(b"not a picture any more")  # the catalogue still says it is indexed
    with sqlite3.connect(server.service.catalog.path) as conn:  # as a row from schema version 2 has it
        conn.execute("UPDATE files SET taken_at=NULL, width=NULL, height=NULL WHERE path=?", (bytes(copy),))
    try:
        forget_dimensions()
        status, body = server.get("/duplicates", kind="identical")
        assert status == 200, body
        members = {m["image"]: m for m in body["groups"][0]["members"]}
        assert members[str(copy)]["width"] is None and members[str(copy)]["height"] is None
        assert members[str(copy)]["taken"] is None
        assert members[str(folder / "coffee.jpg")]["width"] == 600
        # an unknown size never decides (it used to say "most pixels: 600x400 (next unknown size)")
        assert body["groups"][0]["keep_reason"] == "shortest path"
    finally:
        copy.write_bytes(saved)
        forget_dimensions()


def test_a_file_gone_from_the_catalogue_leaves_the_current_answer(server) -> None:
    """Review item 5: the page looks its shown files up again, so a file the catalogue no longer
    has (acted on, removed) is not offered even by an answer computed before; here the change
    number does not move, so the join stays current and only that look-up can leave it out."""
    copy = server.root / "backup" / "coffee.jpg"
    body = _ready(server, kind="identical")
    assert str(copy) in _paths(body["groups"][0])

    def set_state(state: str) -> None:
        with sqlite3.connect(server.service.catalog.path) as conn:
            conn.execute("UPDATE files SET state=? WHERE path=?", (state, bytes(copy)))

    set_state("offline")
    try:
        status, body = server.get("/duplicates", kind="identical")
        assert status == 200 and body["groups"] == [] and not body["stale"], body
        status, body = server.get("/duplicates", kind="copies")
        kept = body["groups"][0]["members"][0]
        assert kept["image"] == str(server.root / "coffee.jpg") and kept["same_bytes"] == 0
    finally:
        set_state("indexed")
    assert str(copy) in _paths(_ready(server, kind="identical")["groups"][0])


def test_the_cli_sample_in_the_docs_shows_the_default_cuts() -> None:
    """Review item 6: docs/cli.md's sample output must show today's default thresholds, as the
    CLI prints them (its own view, fed the defaults)."""
    from pathlib import Path

    from imgsearchd.cli.duplicate_views import duplicates_view
    from imgsearchd.config import DUPLICATE_THRESHOLDS, SIMILAR_THRESHOLDS

    similar = SIMILAR_THRESHOLDS["efficientnet"]
    cuts = {"copies": DUPLICATE_THRESHOLDS["efficientnet"], "similar": similar, "framing": FRAMING_COPY}
    body = {
        "groups": [],
        "tiers": {"identical": 1, "copies": 1, "similar": 0},
        "thresholds": cuts,
        "total": 2,
        "threshold": similar,
        "extractor": "efficientnet",
        "offset": 0,
        "next_offset": None,
        "stale": False,
    }
    tiers, at = duplicates_view(body).splitlines()  # type: ignore[arg-type]
    sample = (Path(__file__).parents[2] / "docs" / "cli.md").read_text(encoding="utf-8")
    assert f"\n{tiers}\n" in sample
    assert f"\n{at.split(';')[0]}; showing 1-2\n" in sample
    # review item 9: one section on acting on the groups, not two back to back
    guide = (Path(__file__).parents[2] / "docs" / "duplicates.md").read_text(encoding="utf-8")
    assert [line for line in guide.splitlines() if line.startswith("## Acting on")] == ["## Acting on duplicates"]


@pytest.mark.parametrize(
    ("params", "status", "needle"),
    [
        ({"threshold": "0"}, 400, "threshold"),
        ({"threshold": "1.5"}, 400, "threshold"),
        ({"threshold": "nan"}, 400, "threshold"),
        ({"kind": "fuzzy"}, 400, "kind"),
        ({"limit": "0"}, 400, "limit"),
        ({"offset": "-1"}, 400, "offset"),
        ({"extractor": "nope"}, 400, "extractor"),
        ({"folder": "/etc"}, 403, "outside"),
        ({"folder": "relative/path"}, 400, "absolute"),
        ({"kind": "exact"}, 400, "identical"),
        ({"kind": "near"}, 400, "similar"),
        ({"keep_in": ""}, 400, "keep_in"),
        ({"keep_in": "/etc"}, 403, "outside"),
        ({"keep_in": "relative"}, 400, "absolute"),
    ],
)
def test_bad_parameters(server, params, status, needle) -> None:
    got, body = server.get("/duplicates", **params)
    assert got == status and needle in body["error"], body


@pytest.mark.parametrize("name", ["folder", "keep_in"])
def test_a_missing_folder_is_404(server, name) -> None:
    status, body = server.get("/duplicates", **{name: str(server.root / "nothing-here")})
    assert status == 404 and "not a folder" in body["error"]


def test_cli_duplicates(server, tmp_path, capsys, monkeypatch) -> None:
    from imgsearchd.cli import main as cli

    _ready(server)
    port = int(server.base.rsplit(":", 1)[1])
    config = write_config(tmp_path / "client.toml", {"server": {"port": port}})
    assert cli.main(["duplicates", "--config", str(config), "--json", "--kind", "identical"]) == cli.EXIT_OK
    body = json.loads(capsys.readouterr().out)
    assert body["total"] == 1 and body["groups"][0]["kind"] == "identical"
    assert cli.main(["duplicates", "--config", str(config), "--kind", "identical"]) == cli.EXIT_OK
    assert json.loads(capsys.readouterr().out) == body  # piped: JSON, as every command (issue 28)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)  # a person's terminal: the groups as lines
    assert cli.main(["duplicates", "--config", str(config)]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "coffee-small.jpg" in out and "400x266" in out and "most pixels" in out
    with pytest.raises(SystemExit) as refused:  # argparse refuses it (exit 2) before asking the daemon
        cli.main(["duplicates", "--config", str(config), "--threshold", "7"])
    assert refused.value.code == 2 and "--threshold: 7 is not above 0 and at most 1" in capsys.readouterr().err


def test_a_reload_applies_the_keeper_rules_and_the_similar_cut(server, tmp_path) -> None:
    from imgsearchd.config import load_config

    folder, running = server.root, server.service.config
    backup = str(folder / "backup")
    sections: dict[str, dict[str, object]] = {
        "duplicates": {"prefer": [backup]},
        "extractors.efficientnet": {"similar_threshold": 0.99},
    }
    new = load_config(server_config(tmp_path, server={"allowed_roots": [str(folder.parent)]}, **sections))
    server.service.apply_config(new)  # what SIGHUP does
    try:
        body = _ready(server)
        identical = next(g for g in body["groups"] if g["kind"] == "identical")
        assert identical["keep"] == str(folder / "backup" / "coffee.jpg")
        assert identical["keep_reason"] == f"in {backup} (duplicates.prefer)"
        assert body["threshold"] == 0.99 and body["tiers"]["similar"] == 0
    finally:
        server.service.apply_config(running)
    assert _ready(server)["tiers"]["similar"] == 1
