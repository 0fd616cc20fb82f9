"""Photo metadata: EXIF capture time (mtime fallback, marked), size, camera, GPS; stored by a
migration; date filters on every search against brute force; duplicates sorted by date.

Real files made with Pillow, pillow-heif and tifffile; a real SQLite catalogue and Annoy
index; a real daemon on loopback for the HTTP answers.
"""

from __future__ import annotations

import io
import json
import math
import os
import sqlite3
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from imgsearchd.ingest.pipeline import Pipeline
from imgsearchd.ingest.workqueue import WorkQueue
from imgsearchd.media import formats, photo_metadata
from imgsearchd.media.photo_metadata import PhotoMetadata
from imgsearchd.search import time_range
from imgsearchd.search.index import ExtractorIndex
from imgsearchd.search.scoped import search_scoped
from imgsearchd.store import schema
from imgsearchd.store.catalog import Catalog
from imgsearchd.store.rows import FileResult, SearchScope

from helpers import live_server, server_config
from image_factory import dng_bytes, heif_bytes
from index_helpers import EXTRACTOR, MODEL, random_unit

UTC = UTC


def exif_block(
    taken: str | None = None,
    offset: str | None = None,
    orientation: int | None = None,
    make: str | None = None,
    model: str | None = None,
    gps: bool = False,
) -> Image.Exif:
    exif = Image.Exif()
    if make:
        exif[0x010F] = make
    if model:
        exif[0x0110] = model
    if orientation:
        exif[0x0112] = orientation
    sub = exif.get_ifd(0x8769)
    if taken:
        sub[0x9003] = taken
    if offset:
        sub[0x9011] = offset
    if gps:
        exif.get_ifd(0x8825).update({1: "N", 2: (48.0, 51.0, 24.0), 3: "E", 4: (2.0, 21.0, 3.0)})
    return exif


def encoded(photo: Image.Image, kind: str, exif: Image.Exif | None = None) -> bytes:
    buf = io.BytesIO()
    extra = {"exif": exif.tobytes()} if exif is not None else {}
    photo.convert("RGB").save(buf, kind, quality=85, **extra)
    return buf.getvalue()


# -- reading one file ----------------------------------------------------------------------


def test_exif_time_with_offset_camera_gps_and_turned_size(photos):
    exif = exif_block("2023:07:14 18:30:05", "+02:00", orientation=6, make="Canon", model="EOS R5", gps=True)
    found = photo_metadata.read_metadata(encoded(photos["chelsea"], "JPEG", exif), 0)
    assert found.taken_from == "exif" and found.taken == "2023-07-14T18:30:05+02:00"
    assert found.taken_at == datetime(2023, 7, 14, 16, 30, 5, tzinfo=UTC).timestamp()
    width, height = photos["chelsea"].size
    assert (found.width, found.height) == (height, width)  # orientation 6: shown turned
    assert found.camera == "Canon EOS R5" and found.orientation == 6 and found.has_gps is True
    assert "48" not in json.dumps(found.as_json())  # the flag, never the position


def test_a_time_without_offset_is_local_and_shown_as_written(photos, monkeypatch):
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        found = photo_metadata.read_metadata(encoded(photos["coffee"], "JPEG", exif_block("2020:01:02 03:04:05")), 0)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert found.taken == "2020-01-02T03:04:05" and found.taken_from == "exif"
    assert found.taken_at == datetime(2020, 1, 2, 8, 4, 5, tzinfo=UTC).timestamp()  # EST is UTC-5
    assert found.camera is None and found.has_gps is False


def test_a_date_without_its_own_offset_takes_offset_time(photos):
    exif = exif_block("2022:03:04 05:06:07")
    exif.get_ifd(0x8769)[0x9010] = "-07:00"  # OffsetTime (DateTime's) alone
    found = photo_metadata.read_metadata(encoded(photos["coffee"], "JPEG", exif), 0)
    assert found.taken == "2022-03-04T05:06:07-07:00"
    assert found.taken_at == datetime(2022, 3, 4, 12, 6, 7, tzinfo=UTC).timestamp()


@pytest.mark.parametrize("value", ["0000:00:00 00:00:00", "    :  :     :  :  ", "yesterday", ""])
def test_an_unusable_exif_date_falls_back_to_the_mtime_and_says_so(photos, value):
    mtime_ns = 1_600_000_000_123_000_000
    found = photo_metadata.read_metadata(encoded(photos["rocket"], "JPEG", exif_block(value or None)), mtime_ns)
    assert found.taken_from == "mtime" and found.taken_at == pytest.approx(1_600_000_000.123)
    assert found.width == photos["rocket"].width


