"""Thumbnails and originals: the store on disk, the indexer's hook, /thumbnail and /original.

A real daemon on a loopback port (efficientnet, offline) with real photos; the "indexed
before thumbnails existed" files are indexed into the same catalogue first by a Pipeline
without a thumbnail store, as an older daemon left them.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import io
import json
import os
import shutil
import sqlite3
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from imgsearchd.ingest.pipeline import Pipeline
from imgsearchd.media import files, images
from imgsearchd.media.failures import ImageError, Reason
from imgsearchd.media.thumbnails import ThumbnailStore
from imgsearchd.store.catalog import Catalog

from helpers import Live, live_server, server_config

HASHES = [f"{i:02x}" * 16 for i in range(8)]


def fetch(
    live: Live, route: str, headers: dict[str, str] | None = None, **params: str | bytes
) -> tuple[int, Any, bytes]:
    """GET with query parameters: (status, headers, raw body)."""
    url = f"{live.base}{route}?{urllib.parse.urlencode(params)}"
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers, exc.read()


def error_of(status: int, headers: Any, body: bytes) -> str:
    assert headers["Content-Type"] == "application/json", (status, body[:200])
    return str(json.loads(body)["error"])


# -- the store alone ---------------------------------------------------------------------------


def rows(folder: Path) -> dict[str, int]:
    """hash -> bytes, as the thumbnails database holds them (read with a connection of its own)."""
    with contextlib.closing(sqlite3.connect(folder / "thumbnails.sqlite3")) as db:
        return dict(db.execute("SELECT hash, length(data) FROM thumbnails").fetchall())


def test_the_size_bound_evicts_the_least_recently_used(tmp_path, photos):
    picture = photos["coffee"]
    folder = tmp_path / "thumbs"
    store = ThumbnailStore(folder, size=128, max_bytes=10**9)
    assert store.add_picture(HASHES[0], picture)
    one = store.stats()["bytes"]
    store.set_max_bytes(int(3.5 * one))  # room for three
    for content_hash in HASHES[1:3]:
        assert store.add_picture(content_hash, picture)
    assert store.get(HASHES[0]) is not None  # used: now the most recent
    assert store.add_picture(HASHES[3], picture)  # over the bound: the least recently used goes
    assert set(store.hashes()) == {HASHES[0], HASHES[2], HASHES[3]}
    assert set(rows(folder)) == set(store.hashes())  # gone from the database, not only from memory
    stats = store.stats()
    assert stats["count"] == 3 and stats["bytes"] <= stats["max_bytes"]
    assert stats["bytes"] == sum(rows(folder).values())
    assert not store.add_picture(HASHES[3], picture)  # already there: not made again
    assert store.made == 4
    store.close()


def test_a_restart_keeps_thumbnails_and_their_order_and_drops_other_sizes(tmp_path, photos):
    folder = tmp_path / "thumbs"
    store = ThumbnailStore(folder, size=64, fmt="webp")
    for content_hash, name in zip(HASHES, ("chelsea", "rocket", "coffee")):
        store.add_picture(content_hash, photos[name])
        time.sleep(0.01)
    store.close()
    restarted = ThumbnailStore(folder, size=64, max_bytes=10**9, fmt="webp")
    assert restarted.hashes() == HASHES[:3]  # least recently used first, as before
    before = restarted.stats()["bytes"]
    found = restarted.get(HASHES[1])
    assert found is not None and found.etag == f'"{HASHES[1]}-64-webp"'
    restarted.set_max_bytes(before - 1)  # the least recently used goes first
    assert restarted.hashes() == [HASHES[2], HASHES[1]]  # the one just served is the most recent
    restarted.close()
    bigger = ThumbnailStore(folder, size=64)  # another format (JPEG, the default): the old ones are stale
    assert bigger.stats()["count"] == 0 and rows(folder) == {}
    bigger.close()


def test_a_damaged_database_is_started_afresh(tmp_path, photos):
    folder = tmp_path / "thumbs"
    folder.mkdir()
    (folder / "thumbnails.sqlite3").write_bytes(b"this is not a database" * 100)
    store = ThumbnailStore(folder, size=64)
    assert store.stats()["count"] == 0
    assert store.add_picture(HASHES[0], photos["chelsea"]) and store.get(HASHES[0]) is not None
    store.close()


def test_jpeg_thumbnails_fit_the_size_and_are_never_enlarged(tmp_path, photos):
    store = ThumbnailStore(tmp_path / "thumbs", size=100, fmt="jpeg")
    store.add_picture(HASHES[0], photos["rocket"])  # 640 x 427
    small = Image.new("RGB", (40, 30), "red")
    store.add_picture(HASHES[1], small)
    found = store.get(HASHES[0])
    assert found is not None and found.content_type == "image/jpeg"
    with Image.open(io.BytesIO(found.data)) as thumb:
        assert thumb.format == "JPEG" and thumb.size == (100, 67)
    tiny = store.get(HASHES[1])
    assert tiny is not None
    with Image.open(io.BytesIO(tiny.data)) as thumb:
        assert thumb.size == (40, 30)
    store.close()


def test_a_link_out_of_the_roots_is_refused_on_the_opened_file(tmp_path, photos):
    """The check on the file already open: no name check runs before these calls."""
    root, outside = tmp_path / "root", tmp_path / "outside.jpg"
    root.mkdir()
    photos["rocket"].convert("RGB").save(outside)
    link = root / "innocent.jpg"
    os.symlink(outside, link)
    with pytest.raises(ImageError) as refused:
        files.open_original(str(link), roots=[str(root)])
    assert refused.value.reason == Reason.OUTSIDE_ROOTS
    store = ThumbnailStore(tmp_path / "thumbs", size=64)
    with pytest.raises(ImageError) as refused:
        store.make_from_file(str(link), roots=[str(root)])
    assert refused.value.reason == Reason.OUTSIDE_ROOTS and store.made == 0
    fh, _, kind = files.open_original(str(link), roots=[str(tmp_path)])  # inside these roots: served
    fh.close()
    assert kind == "image/jpeg"
    store.close()


def test_one_content_asked_for_by_many_at_once_is_made_once(tmp_path, photos):
    picture = tmp_path / "big.jpg"
    photos["astronaut"].convert("RGB").resize((2048, 2048)).save(picture, quality=90)
    store = ThumbnailStore(tmp_path / "thumbs", size=64)
    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        made = list(pool.map(lambda _: store.make_from_file(str(picture)), range(6)))
    assert store.made == 1 and len({t.data for t in made}) == 1
    store.close()


# -- through the daemon ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory, photos, efficientnet):
    tmp_path = tmp_path_factory.mktemp("thumbs")
    root = tmp_path / "pictures"
    root.mkdir()
    saved: dict[str, Path] = {}
    for name in ("chelsea", "coffee", "astronaut", "rocket"):
        saved[name] = root / f"{name}.jpg"
        photos[name].convert("RGB").save(saved[name], quality=90)
    saved["chelsea_copy"] = root / "copy of chelsea.jpg"
    shutil.copy(saved["chelsea"], saved["chelsea_copy"])
    saved["png_named_jpg"] = root / "really a png.jpg"
    photos["hubble"].convert("RGB").save(saved["png_named_jpg"], format="PNG")
    saved["old"] = root / "indexed before thumbnails.jpg"
    photos["motorcycle_left"].convert("RGB").save(saved["old"], quality=90)
    saved["old_broken"] = root / "broken since.jpg"
    photos["motorcycle_right"].convert("RGB").save(saved["old_broken"], quality=90)
    saved["corrupt"] = root / "corrupt.jpg"
    saved["corrupt"].write_bytes(b"\xff\xd8\xff\xe0 this is no picture" * 10)
    config = server_config(tmp_path, server={"allowed_roots": [str(root)]}, thumbnails={"max_mb": 64})
    # What a daemon before thumbnails left: indexed files, no thumbnails folder.
    catalog = Catalog(tmp_path / "data" / "catalog.sqlite3")
    with catalog, Pipeline(catalog, {"efficientnet": efficientnet}) as pipeline:
        summary = pipeline.process([str(saved["old"]), str(saved["old_broken"]), str(saved["corrupt"])])
    assert summary["embedded"] == 2 and summary["failed"] == {"corrupt": 1}, summary
    assert not (tmp_path / "data" / "thumbnails").exists()
    saved["old_broken"].write_bytes(b"GIF89a and then nothing")  # broken after it was indexed
    with live_server(config) as server:
        server.paths = saved
        server.root = root
        yield server


def store_of(live: Live) -> ThumbnailStore:
    assert live.service.thumbnails is not None
    return live.service.thumbnails


def test_thumbnails_are_made_while_indexing_from_the_decoded_picture_once_per_content(live, monkeypatch):
    store = store_of(live)
    decodes: list[int] = []
    real_decode = images.decode

    def counting_decode(data: bytes, *args: Any, **kwargs: Any) -> Image.Image:
        decodes.append(len(data))
        return real_decode(data, *args, **kwargs)

    monkeypatch.setattr(images, "decode", counting_decode)
    made = store.made
    status, body = live.get("/add", image=str(live.paths["chelsea"]))
    assert status == 200 and body["embedded"], body
    assert store.made == made + 1 and len(decodes) == 1  # the model's decode made it: no second one
    status, body = live.get("/add", image=str(live.paths["chelsea_copy"]))
    assert status == 200 and not body["embedded"], body  # the copy reuses the vector...
    assert store.made == made + 1 and len(decodes) == 1  # ... and the thumbnail: nothing decoded

    first = fetch(live, "/thumbnail", image=str(live.paths["chelsea"]))
    copy = fetch(live, "/thumbnail", image=str(live.paths["chelsea_copy"]))
    assert first[0] == copy[0] == 200
    assert first[2] == copy[2] and first[1]["ETag"] == copy[1]["ETag"]
    assert first[1]["Content-Type"] == "image/jpeg"  # the default format
    with Image.open(io.BytesIO(first[2])) as thumb:
        assert thumb.format == "JPEG" and max(thumb.size) <= 256 and min(thumb.size) >= 150, thumb.size
    assert store.made == made + 1 and len(decodes) == 1  # served, not made again
    catalogued = live.service.catalog.get(str(live.paths["chelsea"]))
    assert catalogued is not None and catalogued.content_hash is not None
    assert first[1]["ETag"] == f'"{catalogued.content_hash}-256-jpeg"'
    assert catalogued.content_hash in rows(store.folder)


def test_etag_and_not_modified(live):
    status, body = live.get("/add", image=str(live.paths["coffee"]))
    assert status == 200, body
    status, headers, data = fetch(live, "/thumbnail", image=str(live.paths["coffee"]))
    assert status == 200 and data
    etag = headers["ETag"]
    assert headers["Cache-Control"] == "private, no-cache"  # a path: its picture may change, ask each time
    content_hash = etag.strip('"').split("-")[0]
    status, found = live.get("/search", image=str(live.paths["coffee"]), limit="1")
    assert status == 200 and found["results"][0]["hash"] == content_hash, found
    pinned = fetch(live, "/thumbnail", image=str(live.paths["coffee"]), v=content_hash)
    assert pinned[0] == 200 and pinned[2] == data
    assert pinned[1]["Cache-Control"] == "private, max-age=31536000, immutable"  # one picture for good
    outdated = fetch(live, "/thumbnail", image=str(live.paths["coffee"]), v="0" * 32)
    assert outdated[0] == 200 and outdated[1]["Cache-Control"] == "private, no-cache"
    for given in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        again = fetch(live, "/thumbnail", {"If-None-Match": given}, image=str(live.paths["coffee"]))
        assert again[0] == 304 and again[2] == b"" and again[1]["ETag"] == etag, given
    stale = fetch(live, "/thumbnail", {"If-None-Match": '"not-this-one"'}, image=str(live.paths["coffee"]))
    assert stale[0] == 200 and stale[2] == data


def test_files_indexed_before_thumbnails_get_one_on_demand_once(live):
    store = store_of(live)
    made = store.made
    status, headers, data = fetch(live, "/thumbnail", image=str(live.paths["old"]))
    assert status == 200 and headers["Content-Type"] == "image/jpeg"
    with Image.open(io.BytesIO(data)) as thumb:
        assert max(thumb.size) == 256  # decoded for the thumbnail's size: 640 x 480 -> 256 x 192
    assert store.made == made + 1
    assert fetch(live, "/thumbnail", image=str(live.paths["old"]))[2] == data
    assert store.made == made + 1


def test_unusable_files_get_a_clear_json_error(live):
    status, headers, body = fetch(live, "/thumbnail", image=str(live.paths["old_broken"]))
    assert status == 415 and str(live.paths["old_broken"]) in error_of(status, headers, body)
    assert json.loads(body)["reason"] == "not_an_image"
    for route in ("/thumbnail", "/original"):  # recorded as failed: neither is tried
        status, headers, body = fetch(live, route, image=str(live.paths["corrupt"]))
        assert status == 404 and "not an indexed file" in error_of(status, headers, body), route


def test_the_last_file_removed_takes_the_thumbnail_with_it(live):
    store = store_of(live)
    rocket = live.paths["rocket"]
    twin = rocket.with_name("rocket twin.jpg")
    shutil.copy(rocket, twin)
    for path in (rocket, twin):
        assert live.get("/add", image=str(path))[0] == 200
    record = live.service.catalog.get(str(rocket))
    assert record is not None and record.content_hash is not None
    assert record.content_hash in rows(store.folder)
    count = live.get("/stats")[1]["thumbnails"]["count"]

    assert live.get("/remove", image=str(rocket))[0] == 200
    live.service.pipeline.prune_unused()  # what the indexer does when idle
    assert record.content_hash in rows(store.folder)  # the twin still shows it
    assert fetch(live, "/thumbnail", image=str(twin))[0] == 200

    assert live.get("/remove", image=str(twin))[0] == 200
    status, headers, body = fetch(live, "/thumbnail", image=str(twin))
    assert status == 404 and "not an indexed file in the catalogue" in error_of(status, headers, body)
    assert live.service.pipeline.prune_unused()[1] == 1
    assert record.content_hash not in rows(store.folder) and not store.has(record.content_hash)
    stats = live.get("/stats")[1]["thumbnails"]
    assert stats["count"] == count - 1
    assert stats["bytes"] == sum(rows(Path(stats["dir"])).values())
    assert stats["max_bytes"] == 64 * 1024 * 1024


def test_originals_are_served_only_for_indexed_files_inside_the_roots(live, tmp_path):
    png = live.paths["png_named_jpg"]
    assert live.get("/add", image=str(png))[0] == 200
    status, headers, data = fetch(live, "/original", image=str(png))
    assert status == 200 and data == png.read_bytes()
    assert headers["Content-Type"] == "image/png"  # from the bytes, not the name
    assert (
        headers["Content-Disposition"] == "inline; filename=\"really a png.jpg\"; filename*=UTF-8''really%20a%20png.jpg"
    )
    assert headers["X-Content-Type-Options"] == "nosniff"
    # issue 26 W8: a Latin-1 name (not UTF-8) must not be sent as bytes that claim to be UTF-8
    latin = bytes(live.root) + b'/caf\xe9 "x".jpg'  # sent as the bytes they are (percent-encoded)
    shutil.copy(live.paths["coffee"], os.fsdecode(latin))
    assert live.get("/add", image=latin)[0] == 200
    status, headers, data = fetch(live, "/original", image=latin)
    assert status == 200 and data == Path(os.fsdecode(latin)).read_bytes()
    disposition = headers["Content-Disposition"]
    assert disposition == "inline; filename=\"caf_ _x_.jpg\"; filename*=UTF-8''caf%EF%BF%BD%20%22x%22.jpg", disposition
    assert "%E9" not in disposition

    outside = tmp_path / "secret.jpg"
    shutil.copy(live.paths["astronaut"], outside)
    status, headers, body = fetch(live, "/original", image=str(outside))
    assert status == 403 and "outside" in error_of(status, headers, body)
    status, headers, body = fetch(live, "/thumbnail", image=str(outside))
    assert status == 403 and "outside" in error_of(status, headers, body)

    not_indexed = live.paths["astronaut"]  # inside the roots, never added
    for route in ("/original", "/thumbnail"):
        status, headers, body = fetch(live, route, image=str(not_indexed))
        assert status == 404, route
        error_of(status, headers, body)
    status, headers, body = fetch(live, "/original", image=str(live.root))  # a folder
    assert status == 404
    status, headers, body = fetch(live, "/original", image="relative/path.jpg")
    assert status == 400

    # a catalogued name swapped for a link that leads out of the roots
    assert live.get("/add", image=str(live.paths["astronaut"]))[0] == 200
    swapped = live.paths["astronaut"]
    swapped.unlink()
    os.symlink(outside, swapped)
    status, headers, body = fetch(live, "/original", image=str(swapped))
    assert status == 403 and json.loads(body)["reason"] == "outside_roots"
