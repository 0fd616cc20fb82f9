"""duplicates: star groups, the tiers, the join and the check through a real catalogue and index,
real pictures, the HTTP route."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from imgsearchd.config import DUPLICATE_THRESHOLDS, SIMILAR_THRESHOLDS
from imgsearchd.search import duplicate_join, duplicates, framing
from imgsearchd.search.index import ExtractorIndex
from imgsearchd.search.self_join import query_many
from imgsearchd.store.catalog import Catalog
from imgsearchd.store.rows import FileResult

from duplicate_set import found_pairs, planted, precision_recall, tiles, transform, true_pairs
from helpers import wait_for
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


def _tiers(groups: list[duplicates.Group]) -> dict[str, list[set[int]]]:
    found: dict[str, list[set[int]]] = {}
    for group in groups:
        found.setdefault(group.kind, []).append(set(group.members))
    return found


def test_each_pair_is_in_its_closest_tier_only() -> None:
    """Copies need the cosine floor AND the framing check; similar takes the rest above its cut,
    but not a link inside a copies group; an unchecked or unreadable pair is never a copy."""
    pairs = duplicates.Pairs.of(
        [1, 1, 2, 2, 1, 4, 6, 9],
        [2, 8, 8, 3, 3, 5, 7, 10],
        [0.99, 0.9, 0.95, 0.97, 0.96, 0.95, 0.8, 0.99],
    )
    checked = {(1, 2): 0.99, (1, 8): 0.97, (2, 8): 0.3, (2, 3): 0.5, (1, 3): 0.6, (4, 5): None, (9, 10): 0.9}
    groups, _ = duplicate_join.tier_groups(pairs, checked, 0.85, 0.9, 0.95)
    tiers = _tiers(groups)
    assert tiers["copies"] == [{1, 2, 8}]  # (2, 8) failed the check, but both are copies of 1
    assert sorted(tiers["similar"], key=min) == [{1, 2, 3}, {4, 5}, {9, 10}]  # (2, 8) not repeated here
    copies = next(g for g in groups if g.kind == "copies")
    assert copies.members[0] == 1 and dict(zip(copies.members, copies.framing)) == {1: 1.0, 2: 0.99, 8: 0.97}
    four = next(g for g in groups if 4 in g.members)
    assert four.framing[1] is None  # unreadable: similar, never copies
    # a higher similar cut drops the looser links; (6, 7) was below every cut
    assert _tiers(duplicate_join.tier_groups(pairs, checked, 0.85, 0.965, 0.95)[0])["similar"] == [{2, 3}, {9, 10}]
    # a stricter copy floor: 1~8 (0.9) is no copy any more, and becomes similar at a low enough cut
    tiers = _tiers(duplicate_join.tier_groups(pairs, checked, 0.92, 0.85, 0.95)[0])
    assert tiers["copies"] == [{1, 2}] and any({1, 8} <= g for g in tiers["similar"])


def test_identical_groups_come_first_at_one_size() -> None:
    identical = duplicate_join.identical_groups({5: [6]})
    assert identical[0].members == (5, 6) and identical[0].framing == (1.0, 1.0)
    similar = duplicate_join.Group("similar", (1, 2), (1.0, 0.97), (1.0, None))
    copies = duplicate_join.Group("copies", (3, 4), (1.0, 0.9), (1.0, 0.99))
    big = duplicate_join.Group("similar", (7, 8, 9), (1.0, 0.9, 0.9), (1.0, None, None))
    assert [g.kind for g in duplicate_join.ordered([similar, copies, *identical, big])] == [
        "similar",
        "identical",
        "copies",
        "similar",
    ]


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


class PlantedChecker:
    """The framing check for vectors without pictures: the planted pairs are copies (1.0), every
    other pair a second shot (0.5); remembers what it was asked, as the real one's cache would."""

    def __init__(self, copies: set[tuple[int, int]]) -> None:
        self.copies = copies
        self.asked: list[list[tuple[int, int]]] = []

    def __call__(self, pairs, progress):
        self.asked.append(list(pairs))
        for _ in pairs:
            progress(1)
        return {pair: 1.0 if pair in self.copies else 0.5 for pair in pairs}


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
            copies = {(int(ids[a]), int(ids[b])) for a, b in planted_pairs[:20]}  # the other 20: second shots
            checker = PlantedChecker(copies)
            # through the index, not the matrix
            finder = duplicates.DuplicateFinder(catalog, exact_below=100, checker=checker)
            source = duplicates.Source(
                catalog,
                MODEL,
                128,
                mode=lambda: "annoy",
                query=lambda r, k: query_many(index, r, k, 500),
                copy_floor=0.9,
            )
            try:
                join, fresh, computing = finder.lookup(EXTRACTOR, source)
                assert not fresh and computing is not None  # computing in the background
                join = _wait_fresh(finder, source)
                assert join.method == "index" and join.contents == 3040  # byte copies joined once
                # only the pairs at or above the copy floor were checked
                assert len(checker.asked) == 1 and set(checker.asked[0]) == set(join.framing)
                assert set(join.framing) == {
                    (a, b)
                    for a, b, s in zip(join.pairs.a.tolist(), join.pairs.b.tolist(), join.pairs.score)
                    if s >= 0.9
                }
                grouping = finder.grouping(join, 0.9)
                assert finder.grouping(join, 0.9) is grouping  # cached
                id_at = {int(i): k for k, i in enumerate(ids)}

                def found(kind: str) -> set[tuple[int, int]]:
                    groups = [[id_at[m] for m in g.members if m in id_at] for g in grouping.groups if g.kind == kind]
                    return found_pairs(groups)

                p, r = precision_recall(found("copies"), set(planted_pairs[:20]))
                assert p == 1.0 and r >= 0.95, (p, r)
                p, r = precision_recall(found("similar"), set(planted_pairs[20:]))
                assert p >= 0.95 and r >= 0.95, (p, r)
                identical = [g for g in grouping.groups if g.kind == "identical"]
                assert sorted(tuple(sorted(g.members)) for g in identical) == sorted(
                    (int(ids[k]), int(catalog.get(f"/copies/{k}.jpg").id)) for k in range(5)
                )
                # a change makes the next lookup recompute; the old answer is served meanwhile, marked stale
                catalog.remove_paths(["/copies/0.jpg"])
                old, fresh, _ = finder.lookup(EXTRACTOR, source)
                assert old is join and not fresh
                new = _wait_fresh(finder, source)
                assert new.seq > join.seq and len(new.identical) == 4
                assert finder.status()["cached"][EXTRACTOR]["current"] is True
                # another copy floor (a reload) checks again
                stricter = duplicates.Source(
                    catalog, MODEL, 128, mode=lambda: "annoy", query=source.query, copy_floor=0.95
                )
                assert not finder.lookup(EXTRACTOR, stricter)[1]
                assert _wait_fresh(finder, stricter).copy_floor == 0.95 and len(checker.asked) == 3
            finally:
                finder.close()