def test_a_crafted_camera_name_is_cut_and_printable(photos):
    exif = exif_block(make="\x1b[31m" + "Z" * 100_000, model="\x1b]2;x\x07" + "Q" * 100_000)
    found = photo_metadata.read_metadata(encoded(photos["rocket"], "PNG", exif), 0)
    assert found.camera == "[31m" + "Z" * 60  # no escape left for a terminal, 64 characters at most
    assert photo_metadata.read_metadata(encoded(photos["rocket"], "PNG", exif_block(model="\x07")), 0).camera is None


def test_damaged_bytes_give_the_mtime_and_no_size():
    found = photo_metadata.read_metadata(b"\xff\xd8\xff\xe1 broken", 5_000_000_000)
    assert (found.taken_from, found.taken_at, found.width, found.height) == ("mtime", 5.0, None, None)


@pytest.mark.skipif(not (formats.HEIF_AVAILABLE and formats.AVIF_AVAILABLE), reason="pillow-heif or AVIF missing")
@pytest.mark.parametrize("kind", ["HEIF", "AVIF"])
def test_heic_and_avif_carry_their_exif(photos, kind):
    data = encoded(photos["astronaut"].resize((120, 90)), kind, exif_block("2021:05:06 07:08:09", "-03:00"))
    found = photo_metadata.read_metadata(data, 0)
    assert found.taken == "2021-05-06T07:08:09-03:00" and (found.width, found.height) == (120, 90)


@pytest.mark.skipif(not formats.RAW_AVAILABLE, reason="rawpy is not installed")
def test_a_dng_gives_its_date_camera_and_shown_size(photos):
    photo = photos["chelsea"].resize((200, 120))
    tags = [
        (271, "s", 0, "Testcam", True),
        (272, "s", 0, "Model 9", True),
        (36867, "s", 0, "2018:02:03 04:05:06", True),
    ]
    found = photo_metadata.read_metadata(dng_bytes(photo, orientation=6, extra_tags=tags), 0)
    assert found.taken == "2018-02-03T04:05:06" and found.camera == "Testcam Model 9"
    assert (found.width, found.height) == (120, 200)


def test_the_file_reader_reads_the_header_and_never_raises(tmp_path, photos):
    path = tmp_path / "a.jpg"
    path.write_bytes(encoded(photos["chelsea"], "JPEG", exif_block("2019:09:09 09:09:09", "+00:00")))
    found = photo_metadata.read_metadata_file(str(path), 0, 1 << 30)
    assert found.taken == "2019-09-09T09:09:09+00:00" and found.width == photos["chelsea"].width
    gone = photo_metadata.read_metadata_file(str(tmp_path / "gone.jpg"), 7_000_000_000, 1 << 30)
    assert (gone.taken_from, gone.taken_at, gone.width) == ("mtime", 7.0, None)


