"""duplicates: star groups, the join through a real catalogue and index, real pictures, the HTTP route."""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from imgsearchd.config import DUPLICATE_THRESHOLDS
from imgsearchd.search import duplicates
from imgsearchd.search.index import ExtractorIndex
from imgsearchd.search.self_join import query_many
from imgsearchd.store.catalog import Catalog
from imgsearchd.store.rows import FileResult

from duplicate_set import copy_set, found_pairs, planted, precision_recall, tiles, true_pairs
from helpers import live_server, server_config, wait_for, write_config
from index_helpers import EXTRACTOR, MODEL, add_files, photo_like


def test_pairs_are_ordered_and_kept_once_with_their_best_score() -> None:
    pairs = duplicates.Pairs.of([3, 1, 1, 2], [1, 3, 1, 5], [0.9, 0.95, 1.0, 0.5])
    assert pairs.a.tolist() == [1, 2] and pairs.b.tolist() == [3, 5]
    assert pairs.score.tolist() == pytest.approx([0.95, 0.5])


def test_a_chain_is_not_one_group() -> None:
    """A~B~C~D~E~F, each link above the threshold: union-find makes one group of 6;
    stars keep every member linked to its centre."""
    chain = duplicates.Pairs.of(range(5), range(1, 6), [0.95] * 5)
    stars, largest = duplicates.star_groups(chain, 0.9)
    assert largest == 6
    assert all(len(members) <= 3 for members, _ in stars)
    for members, scores in stars:
        centre = members[0]
        assert all(abs(m - centre) == 1 for m in members[1:]) and scores[0] == 1.0
    assert duplicates.star_groups(chain, 0.96)[0] == []


def test_exact_join_finds_each_rows_nearest() -> None:
    vectors, planted_pairs = planted(photo_like(600, 64, topic_size=100), 20, noise=0.2)
    pairs = duplicates.exact_join(np.arange(len(vectors)) + 100, vectors, 3)
    found = set(zip(pairs.a.tolist(), pairs.b.tolist()))
    assert all((a + 100, b + 100) in found for a, b in planted_pairs)


def _wait_fresh(finder: duplicates.DuplicateFinder, source: duplicates.Source) -> duplicates.Join:
    def fresh() -> duplicates.Join | None:
        join, is_fresh, _ = finder.lookup(EXTRACTOR, source)
        return join if is_fresh else None

    join = wait_for(fresh, 60, "the join")
    assert join is not None
    return join


def test_join_through_a_real_index_finds_planted_and_identical_files(tmp_path: Path) -> None:
    vectors, planted_pairs = planted(photo_like(3000, 128), 40)
    with Catalog(tmp_path / "catalog.sqlite3") as catalog:
        ids = add_files(catalog, vectors)
        catalog.record_batch(
            FileResult(f"/copies/{k}.jpg", 5, k, f"hash-{k}", vectors={EXTRACTOR: (MODEL, vectors[k])})
            for k in range(5)
        )
        with ExtractorIndex(catalog, tmp_path / "index", EXTRACTOR, MODEL, 128, kind="annoy", exact_below=500) as index:
            index.wait_idle(120)
            assert index.stats()["mode"] == "annoy"
            finder = duplicates.DuplicateFinder(catalog, exact_below=100)  # through the index, not the matrix
            source = duplicates.Source(
                catalog, MODEL, 128, mode=lambda: "annoy", query=lambda r, k: query_many(index, r, k, 500)
            )
            try:
                join, fresh, computing = finder.lookup(EXTRACTOR, source)
                assert not fresh and computing is not None  # computing in the background
                join = _wait_fresh(finder, source)
                assert join.method == "index" and join.contents == 3040  # byte copies joined once
                grouping = finder.grouping(join, 0.9)
                assert finder.grouping(join, 0.9) is grouping  # cached
                id_at = {int(i): k for k, i in enumerate(ids)}
                near = [[id_at[m] for m in g.members if m in id_at] for g in grouping.groups if g.kind == "near"]
                p, r = precision_recall(found_pairs(near), set(planted_pairs))
                assert p >= 0.95 and r >= 0.95, (p, r)
                exact = [g for g in grouping.groups if g.kind == "exact"]
                assert sorted(tuple(sorted(g.members)) for g in exact) == sorted(
                    (int(ids[k]), int(catalog.get(f"/copies/{k}.jpg").id)) for k in range(5)
                )
                # a change makes the next lookup recompute; the old answer is served meanwhile, marked stale
                catalog.remove_paths(["/copies/0.jpg"])
                old, fresh, _ = finder.lookup(EXTRACTOR, source)
                assert old is join and not fresh
                new = _wait_fresh(finder, source)
                assert new.seq > join.seq and len(new.exact) == 4
                assert finder.status()["cached"][EXTRACTOR]["current"] is True
            finally:
                finder.close()


def test_default_threshold_on_real_pictures(efficientnet, photos) -> None:
    """EfficientNet-Lite0, real weights: tiles of real photos with JPEG, resize, crop, edit and
    rotated copies; pair precision and recall at the default threshold."""
    originals = tiles([photos[name] for name in ("astronaut", "chelsea", "coffee", "rocket")], 3)
    pictures, family, _ = copy_set(originals[::2], with_copies=8, seed=3)
    vectors = efficientnet.embed_images(pictures)
    pairs = duplicates.exact_join(np.arange(len(pictures)), vectors, duplicates.NEIGHBOURS)
    stars, _ = duplicates.star_groups(pairs, DUPLICATE_THRESHOLDS["efficientnet"])
    p, r = precision_recall(found_pairs(g for g, _ in stars), true_pairs(family))
    assert p >= 0.9 and r >= 0.9, (p, r)