def test_the_check_reports_progress_and_stops_at_close(tmp_path: Path) -> None:
    """Phase "checking", done/total in pairs; close() stops a check in progress within a step."""
    vectors, _ = planted(photo_like(400, 64), 30)
    started = []

    def slow(pairs, progress):
        started.append(time.monotonic())
        for _ in pairs:
            time.sleep(0.05)
            progress(1)
        return {pair: 1.0 for pair in pairs}

    with Catalog(tmp_path / "catalog.sqlite3") as catalog:
        add_files(catalog, vectors)
        finder = duplicates.DuplicateFinder(catalog, checker=slow)
        source = duplicates.Source(catalog, MODEL, 64, mode=lambda: "exact", query=lambda r, k: [], copy_floor=0.5)
        finder.lookup(EXTRACTOR, source)

        def checking() -> duplicates.Progress | None:
            computing = finder.status()["computing"]
            return computing if computing and computing["phase"] == "checking" and computing["done"] else None

        progress = wait_for(checking, 30, "the check")
        assert progress is not None and 0 < progress["done"] < progress["total"]
        t0 = time.monotonic()
        finder.close()
        assert time.monotonic() - t0 < 1.0
        assert EXTRACTOR not in finder.status()["cached"] and finder.status()["computing"] is None


def test_default_thresholds_on_real_pictures(efficientnet, photos) -> None:
    """EfficientNet-Lite0, real weights, at the default cuts and the framing check: tiles of real
    photos with JPEG, resized and toned copies are copies; two windows of one tile 15% apart are
    similar, never copies. (bench/bench_duplicates.py measures every edit kind at scale.)"""
    originals = tiles([photos[name] for name in ("astronaut", "coffee")], 2)
    rng = np.random.default_rng(5)
    pictures, family, shots = [], [], []
    for n, original in enumerate(originals):
        w, h = original.size
        pictures += [original, *(transform(original, kind, rng) for kind in ("jpeg", "resize", "edit"))]
        family += [n] * 4
        shots.append(len(pictures))  # a second shot: the window moved right by 15%
        pictures += [original.crop((0, 0, int(w * 0.85), h)), original.crop((int(w * 0.15), 0, w, h))]
        family += [-1 - n, -1 - n]
    vectors = efficientnet.embed_images(pictures)
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    pairs = duplicates.exact_join(np.arange(len(pictures)), vectors, duplicates.NEIGHBOURS)
    floor = DUPLICATE_THRESHOLDS["efficientnet"]
    prints = [framing.print_of(p) for p in pictures]
    checked = {
        (a, b): framing.framing_score(prints[a], prints[b])
        for a, b, s in zip(pairs.a.tolist(), pairs.b.tolist(), pairs.score.tolist())
        if s >= floor
    }
    groups, _ = duplicate_join.tier_groups(
        pairs, checked, floor, SIMILAR_THRESHOLDS["efficientnet"], framing.FRAMING_COPY
    )
    copies = found_pairs(g.members for g in groups if g.kind == "copies")
    truth = {(a, b) for a, b in true_pairs(family) if family[a] >= 0}
    p, r = precision_recall(copies, truth)
    assert p == 1.0 and r >= 0.95, (p, r)
    assert all((at, at + 1) not in copies for at in shots)
    cosine = {(a, b): s for a, b, s in zip(pairs.a.tolist(), pairs.b.tolist(), pairs.score.tolist())}
    above = [at for at in shots if cosine.get((at, at + 1), 0.0) >= SIMILAR_THRESHOLDS["efficientnet"]]
    assert above, [round(cosine.get((at, at + 1), 0.0), 3) for at in shots]  # (bench: the recall at scale)
    in_similar = {m for g in groups if g.kind == "similar" for m in g.members}
    assert all({at, at + 1} <= in_similar for at in above)  # each in a star of its scene (maybe not one star)