def test_a_png_is_read_from_its_header_without_decoding_its_pixels(tmp_path, photos):
    # Pillow's own PNG getexif decodes the whole picture when no eXIf comes before the pixels:
    # a PNG whose pixels are cut short then gave no size at all (and a huge one was decoded
    # past the loader's pixel cap). Cut pixels prove they are never decoded.
    photo = photos["coffee"]
    whole = encoded(photo, "PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(whole[: len(whole) // 2])
    for found in (
        photo_metadata.read_metadata_file(str(path), 9_000_000_000, 1 << 30),
        photo_metadata.read_metadata(whole[: len(whole) // 2], 9_000_000_000),
    ):
        assert (found.width, found.height, found.taken_from) == (*photo.size, "mtime")
    dated = encoded(photo, "PNG", exif_block("2016:01:02 03:04:05", "+05:30"))  # eXIf before the pixels
    assert photo_metadata.read_metadata(dated, 0).taken == "2016-01-02T03:04:05+05:30"


# -- the filter's bounds --------------------------------------------------------------------


def test_bounds_take_their_whole_period(monkeypatch):
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    try:

        def at(year: int, month: int, day: int, hour: int = 0) -> float:
            return datetime(year, month, day, hour, tzinfo=UTC).timestamp()

        assert time_range.parse_range("2023", "2023") == (at(2023, 1, 1), at(2024, 1, 1))
        assert time_range.parse_range("2023-12", "2023-12") == (at(2023, 12, 1), at(2024, 1, 1))
        assert time_range.parse_range("2024-02-28", "2024-02-28") == (at(2024, 2, 28), at(2024, 2, 29))
        assert time_range.parse_range("2024-02-28T10:00", None) == (at(2024, 2, 28, 10), None)
        # a time names its last unit: the second, the minute, the hour; a fraction just the moment
        assert time_range.parse_range(None, "2024-02-28T10:00:00+02:00") == (None, at(2024, 2, 28, 8) + 1)
        assert time_range.parse_range(None, "2024-02-28T10:00:00Z") == (None, at(2024, 2, 28, 10) + 1)
        ten = at(2024, 2, 28, 10)
        assert time_range.parse_range("2024-02-28 10:30", "2024-02-28T10:30") == (ten + 1800, ten + 1860)
        assert time_range.parse_range("2024-02-28T10", "2024-02-28T10") == (ten, ten + 3600)
        assert time_range.parse_range(None, "2024-02-28T10:00:00.250") == (None, ten + 0.25)
        # ISO's other day forms are whole days too, not the day's first moment
        assert time_range.parse_range("20240228", "2024-W09-3") == (at(2024, 2, 28), at(2024, 2, 29))
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


@pytest.mark.parametrize(
    ("after", "before", "needle"),
    [
        ("last week", None, "taken_after='last week' is not a date or time"),
        (None, "2023-13", "taken_before='2023-13'"),
        ("2024-01-01", "2023-12-31", "is not before"),
        ("2024-05-05T10:00:00.5", "2024-05-05T10:00:00.5", "is not before"),
        ("0001", None, "taken_after='0001' is not a date or time"),  # year 0 in a zone west of UTC
    ],
)
def test_bad_bounds_are_refused_with_the_parameter_named(after, before, needle, monkeypatch):
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        with pytest.raises(time_range.BadTimeBound, match="taken_") as caught:
            time_range.parse_range(after, before)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()
    assert needle in str(caught.value)


# -- the catalogue: migration and the fill of older rows ----------------------------------------


def test_a_version_2_catalogue_is_migrated_and_its_files_get_their_metadata(tmp_path, photos, efficientnet):
    db = tmp_path / "catalog.sqlite3"
    conn = sqlite3.connect(db, isolation_level=None)
    for version in (1, 2):
        conn.executescript(schema.MIGRATIONS[version])
    conn.execute("PRAGMA user_version=2")
    dated = tmp_path / "dated.jpg"
    dated.write_bytes(encoded(photos["chelsea"], "JPEG", exif_block("2017:06:05 04:03:02", "+01:00")))
    gone = tmp_path / "gone.jpg"
    for i, path in enumerate((dated, gone)):
        conn.execute(
            "INSERT INTO files (path, size, mtime_ns, content_hash, state, seq, updated_at) VALUES (?, 1, ?, ?, ?, 1, 0)",
            (bytes(path), 3_000_000_000 * (i + 1), f"h{i}", "indexed"),
        )
    conn.close()
    with Catalog(db) as catalog:
        assert catalog._reader().execute("PRAGMA user_version").fetchone()[0] == schema.VERSION
        assert [row[1] for row in catalog.without_metadata(10)] == [str(dated), str(gone)]
        seq = catalog.current_seq()
        assert catalog.count_without_metadata() == 2  # /stats metadata.missing
        with Pipeline(catalog, {"efficientnet": efficientnet}) as pipeline:
            assert pipeline.fill_metadata() == 2
            assert pipeline.fill_metadata() == 0  # nothing left: the idle loop stops asking
        assert catalog.current_seq() == seq  # no change number: the indexes have nothing to do
        assert catalog.count_without_metadata() == 0
        facts = catalog.result_facts([str(dated), str(gone)])
        assert facts[str(dated)][1] is not None and facts[str(dated)][1].taken == "2017-06-05T04:03:02+01:00"
        assert facts[str(gone)][1] == photo_metadata.mtime_only(6_000_000_000)


def _version_2_catalogue(db: Path, paths: list[Path]) -> None:
    """A catalogue as schema 2 left it: these files indexed, no metadata columns."""
    conn = sqlite3.connect(db, isolation_level=None)
    for version in (1, 2):
        conn.executescript(schema.MIGRATIONS[version])
    conn.execute("PRAGMA user_version=2")
    rows = [(bytes(path), 1_000_000_000 * (i + 1), f"h{i}") for i, path in enumerate(paths)]
    conn.executemany(
        "INSERT INTO files (path, size, mtime_ns, content_hash, state, seq, updated_at)"
        " VALUES (?, 1, ?, ?, 'indexed', 1, 0)",
        rows,
    )
    conn.close()


def test_the_fill_keeps_what_the_pipeline_wrote_and_stops_at_its_budget(tmp_path, efficientnet):
    paths = [tmp_path / f"gone{i}.jpg" for i in range(3)]
    _version_2_catalogue(tmp_path / "catalog.sqlite3", paths)
    with Catalog(tmp_path / "catalog.sqlite3") as catalog:
        first = catalog.without_metadata(1)[0][0]
        catalog.fill_metadata([(first, _metadata(START))])  # as the pipeline would write it first
        catalog.fill_metadata([(first, photo_metadata.mtime_only(0))])  # a fill that read it before
        assert catalog.metadata_for([first])[first].taken_at == START
        with Pipeline(catalog, {"efficientnet": efficientnet}) as pipeline:
            assert pipeline.fill_metadata(budget_s=0.0) == 1  # one file, then the budget is spent
            assert catalog.count_without_metadata() == 1


def test_the_idle_loop_fills_without_sleeping_and_again_for_files_back_online(tmp_path, efficientnet):
    disk = tmp_path / "disk"
    paths = [disk / ("away" if i < 50 else "here") / f"{i}.jpg" for i in range(450)]
    _version_2_catalogue(tmp_path / "catalog.sqlite3", paths)
    with (
        Catalog(tmp_path / "catalog.sqlite3") as catalog,
        Pipeline(catalog, {"efficientnet": efficientnet}) as pipeline,
    ):
        assert pipeline.set_offline(str(disk / "away")) == 50  # an unmounted disk: not filled
        queue, stop = WorkQueue(), threading.Event()
        worker = threading.Thread(target=pipeline.run, args=(queue, stop, 1.0))
        worker.start()
        try:
            # two fills of 200; with the loop's 1 s sleep before each this took over 2 s
            assert wait_until(lambda: catalog.count_without_metadata() == 0, 1.8)
            assert pipeline.restore(str(p) for p in paths[:50]) == 50
            # the loop looks again (after at most one 1 s sleep) and fills the 50
            everything = SearchScope(taken_before=1e12)
            assert wait_until(lambda: catalog.count_in(everything) == 450, 3.0)
        finally:
            stop.set()
            worker.join()


def wait_until(check, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


# -- date filters against brute force, on a real catalogue and Annoy index -------------------------

DIM = 48
START = datetime(2015, 1, 1, tzinfo=UTC).timestamp()
YEAR = 365.25 * 86400


def _metadata(taken_at: float) -> PhotoMetadata:
    text = datetime.fromtimestamp(taken_at, UTC).isoformat(timespec="seconds")
    return PhotoMetadata(taken_at, text, "exif", 10, 10)


@pytest.fixture(scope="module")
def dated_library(tmp_path_factory):
    """1,200 files over ten years in two folders, 50 without metadata, then fresh files and removals."""
    tmp = tmp_path_factory.mktemp("dated")
    catalog = Catalog(tmp / "catalog.sqlite3")
    rng = np.random.default_rng(5)
    vectors = random_unit(1300, DIM, seed=21)

    def record(start: int, stop: int, tag: str) -> None:
        catalog.record_batch(
            FileResult(
                f"/lib/{'a' if k % 3 else 'b'}/{tag}{k:05d}.jpg",
                100,
                k,
                f"{tag}{k}",
                vectors={EXTRACTOR: (MODEL, vectors[k])},
                metadata=None if k % 24 == 0 else _metadata(START + float(rng.uniform(0, 10)) * YEAR),
            )
            for k in range(start, stop)
        )

    record(0, 1200, "base")
    quiet = {"rebuild_after_changes": 10**9, "rebuild_after_seconds": 10**6}
    index = ExtractorIndex(
        catalog, tmp / "index", EXTRACTOR, MODEL, DIM, kind="annoy", exact_below=100, search_k=10**6, **quiet
    )
    index.open()
    try:
        assert index.wait_idle(60) and index.stats()["mode"] == "annoy"
        record(1200, 1300, "fresh")
        catalog.remove_paths([f"/lib/a/base{k:05d}.jpg" for k in range(1, 60, 3)])
        index.refresh()
        yield catalog, index
    finally:
        index.close()
        catalog.close()


def brute_force(catalog: Catalog, query: np.ndarray, scope: SearchScope, limit: int) -> list[int]:
    sql = "SELECT f.id, f.path, f.taken_at, v.vector FROM files f JOIN vectors v USING (content_hash)"
    rows = catalog._reader().execute(sql + " WHERE f.state='indexed'").fetchall()
    kept = []
    for file_id, path, taken_at, blob in rows:
        if scope.folder and not os.fsdecode(path).startswith(scope.folder + "/"):
            continue
        if scope.by_date and taken_at is None:
            continue
        if scope.taken_after is not None and taken_at < scope.taken_after:
            continue
        if scope.taken_before is not None and taken_at >= scope.taken_before:
            continue
        kept.append((float(np.frombuffer(blob, "<f4") @ query), file_id))
    kept.sort(reverse=True)
    return [file_id for _, file_id in kept[:limit]]


RANGES = [  # years after START: wide, narrow, open-ended
    (0.0, 10.0),
    (3.0, 3.2),
    (7.5, 7.51),
    (None, 1.0),
    (9.0, None),
    (4.0, 6.0),
]


@pytest.mark.parametrize("folder", [None, "/lib/b"])
@pytest.mark.parametrize("cost", [0.0, math.inf], ids=["exact", "overfetch"])
def test_date_filters_equal_brute_force(dated_library, folder, cost):
    catalog, index = dated_library
    for n, (low, high) in enumerate(RANGES):
        scope = SearchScope(
            folder,
            None if low is None else START + low * YEAR,
            None if high is None else START + high * YEAR,
        )
        for q in random_unit(4, DIM, seed=100 + n):
            found = search_scoped(index, q, scope, 10, exact_cost=cost)
            assert [h.id for h, _ in found.hits] == brute_force(catalog, q, scope, 10), (scope, found.method)


def test_a_date_range_is_counted_from_the_index_alone(dated_library):
    catalog = dated_library[0]
    reader = catalog._reader()
    statements: list[str] = []
    reader.set_trace_callback(statements.append)
    try:
        count = catalog.count_in(SearchScope(taken_after=START, taken_before=START + YEAR))
    finally:
        reader.set_trace_callback(None)
    ours = [s for s in statements if "COUNT(*)" in s]
    assert len(ours) == 1 and count > 0
    plan = " ".join(str(row) for row in reader.execute("EXPLAIN QUERY PLAN " + ours[0]))
    assert "COVERING INDEX files_by_taken" in plan, plan  # no row read per file in the range


def test_a_range_with_nothing_in_it_answers_with_no_hits(dated_library):
    _, index = dated_library
    scope = SearchScope(None, START - 5 * YEAR, START - 4 * YEAR)
    assert search_scoped(index, random_unit(1, DIM, seed=1)[0], scope, 10).hits == []


# -- over HTTP: results carry metadata, every search takes the filters, duplicates sort by date --------


@pytest.fixture(scope="module")
def dated_daemon(tmp_path_factory, photos):
    root = tmp_path_factory.mktemp("dated-daemon")
    folder = root / "photos"
    folder.mkdir()
    files = {
        "chelsea-2019.jpg": encoded(photos["chelsea"], "JPEG", exif_block("2019:08:01 12:00:00", "+00:00")),
        "chelsea-2015.jpg": encoded(photos["chelsea"].resize((400, 300)), "JPEG", exif_block("2015:03:01 10:00:00")),
        "coffee-2021.jpg": encoded(photos["coffee"], "JPEG", exif_block("2021:06:01 08:00:00", "+02:00")),
        "coffee-2022.jpg": encoded(photos["coffee"].resize((300, 200)), "JPEG", exif_block("2022:01:01 09:00:00")),
        "rocket.png": encoded(photos["rocket"], "PNG"),
    }
    if formats.HEIF_AVAILABLE:
        files["astronaut-2023.heic"] = heif_bytes(photos["astronaut"], "HEIF")
    for name, data in files.items():
        (folder / name).write_bytes(data)
    png_time = datetime(2016, 4, 4, 4, 4, tzinfo=UTC).timestamp()
    os.utime(folder / "rocket.png", (png_time, png_time))
    with live_server(server_config(root, server={"allowed_roots": [str(root)]})) as live:
        status, body = live.get("/add", image=str(folder))
        assert status == 202, body
        assert live.wait_job(body["job"])["state"] == "done"
        live.folder = folder  # type: ignore[attr-defined]
        live.png_time = png_time  # type: ignore[attr-defined]
        yield live


def names(body: dict) -> list[str]:
    return [Path(r["image"]).name for r in body["results"]]


def test_results_carry_capture_time_source_and_size(dated_daemon, photos):
    status, body = dated_daemon.get("/search", image=str(dated_daemon.folder / "chelsea-2019.jpg"), limit=20)
    assert status == 200, body
    by_name = {Path(r["image"]).name: r for r in body["results"]}
    assert by_name["chelsea-2019.jpg"]["taken"] == "2019-08-01T12:00:00+00:00"
    assert by_name["chelsea-2019.jpg"]["taken_from"] == "exif"
    assert (by_name["chelsea-2015.jpg"]["width"], by_name["chelsea-2015.jpg"]["height"]) == (400, 300)
    rocket = by_name["rocket.png"]
    assert rocket["taken_from"] == "mtime"
    assert datetime.fromisoformat(rocket["taken"]).timestamp() == dated_daemon.png_time
    assert all(r["gps"] is False for r in body["results"])
    status, stats = dated_daemon.get("/stats")
    assert status == 200 and stats["metadata"] == {"missing": 0}


def test_every_kind_of_search_takes_the_date_filters(dated_daemon, photos):
    live, folder = dated_daemon, dated_daemon.folder
    query = str(folder / "chelsea-2019.jpg")
    status, body = live.get("/search", image=query, limit=20, taken_after="2019", taken_before="2021-06")
    assert status == 200 and sorted(names(body)) == ["chelsea-2019.jpg", "coffee-2021.jpg"], body
    status, body = live.get("/search", image=query, limit=20, taken_before="2016-04-04T04:04:01Z")
    assert sorted(names(body)) == ["chelsea-2015.jpg", "rocket.png"]  # the PNG by its mtime
    jpeg = encoded(photos["coffee"].resize((200, 150)), "JPEG")
    status, body = live.post("/search", jpeg, "application/octet-stream", limit=20, taken_after="2022")
    assert status == 200 and "coffee-2022.jpg" in names(body) and "coffee-2021.jpg" not in names(body), body
    combined = {"query": [{"image": query, "weight": 1.0}], "limit": 20, "taken_after": "2015-01"}
    combined["taken_before"] = "2015-12"
    status, body = live.post("/search", json.dumps(combined).encode(), "application/json")
    assert status == 200 and names(body) == ["chelsea-2015.jpg"], body


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"taken_after": "soon"}, "taken_after='soon' is not a date or time"),
        ({"taken_after": "2022", "taken_before": "2021"}, "is not before"),
        ({"taken_before": b"2021\xff"}, "taken_before='2021\\udcff' is not a date"),  # not UTF-8: not dropped
    ],
)
def test_a_bad_bound_is_a_400_naming_it(dated_daemon, params, needle):
    status, body = dated_daemon.get("/search", image=str(dated_daemon.folder / "rocket.png"), **params)
    assert status == 400 and needle in body["error"], body