# -- the HTTP route ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory, photos):
    root = tmp_path_factory.mktemp("dup")
    folder = root / "photos"
    folder.mkdir()
    for name in ("chelsea", "coffee", "astronaut"):
        photos[name].convert("RGB").save(folder / f"{name}.jpg", quality=90)
    shutil.copy(folder / "chelsea.jpg", folder / "chelsea-copy.jpg")  # byte-identical
    photos["coffee"].convert("RGB").resize((360, 240)).save(folder / "coffee-small.jpg", quality=80)
    (root / "other").mkdir()
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
        return (status, body) if status == 200 and not body["stale"] else None

    return wait_for(answered, 60, "the duplicates")


def test_duplicates_route(server) -> None:
    from openapi_checker import OpenApiChecker

    openapi = OpenApiChecker()
    status, body = server.get("/duplicates")  # the first call starts the join and answers at once
    openapi.check("GET", "/duplicates", status, body)
    assert status == 202 and body["state"] == "computing"
    assert body["computing"]["phase"] in ("queued", "reading", "joining")
    status, body = _ready(server)
    openapi.check("GET", "/duplicates", status, body)
    assert body["threshold"] == DUPLICATE_THRESHOLDS["efficientnet"] and body["total"] == 2
    exact, near = body["groups"]  # same size: exact first
    assert exact["kind"] == "exact" and near["kind"] == "near"
    folder = server.root
    assert {m["image"] for m in exact["members"]} == {str(folder / "chelsea.jpg"), str(folder / "chelsea-copy.jpg")}
    assert {m["image"] for m in near["members"]} == {str(folder / "coffee.jpg"), str(folder / "coffee-small.jpg")}
    sizes = {m["image"]: (m["width"], m["height"], m["size"]) for m in near["members"]}
    assert sizes[str(folder / "coffee-small.jpg")][:2] == (360, 240)
    assert sizes[str(folder / "coffee.jpg")] == (600, 400, (folder / "coffee.jpg").stat().st_size)
    # instant from the cache; pages, kinds and folders
    t0 = time.monotonic()
    status, page = server.get("/duplicates", kind="near", limit=1)
    assert status == 200 and time.monotonic() - t0 < 1.0
    assert page["total"] == 1 and page["groups"][0]["kind"] == "near" and page["next_offset"] is None
    status, page = server.get("/duplicates", limit=1, offset=1)
    assert status == 200 and page["groups"] == [near] and page["next_offset"] is None
    status, page = server.get("/duplicates", limit=1)
    assert page["next_offset"] == 1
    status, page = server.get("/duplicates", folder=str(folder.parent / "other"))
    assert status == 200 and page["total"] == 0
    status, page = server.get("/duplicates", threshold=0.999)
    assert status == 200 and [g["kind"] for g in page["groups"]] == ["exact"]
    status, stats = server.get("/stats")
    openapi.check("GET", "/stats", status, stats)
    assert stats["duplicates"]["cached"]["efficientnet"]["current"] is True
    assert {("GET", "/duplicates", "200"), ("GET", "/duplicates", "202")} <= openapi.seen


def test_members_carry_metadata_and_a_file_without_it_reads_its_header(server) -> None:
    """Sizes and dates come from the catalogue; a row catalogued before metadata was kept
    (its columns NULL) falls back to the file's header, which here is unreadable: nulls."""
    folder = server.root
    status, body = _ready(server, kind="exact")
    members = {m["image"]: m for m in body["groups"][0]["members"]}
    assert members[str(folder / "chelsea.jpg")]["width"] == 451
    assert members[str(folder / "chelsea.jpg")]["taken_from"] == "mtime"  # skimage's JPEG has no EXIF date
    copy = folder / "chelsea-copy.jpg"
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
        status, body = server.get("/duplicates", kind="exact")
        assert status == 200, body
        members = {m["image"]: m for m in body["groups"][0]["members"]}
        assert members[str(copy)]["width"] is None and members[str(copy)]["height"] is None
        assert members[str(copy)]["taken"] is None
        assert members[str(folder / "chelsea.jpg")]["width"] == 451
    finally:
        copy.write_bytes(saved)
        forget_dimensions()


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
    ],
)
def test_bad_parameters(server, params, status, needle) -> None:
    got, body = server.get("/duplicates", **params)
    assert got == status and needle in body["error"], body


def test_a_missing_folder_is_404(server) -> None:
    status, body = server.get("/duplicates", folder=str(server.root / "nothing-here"))
    assert status == 404 and "not a folder" in body["error"]


def test_cli_duplicates(server, tmp_path, capsys, monkeypatch) -> None:
    from imgsearchd.cli import main as cli

    _ready(server)
    port = int(server.base.rsplit(":", 1)[1])
    config = write_config(tmp_path / "client.toml", {"server": {"port": port}})
    assert cli.main(["duplicates", "--config", str(config), "--json", "--kind", "exact"]) == cli.EXIT_OK
    body = json.loads(capsys.readouterr().out)
    assert body["total"] == 1 and body["groups"][0]["kind"] == "exact"
    assert cli.main(["duplicates", "--config", str(config), "--kind", "exact"]) == cli.EXIT_OK
    assert json.loads(capsys.readouterr().out) == body  # piped: JSON, as every command (issue 28)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)  # a person's terminal: the groups as lines
    assert cli.main(["duplicates", "--config", str(config)]) == cli.EXIT_OK
    out = capsys.readouterr().out
    assert "exact (2 files" in out and "coffee-small.jpg  360x240" in out and "2 groups at threshold" in out
    with pytest.raises(SystemExit) as refused:  # argparse refuses it (exit 2) before asking the daemon
        cli.main(["duplicates", "--config", str(config), "--threshold", "7"])
    assert refused.value.code == 2 and "--threshold: 7 is not above 0 and at most 1" in capsys.readouterr().err