def _page(**kw):
    """A page of a hand-made join: content 1 (files 1 and 2, the same bytes) copied as 3 and 4."""
    from imgsearchd.media.photo_metadata import PhotoMetadata
    from imgsearchd.search import duplicate_page

    identical = duplicate_join.identical_groups({1: [2]})
    copies = duplicate_join.Group("copies", (1, 3, 4), (1.0, 0.97, 0.95), (1.0, 0.99, 0.98))
    join = duplicates.Join("e", "m", 1, 3, duplicates.Pairs.of([], [], []), identical, {1: [2]}, 0.0, 0.0, "exact")
    files = {1: ("/p/a/x.jpg", 100), 2: ("/p/b/longer/x.jpg", 100), 3: ("/p/c.jpg", 50), 4: ("/p/d.jpg", 60)}
    files = {k: v for k, v in files.items() if k not in kw.get("gone", ())}
    now = {k: v for k, v in files.items() if k not in kw.get("now_gone", ())}  # the catalogue at the request
    grouping = duplicates.Grouping(0.9, [copies, *identical], 2, files)
    dims = {1: (400, 300), 2: (400, 300), 3: (200, 150), 4: (300, 200)}
    years = {1: 2015, 2: 2015, 3: 2012, 4: 2010}

    def metadata(ids):
        return {
            i: PhotoMetadata(float(years[i] - 1970) * 3.16e7, f"{years[i]}-01-01T00:00:00", "exif", *dims[i])
            for i in ids
            if i in files
        }

    keeping = duplicate_page.Keeping(keep_in=kw.get("keep_in"))
    return duplicate_page.page(
        join,
        grouping,
        kind=kw.get("kind", "all"),
        folder=kw.get("folder"),
        offset=0,
        limit=10,
        roots=None,
        metadata=metadata,
        sort=kw.get("sort", "similarity"),
        keeping=keeping,
        catalogued=lambda ids: {i: now[i] for i in ids if i in now},
    )


def test_a_page_shows_each_content_once_keeper_first() -> None:
    body = _page()
    assert body["tiers"] == {"identical": 1, "copies": 1, "similar": 0}
    copies, identical = body["groups"]
    assert [m["image"] for m in copies["members"]] == ["/p/a/x.jpg", "/p/c.jpg", "/p/d.jpg"]
    assert [m["same_bytes"] for m in copies["members"]] == [1, 0, 0] and copies["keep"] == "/p/a/x.jpg"
    assert copies["keep_reason"] == "most pixels: 400x300 (next 300x200)"
    assert identical["keep"] == "/p/a/x.jpg" and identical["keep_reason"] == "shortest path"
    # sort=taken: the keeper first, then oldest first
    copies = _page(sort="taken")["groups"][0]
    assert [m["image"] for m in copies["members"]] == ["/p/a/x.jpg", "/p/d.jpg", "/p/c.jpg"]
    assert [m["keep"] for m in copies["members"]] == [True, False, False]