def test_duplicates_sorted_by_capture_time(dated_daemon):
    deadline = time.monotonic() + 120
    while True:
        status, body = dated_daemon.get("/duplicates", threshold=0.8, sort="taken")
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert status == 200 and body["sort"] == "taken", body
    groups = [[Path(m["image"]).name for m in g["members"]] for g in body["groups"]]
    # the groups by their oldest photo; in each the keeper first (the most pixels), then the others oldest first
    assert groups[:2] == [["chelsea-2019.jpg", "chelsea-2015.jpg"], ["coffee-2021.jpg", "coffee-2022.jpg"]], groups
    first = body["groups"][0]["members"][1]
    assert first["taken"] == "2015-03-01T10:00:00" and first["width"] == 400
    status, body = dated_daemon.get("/duplicates", threshold=0.8, sort="newest")
    assert status == 400 and "sort must be one of similarity, taken" in body["error"]


def test_mtime_fallback_is_recent_for_a_file_written_now(dated_daemon, photos):
    path = dated_daemon.folder.parent / "new.jpg"  # inside the roots, not watched: added by hand
    path.write_bytes(encoded(photos["coffee"].resize((64, 64)), "JPEG"))
    status, body = dated_daemon.get("/add", image=str(path))
    assert status == 200, body
    status, body = dated_daemon.get("/search", image=str(path), limit=1, taken_after=_iso(time.time() - 3600))
    assert status == 200 and names(body) == ["new.jpg"] and body["results"][0]["taken_from"] == "mtime", body


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat()
