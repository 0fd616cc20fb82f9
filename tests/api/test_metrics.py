"""/metrics: a real daemon on loopback, read with prometheus-client's own parser; values move with work."""

from __future__ import annotations

import http.client
import io
import os
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from imgsearchd.bulk.status import BackfillProgress, State
from imgsearchd.store.catalog import Catalog

from helpers import Live, live_server, server_config, wait_for


def scrape(live: Live) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics, by name and labels, as prometheus-client's parser reads it."""
    req = urllib.request.Request(f"{live.base}/metrics", headers={"Authorization": f"Bearer {live.token}"})
    with urllib.request.urlopen(req, timeout=30) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode("utf-8")
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def test_metrics_parse_and_move_with_work(tmp_path, photos):
    watched, outside = tmp_path / "watched", tmp_path / "outside"
    watched.mkdir()
    outside.mkdir()
    names = ("chelsea", "coffee", "astronaut")
    for name in names:
        photos[name].convert("RGB").save(outside / f"{name}.jpg", quality=90)
    (outside / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    config = server_config(
        tmp_path,
        server={"allowed_roots": [str(outside)], "token": "t0ken"},
        watch={"directories": [str(watched)]},
    )
    with live_server(config) as live:
        before = scrape(live)
        assert value(before, "imgsearchd_ready") == 1
        # every configured model runs: not degraded, no model stands in (test_health has the fallback)
        assert value(before, "imgsearchd_health_degraded") == 0
        assert value(before, "imgsearchd_extractor_fallback", configured="efficientnet", running="efficientnet") == 0
        assert value(before, "imgsearchd_images_indexed") == 0
        assert value(before, "imgsearchd_vectors", extractor="efficientnet") == 0
        # every series exists at 0 before its first event (Prometheus' increase() needs the 0)
        for kind in ("path", "upload", "text", "combined", "hash"):
            assert value(before, "imgsearchd_search_seconds_count", kind=kind) == 0
        assert value(before, "imgsearchd_images_failed", reason="corrupt") == 0
        assert value(before, "imgsearchd_indexing_failed_total", reason="not_an_image") == 0
        folder = str(watched)
        wait_for(
            lambda: value(scrape(live), "imgsearchd_watch_state", folder=folder, state="watching") == 1,
            what="the folder to be watched",
        )
        after_watch = scrape(live)
        assert value(after_watch, "imgsearchd_watch_state", folder=folder, state="starting") == 0

        for name in names:
            status, body = live.get("/add", image=str(outside / f"{name}.jpg"))
            assert status == 200, body
        status, body = live.get("/add", image=str(outside / "broken.jpg"))
        assert status >= 400, body
        status, body = live.get("/search", image=str(outside / "chelsea.jpg"), limit=3)
        assert status == 200, body
        upload = io.BytesIO()
        photos["coffee"].convert("RGB").save(upload, "JPEG")
        status, body = live.post("/search", upload.getvalue(), "image/jpeg")
        assert status == 200, body
        status, body = live.get("/search", image=str(tmp_path / "nowhere.jpg"))
        assert status >= 400  # an error is not a search answered: not timed

        after = scrape(live)
        assert value(after, "imgsearchd_images_indexed") == 3
        assert value(after, "imgsearchd_files") == 4
        assert value(after, "imgsearchd_vectors", extractor="efficientnet") == 3
        assert value(after, "imgsearchd_images_failed", reason=body_reason(live)) == 1
        assert sum(v for (n, _), v in after.items() if n == "imgsearchd_images_failed") == 1
        assert sum(v for (n, _), v in after.items() if n == "imgsearchd_indexing_failed_total") == 1
        assert value(after, "imgsearchd_indexing_files_total", outcome="embedded") == 3
        assert value(after, "imgsearchd_queue_depth") == 0
        assert value(after, "imgsearchd_search_seconds_count", kind="path") == 1
        assert value(after, "imgsearchd_search_seconds_count", kind="upload") == 1
        assert value(after, "imgsearchd_search_seconds_count", kind="text") == 0
        assert 0 < value(after, "imgsearchd_search_seconds_sum", kind="upload") < 60
        assert value(after, "imgsearchd_search_seconds_bucket", kind="upload", le="+Inf") == 1

        status, body = live.request("POST", "/rebuild")[:2]
        assert status == 202, body
        wait_for(
            lambda: value(scrape(live), "imgsearchd_index_vectors", extractor="efficientnet") == 3,
            what="the rebuilt index",
        )
        built = scrape(live)
        assert value(built, "imgsearchd_index_build_seconds", extractor="efficientnet") > 0
        assert value(built, "imgsearchd_index_last_build_timestamp_seconds", extractor="efficientnet") > 1.7e9

        # A backfill in another process writes its progress into the same catalogue.
        assert not [name for name, _ in built if name.startswith("imgsearchd_backfill")]
        with Catalog(live.service.config.catalog_path) as catalog:
            progress = BackfillProgress(folders=[str(outside)], address="auto", state=State.RUNNING, planned=9)
            progress.done = progress.embedded = 4
            progress.save(catalog)
        backfill = scrape(live)
        assert value(backfill, "imgsearchd_backfill_running") == 1
        assert value(backfill, "imgsearchd_backfill_files", stage="planned") == 9
        assert value(backfill, "imgsearchd_backfill_files", stage="done") == 4


def body_reason(live: Live) -> str:
    """The failure reason /stats gives for the broken file (the metric must name the same)."""
    status, stats = live.get("/stats")
    assert status == 200
    reasons = list(stats["failed"]["by_reason"])
    assert len(reasons) == 1, reasons
    return reasons[0]


def test_metrics_need_the_token_and_a_good_host(tmp_path: Path):
    config = server_config(tmp_path, server={"token": "t0ken"})
    with live_server(config, load=False) as live:
        host, port = live.base.removeprefix("http://").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        conn.request("GET", "/metrics")
        response = conn.getresponse()
        assert response.status == 401 and b"token" in response.read()
        conn.request("GET", "/metrics", headers={"Host": "evil.example", "Authorization": "Bearer t0ken"})
        response = conn.getresponse()
        assert response.status == 403, response.read()
        response.read()
        samples = scrape(live)  # answered while starting, with what is known
        assert value(samples, "imgsearchd_ready") == 0
        assert ("imgsearchd_images_indexed", ()) not in samples
        conn.close()


def test_a_watched_folder_whose_name_is_not_utf8_is_a_label_not_a_500(tmp_path):
    """Issue 26 M4: ``--watch .../w_caf\\xe9`` made every scrape a 500 (UnicodeEncodeError):
    a Prometheus label must be UTF-8. The name's odd byte is written as an escape."""
    watched = os.fsdecode(bytes(tmp_path) + b"/w_caf\xe9")
    os.mkdir(watched)
    config = server_config(tmp_path, server={"token": "t0ken"})
    with live_server(config, extra_watch=[watched]) as live:
        label = str(tmp_path) + "/w_caf\\xe9"
        watching = ("imgsearchd_watch_state", (("folder", label), ("state", "watching")))
        wait_for(lambda: scrape(live).get(watching) == 1, what="the folder watched, under its escaped name")