def test_keep_in_changes_the_file_shown_for_a_content() -> None:
    body = _page(keep_in="/p/b")
    copies, identical = body["groups"]
    assert identical["keep"] == copies["keep"] == "/p/b/longer/x.jpg"
    assert copies["keep_reason"] == "in /p/b (keep_in)" and copies["members"][0]["same_bytes"] == 1
    assert "/p/a/x.jpg" not in [m["image"] for m in copies["members"]]


def test_folder_kind_and_gone_files() -> None:
    body = _page(folder="/p/b")  # a byte copy in the folder brings its copies group
    assert body["tiers"] == {"identical": 1, "copies": 1, "similar": 0}
    assert _page(folder="/p/c.jpg", kind="identical")["total"] == 0
    body = _page(gone=(1,))  # the content stays through its other file
    assert body["tiers"] == {"identical": 0, "copies": 1, "similar": 0}
    assert body["groups"][0]["members"][0]["image"] == "/p/b/longer/x.jpg"
    assert _page(gone=(3, 4))["tiers"] == {"identical": 1, "copies": 0, "similar": 0}


def test_files_acted_on_since_the_join_leave_the_page_at_once() -> None:
    """Review item 5: just after a resolve the join is stale, and its page must not offer the
    files just trashed or moved (the catalogue no longer has them)."""
    body = _page(now_gone=(2,))  # the byte copy trashed: its identical group is one file now
    assert [g["kind"] for g in body["groups"]] == ["copies"]
    kept = body["groups"][0]["members"][0]
    assert (kept["image"], kept["same_bytes"]) == ("/p/a/x.jpg", 0)
    body = _page(now_gone=(3, 4))  # both copies moved: one content is left, no copies group
    assert [g["kind"] for g in body["groups"]] == ["identical"]
    body = _page(now_gone=(3,))
    assert [m["image"] for m in body["groups"][0]["members"]] == ["/p/a/x.jpg", "/p/d.jpg"]


def _names_page(tmp_path: Path, names: list[str], keep_in: str | None = None):
    """A page of one identical group over real files named ``names`` (their sizes from disk)."""
    from imgsearchd.search import duplicate_page

    ids = list(range(1, len(names) + 1))
    files = {i: (str(tmp_path / name), (tmp_path / name).stat().st_size) for i, name in zip(ids, names)}
    identical = duplicate_join.identical_groups({ids[0]: ids[1:]})
    join = duplicates.Join("e", "m", 1, 1, duplicates.Pairs.of([], [], []), identical, {}, 0.0, 0.0, "exact")
    grouping = duplicates.Grouping(0.9, identical, 0, files)
    keeping = duplicate_page.Keeping(keep_in=keep_in)
    return duplicate_page.page(join, grouping, kind="all", folder=None, offset=0, limit=10, roots=None, keeping=keeping)


def test_names_of_one_file_are_shown_once_and_a_link_is_never_kept(tmp_path: Path) -> None:
    """Review item 1: a symlink and its target, or two hard links, are one file: offering one
    name to trash while keeping the other frees nothing (a hard link) or leaves the kept link
    dangling (a symlink). The group shows the file once, by a name that is not a link."""
    from PIL import Image

    photo = Image.linear_gradient("L").convert("RGB")
    (tmp_path / "sub").mkdir()
    photo.save(tmp_path / "rocket.jpg", quality=90)
    os.link(tmp_path / "rocket.jpg", tmp_path / "sub" / "rocket_hl.jpg")
    os.symlink("../rocket.jpg", tmp_path / "sub" / "rocket_sym.jpg")
    names = ["sub/rocket_sym.jpg", "sub/rocket_hl.jpg", "rocket.jpg"]
    assert _names_page(tmp_path, names)["groups"] == []  # one file under three names: nothing to free
    (tmp_path / "copy").mkdir()
    shutil.copy(tmp_path / "rocket.jpg", tmp_path / "copy" / "rocket.jpg")  # a second file, the same bytes
    for keep_in in (None, str(tmp_path / "sub")):
        body = _names_page(tmp_path, [*names, "copy/rocket.jpg"], keep_in)
        (group,) = body["groups"]
        shown = [m["image"] for m in group["members"]]
        assert len(shown) == 2 and str(tmp_path / "copy" / "rocket.jpg") in shown
        assert str(tmp_path / "sub" / "rocket_sym.jpg") not in shown  # never the link
        assert group["files"] == 2 and [m["same_bytes"] for m in group["members"]] == [1, 1]
    # keep_in on the hard link's folder: that name stands for the file, and is kept
    assert group["keep"] == str(tmp_path / "sub" / "rocket_hl.jpg")
    assert group["keep_reason"] == f"in {tmp_path / 'sub'} (keep_in)"
