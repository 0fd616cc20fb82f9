"""server: the HTTP API against a real server on a free loopback port."""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imgsearchd.api.spec import spec
from imgsearchd.extractors import precision
from openapi_checker import OpenApiChecker

import image_factory as make
from helpers import CLIP_RANDOM_FP32, EFFICIENTNET_FP32, live_server, server_config

NAMES = ("chelsea", "coffee", "astronaut", "rocket", "motorcycle_left", "motorcycle_right")


def save_photos(folder: Path, photos, names=NAMES) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in names:
        paths[name] = folder / f"{name}.jpg"
        photos[name].convert("RGB").save(paths[name], quality=90)
    return paths


def multipart(field: str, filename: str, data: bytes, extra: dict[str, str] | None = None) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for key, value in (extra or {}).items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode())
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode()
        + data
        + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


@pytest.fixture(scope="module")
def server(tmp_path_factory, photos):
    root = tmp_path_factory.mktemp("srv")
    paths = save_photos(root / "photos", photos)
    # precision "auto", as a user's daemon runs: the one module whose daemon takes this CPU's own path
    # (bf16 where it has avx512_bf16); its tests compare distances, not vectors across precisions.
    auto = {**EFFICIENTNET_FP32, "precision": "auto"}
    config = server_config(root, server={"allowed_roots": [str(root)]}, **{"extractors.efficientnet": auto})
    with live_server(config) as live:
        for path in paths.values():
            status, body = live.get("/add", image=str(path))
            assert status == 200, body
        live.paths = paths
        live.root = root
        yield live


@pytest.fixture(scope="module")
def openapi():
    return OpenApiChecker()


# -- the original API -----------------------------------------------------------------------


def test_original_requests_and_answer_shapes(server, openapi):
    status, body = server.get("/search", image=str(server.paths["motorcycle_left"]), limit=10)
    assert status == 200
    openapi.check("GET", "/search", status, body)
    results = body["results"]
    assert len(results) == len(NAMES)
    assert results[0]["image"] == str(server.paths["motorcycle_left"]) and results[0]["distance"] < 1e-3
    assert results[1]["image"] == str(server.paths["motorcycle_right"])
    assert all(isinstance(r["image"], str) and isinstance(r["distance"], float) for r in results)
    assert [r["distance"] for r in results] == sorted(r["distance"] for r in results)
    for r in results:
        assert r["score"] == pytest.approx(1 - r["distance"] ** 2 / 2, abs=1e-4)
    status, body = server.get("/search", image=str(server.paths["coffee"]))  # limit defaults to 10
    assert status == 200 and len(body["results"]) == len(NAMES)
    status, stats = server.get("/stats")
    assert status == 200
    openapi.check("GET", "/stats", status, stats)
    assert stats["images"] == len(NAMES) and stats["active_extractor"] == "efficientnet"
    assert stats["extractors"]["efficientnet"]["vectors"] == len(NAMES)
    chosen = stats["extractors"]["efficientnet"]["precision"]
    expected = precision.plan("auto", torch.device("cpu"), quantisable=False)  # this CPU's choice
    assert chosen["asked"] == "auto" and chosen["used"] == expected.candidate and chosen["reason"] == expected.reason
    assert stats["extractors"]["efficientnet"]["channels_last"] is True


def test_max_distance_cuts_the_list(server):
    status, body = server.get("/search", image=str(server.paths["motorcycle_left"]), max_distance=0.6)
    assert status == 200
    assert [r["image"] for r in body["results"]] == [
        str(server.paths["motorcycle_left"]),
        str(server.paths["motorcycle_right"]),
    ]


def test_search_by_indexed_path_costs_no_forward_pass(server):
    extractor = server.service.loaded.default
    before = extractor.forward_passes
    for name in NAMES:
        assert server.get("/search", image=str(server.paths[name]), limit=3)[0] == 200
    assert extractor.forward_passes == before


def test_search_by_unindexed_path_embeds_it(server, photos):
    path = server.root / "not-added" / "fresh.jpg"  # inside the allowed root, never added nor watched
    path.parent.mkdir(exist_ok=True)
    photos["motorcycle_right"].convert("RGB").rotate(5).save(path)
    extractor = server.service.loaded.default
    passes = extractor.forward_passes
    status, body = server.get("/search", image=str(path), limit=2)
    assert status == 200 and extractor.forward_passes == passes + 1
    assert body["results"][0]["image"] == str(server.paths["motorcycle_right"])
    assert server.service.catalog.get(str(path)) is None  # searching does not index


def test_search_by_upload_raw_multipart_and_base64(server, openapi):
    data = server.paths["chelsea"].read_bytes()
    status, raw = server.post("/search", data, "image/jpeg", limit=3)
    openapi.check("POST", "/search", status, raw)
    body, content_type = multipart("image", "cat.jpg", data, {"limit": "3"})
    status2, multi = server.post("/search", body, content_type)
    status3, b64 = server.post(
        "/search",
        json.dumps({"image_base64": base64.b64encode(data).decode(), "limit": 3}).encode(),
        "application/json",
    )
    assert (status, status2, status3) == (200, 200, 200)
    for answer in (raw, multi, b64):
        assert len(answer["results"]) == 3
        assert answer["results"][0]["image"] == str(server.paths["chelsea"])
        assert answer["results"][0]["distance"] < 1e-3


def test_add_file_says_what_happened(server, photos, openapi):
    path = server.root / "photos" / "extra.png"
    photos["immunohistochemistry"].save(path)
    status, body = server.get("/add", image=str(path))
    openapi.check("GET", "/add", status, body)
    assert (status, body["status"], body["embedded"]) == (200, "indexed", True)
    status, body = server.get("/add", image=str(path))
    assert (status, body["status"]) == (200, "unchanged")
    status, found = server.get("/search", image=str(path), limit=1)
    assert found["results"][0]["image"] == str(path)  # visible at once, before any rebuild
    status, body = server.get("/remove", image=str(path))
    openapi.check("GET", "/remove", status, body)
    assert (status, body["removed"]) == (200, 1)
    status, found = server.get("/search", image=str(server.paths["coffee"]), limit=50)
    assert str(path) not in [r["image"] for r in found["results"]]
    status, body = server.get("/remove", image=str(path))
    openapi.check("GET", "/remove", status, body)
    assert status == 404


def test_folder_add_answers_at_once_and_the_job_finishes(server, photos, openapi, caplog):
    folder = server.root / "photos" / "big"
    folder.mkdir()
    photos["coffee"].convert("RGB").resize((64, 64)).save(folder / "real-0.jpg")
    photos["rocket"].convert("RGB").resize((64, 64)).save(folder / "real-1.jpg")
    caplog.set_level(logging.INFO, logger="imgsearchd.ingest.jobs")
    for i in range(4000):  # a large folder: not pictures, so the job is quick, but every one is walked
        (folder / f"junk-{i:05d}.jpg").write_bytes(b"not a picture")
    started = time.monotonic()
    status, body = server.get("/add", image=str(folder))
    elapsed = time.monotonic() - started
    openapi.check("GET", "/add", status, body)
    assert status == 202 and elapsed < 1.0, elapsed
    job = server.wait_job(body["job"])
    openapi.check("GET", "/jobs/{job_id}", 200, job)
    deadline = time.monotonic() + 5  # the line is logged just after the state turns done
    while not any(
        r.name == "imgsearchd.ingest.jobs" and f"folder job {body['job']} done: 4002 files" in r.getMessage()
        for r in caplog.records
    ):
        assert time.monotonic() < deadline, "no 'folder job ... done' log line"
        time.sleep(0.05)
    assert job["state"] == "done" and job["found"] == 4002 and job["done"] == 4002 and job["progress"] == 1.0
    assert job["outcomes"] == {"embedded": 2, "failed:not_an_image": 4000}
    status, jobs = server.get("/jobs")
    openapi.check("GET", "/jobs", status, jobs)
    assert any(j["id"] == body["job"] for j in jobs["jobs"])
    status, stats = server.get("/stats")
    openapi.check("GET", "/stats", status, stats)
    assert stats["failed"]["by_reason"]["not_an_image"] >= 4000
    assert server.get("/remove", image=str(folder))[1]["removed"] == 4002


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "params,status,needle",
    [
        ({"limit": "0"}, 400, "limit"),
        ({"limit": "1001"}, 400, "limit"),
        ({"limit": "ten"}, 400, "limit"),
        ({"max_distance": "far"}, 400, "max_distance"),
        ({"extractor": "vgg"}, 400, "not running"),
        ({"image": None}, 400, "missing parameter 'image'"),
        ({"image": "relative/path.jpg"}, 400, "absolute"),
        ({"image": "/no/such/dir/x.jpg"}, 403, "outside"),
    ],
)
def test_bad_parameters(server, openapi, params, status, needle):
    query = {"image": str(server.paths["coffee"]), **params}
    query = {k: v for k, v in query.items() if v is not None}
    got, body = server.get("/search", **query)
    openapi.check("GET", "/search", got, body)
    assert got == status and needle in body["error"]


LIMIT_0 = "limit must be an integer from 1 to 1000, not 0"
THRESHOLD_2 = "threshold must be a cosine above 0 and at most 1, not 2.0"
OUTSIDE = "/etc is outside the watched folders and server.allowed_roots"
EMPTY_FOLDER = "parameter 'folder' is empty; leave it out to search everything"
BOGUS_KIND = "kind must be one of all, copies, identical, similar, not 'bogus'"


@pytest.mark.parametrize(
    "route,params,status,error",
    [
        # the folder is checked in its turn, after kind and before offset, limit and sort
        ("/duplicates", {"folder": "/etc", "offset": "-1"}, 403, OUTSIDE),
        ("/duplicates", {"folder": "/etc", "sort": "bogus"}, 403, OUTSIDE),
        ("/duplicates", {"folder": "", "limit": "0"}, 400, EMPTY_FOLDER),
        ("/duplicates", {"folder": "FILE", "kind": "bogus"}, 400, BOGUS_KIND),
        # a value that is not a number does not beat an earlier one out of bounds
        ("/duplicates", {"threshold": "2", "offset": "abc"}, 400, THRESHOLD_2),
        ("/duplicates", {"kind": "bogus", "limit": "x"}, 400, BOGUS_KIND),
        ("/duplicates", {"kind": "bogus", "threshold": "2"}, 400, THRESHOLD_2),
        ("/duplicates", {"extractor": "nope", "limit": "0"}, 400, LIMIT_0),
        ("/search", {"image": "IMAGE", "limit": "0", "max_distance": "abc"}, 400, LIMIT_0),
    ],
)
def test_the_first_bad_parameter_answers(server, openapi, route, params, status, error):
    """With several bad parameters, the first in the order they were always checked answers."""
    replace = {"FILE": str(server.paths["coffee"]), "IMAGE": str(server.paths["coffee"])}
    got, body = server.get(route, **{k: replace.get(v, v) for k, v in params.items()})
    openapi.check("GET", route, got, body)
    assert (got, body["error"]) == (status, error), body


def test_the_first_bad_parameter_of_an_upload_answers(server, openapi):
    data = server.paths["coffee"].read_bytes()
    status, body = server.post("/search", data, "image/jpeg", limit="0", max_distance="abc")
    openapi.check("POST", "/search", status, body)
    assert (status, body["error"]) == (400, LIMIT_0)
    as_json = json.dumps({"limit": 0, "max_distance": float("nan"), "text": "x"}).encode()  # NaN: Python's JSON
    status, body = server.post("/search", as_json, "application/json")
    assert (status, body["error"]) == (400, LIMIT_0)


def test_missing_file_is_404(server, openapi):
    for route in ("/search", "/add"):
        status, body = server.get(route, image=str(server.root / "photos" / "gone.jpg"))
        openapi.check("GET", route, status, body)
        assert status == 404 and "gone.jpg" in body["error"]


def test_not_an_image_is_415(server, openapi):
    path = make.text_as_jpeg(server.root / "photos" / "notes.jpg")
    for route in ("/search", "/add"):
        status, body = server.get(route, image=str(path))
        openapi.check("GET", route, status, body)
        assert status == 415 and body["reason"] == "not_an_image"
    status, body = server.post("/search", b"plain text, not an image", "application/octet-stream")
    openapi.check("POST", "/search", status, body)
    assert status == 415
    path.unlink()
    server.get("/remove", image=str(path))


def test_bad_uploads(server, openapi):
    for body, content_type, needle in [
        (b"", "application/octet-stream", "no image"),
        (b"{not json", "application/json", "not valid JSON"),
        (json.dumps({"image_base64": "!!!"}).encode(), "application/json", "not valid base64"),
        (multipart("picture", "x.jpg", b"123")[0], multipart("picture", "x.jpg", b"123")[1], "no field 'image'"),
    ]:
        if "boundary" in content_type:
            data, content_type = multipart("picture", "x.jpg", b"123")
            body = data
        status, answer = server.post("/search", body, content_type)
        openapi.check("POST", "/search", status, answer)
        assert status == 400 and needle in answer["error"], answer


def test_unknown_route_and_method_are_json(server):
    status, body, headers = server.request("GET", "/nope")
    assert status == 404 and "error" in body and headers["Content-Type"].startswith("application/json")
    status, body, _ = server.request("DELETE", "/search")
    assert status == 405 and "error" in body


def test_upload_over_the_cap_is_413(tmp_path, photos, openapi):
    save_photos(tmp_path / "photos", photos, ("coffee",))
    with live_server(server_config(tmp_path, server={"max_upload_mb": 0.01})) as live:
        data = (tmp_path / "photos" / "coffee.jpg").read_bytes()
        assert len(data) > 0.01 * 1024 * 1024
        status, body = live.post("/search", data, "image/jpeg")
        assert status == 413 and "max_upload_mb" in body["error"]
        encoded = json.dumps({"image_base64": base64.b64encode(data[:9000]).decode()}).encode()
        status, body = live.post("/search", encoded, "application/json")
        assert status == 413
        openapi.check("POST", "/search", status, body)


def test_allowed_roots_with_dotdot_and_symlink_escapes(tmp_path, photos):
    inside = save_photos(tmp_path / "inside", photos, ("coffee", "chelsea"))
    outside = save_photos(tmp_path / "outside", photos, ("rocket",))
    os.symlink(outside["rocket"], tmp_path / "inside" / "link.jpg")
    os.symlink(tmp_path / "outside", tmp_path / "inside" / "linkdir")
    with live_server(server_config(tmp_path, server={"allowed_roots": [str(tmp_path / "inside")]})) as live:
        assert live.get("/add", image=str(inside["coffee"]))[0] == 200
        escapes = [
            str(outside["rocket"]),
            str(tmp_path / "inside" / ".." / "outside" / "rocket.jpg"),
            str(tmp_path / "inside" / "link.jpg"),
            str(tmp_path / "inside" / "linkdir"),
            str(tmp_path / "inside" / "linkdir" / "rocket.jpg"),
            "/etc/passwd",
        ]
        for path in escapes:
            for route in ("/add", "/search", "/remove"):
                status, body = live.get(route, image=path)
                assert status == 403 and "outside" in body["error"], (route, path, body)
        assert live.service.catalog.counts()["files"] == 1


def test_token_is_required_when_set(tmp_path, photos):
    paths = save_photos(tmp_path / "photos", photos, ("coffee",))
    with live_server(server_config(tmp_path, server={"token": "s3cret"})) as live:
        assert live.get("/add", image=str(paths["coffee"]))[0] == 200
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}):
            status, body, _ = live.request("GET", "/stats", headers=headers or {"Authorization": ""})
            assert status == 401 and "token" in body["error"]
        status, body, _ = live.request(
            "GET", "/search", {"image": str(paths["coffee"])}, headers={"Authorization": "Bearer s3cret"}
        )
        assert status == 200


def test_503_while_starting(tmp_path, photos, openapi):
    paths = save_photos(tmp_path / "photos", photos, ("coffee",))
    checker = openapi
    with live_server(server_config(tmp_path), load=False) as live:
        status, body = live.get("/health")
        checker.check("GET", "/health", status, body)
        assert status == 503 and body["status"] == "starting"
        status, body = live.get("/search", image=str(paths["coffee"]))
        checker.check("GET", "/search", status, body)
        assert status == 503 and "starting" in body["error"]
        status, body = live.get("/stats")
        checker.check("GET", "/stats", status, body)
        assert status == 200 and body["ready"] is False
        live.service.load()
        try:
            status, body = live.get("/health")
            checker.check("GET", "/health", status, body)
            assert status == 200
        finally:
            live.service.close()


# -- text search with CLIP (random weights) ----------------------------------------------------


def test_text_search_with_clip(tmp_path, photos, openapi):
    paths = save_photos(tmp_path / "photos", photos, ("coffee", "chelsea", "rocket"))
    config = server_config(
        tmp_path,
        index={"extractors": ["clip", "efficientnet"]},
        **{"extractors.clip": dict(CLIP_RANDOM_FP32)},
    )
    checker = openapi
    with live_server(config) as live:
        for path in paths.values():
            assert live.get("/add", image=str(path))[0] == 200
        status, body = live.get("/search", text="a cup of coffee", limit=3)
        checker.check("GET", "/search", status, body)
        assert status == 200 and body["extractor"] == "clip"
        assert sorted(r["image"] for r in body["results"]) == sorted(str(p) for p in paths.values())
        # the text vector is the one the CLIP text encoder makes: its best match is the exact nearest
        clip = live.service.loaded.extractors["clip"]
        text = clip.encode_text(["a cup of coffee"])[0]

        def stored_vector(path: Path) -> np.ndarray:
            found = live.service.catalog.vector_for_path(str(path), "clip", clip.model_id)
            assert found is not None, path
            return found[1]

        stored = {str(p): stored_vector(p) for p in paths.values()}
        best = max(stored, key=lambda p: float(stored[p] @ text))
        assert body["results"][0]["image"] == best
        status, body = live.get("/search", text="a cup of coffee", extractor="efficientnet")
        checker.check("GET", "/search", status, body)
        assert status == 400 and "no text encoder" in body["error"]
        status, body = live.get("/search", image=str(paths["coffee"]), extractor="efficientnet", limit=1)
        assert (
            status == 200
            and body["extractor"] == "efficientnet"
            and body["results"][0]["image"] == str(paths["coffee"])
        )
        status, body = live.post("/search", json.dumps({"text": "a rocket"}).encode(), "application/json")
        assert status == 200 and body["extractor"] == "clip"
        status, stats = live.get("/stats")
        checker.check("GET", "/stats", status, stats)
        shown = stats["extractors"]["clip"]["precision"]
        assert shown == clip.precision.as_dict() and shown["used"] in ("int8", "fp32", "bf16")
        # a reduced precision in use was checked at load; on the CPU the text tower runs at it too
        assert shown["used"] == "fp32" or shown["min_cosine"] >= 0.98


# -- load ----------------------------------------------------------------------------------------


def test_50_parallel_clients_while_indexing_and_rebuilding(tmp_path, photos):
    paths = save_photos(tmp_path / "photos", photos)
    config = server_config(tmp_path, index={"rebuild_after_changes": 5, "rebuild_after_seconds": 0.5})
    with live_server(config) as live:
        for path in paths.values():
            assert live.get("/add", image=str(path))[0] == 200
        more = tmp_path / "photos" / "more"
        more.mkdir()
        rng = np.random.default_rng(1)
        base = [np.asarray(photos[n].convert("RGB").resize((96, 96))) for n in NAMES]
        for i in range(60):
            noisy = np.clip(base[i % len(base)].astype(int) + rng.integers(-20, 21, base[0].shape), 0, 255)
            Image.fromarray(noisy.astype(np.uint8)).save(more / f"m{i:03d}.jpg")
        status, job = live.get("/add", image=str(more))
        assert status == 202
        queries = [str(p) for p in paths.values()]
        errors: list = []

        def client(n: int) -> int:
            done = 0
            deadline = time.monotonic() + 6
            while time.monotonic() < deadline:
                status, body = live.get("/search", image=queries[(n + done) % len(queries)], limit=5)
                if (
                    status != 200
                    or not body["results"]
                    or body["results"][0]["image"] != queries[(n + done) % len(queries)]
                ):
                    errors.append((status, body))
                if not all({"image", "distance", "score"} <= set(r) for r in body.get("results", [])):
                    errors.append(("shape", body))
                done += 1
            return done

        with ThreadPoolExecutor(50) as pool:
            futures = [pool.submit(client, n) for n in range(50)]
            time.sleep(1)
            assert live.request("POST", "/rebuild")[0] == 202
            counts = [f.result() for f in futures]
        assert errors == []
        assert sum(counts) >= 50
        final = live.wait_job(job["job"])
        assert (
            final["state"] == "done" and final["outcomes"].get("embedded", 0) + final["outcomes"].get("reused", 0) == 60
        )
        index = live.service.indexes["efficientnet"]
        assert index.wait_idle(60)
        status, stats = live.get("/stats")
        assert stats["extractors"]["efficientnet"]["vectors"] == 66


def test_openapi_is_served_and_covers_every_route(server, openapi):
    status, body = server.get("/openapi.json")
    assert status == 200 and body["openapi"].startswith("3.")
    assert body == json.loads(json.dumps(spec()))
    assert spec() is spec()  # built once (about 8 ms), not per request: the route is open
    from imgsearchd.api.app import create_app

    routes = {(r.method, re.sub(r"<(\w+)>", r"{\1}", r.rule)) for r in create_app(server.service).routes}
    documented = {(m.upper(), p) for p, ops in body["paths"].items() for m in ops}
    assert routes == documented


PAGE_AND_PICTURE_PATHS = ("/", "/ui/{name}", "/login", "/logout", "/thumbnail", "/original")
# Prometheus text, not JSON: test_metrics.py reads it with prometheus-client's own parser.
METRICS_PATH = "/metrics"


def test_openapi_saw_every_documented_success(openapi):
    """Runs last in this module: every 200/202 the document promises was checked on a real answer."""
    promised = {
        (m.upper(), p, s)
        for p, ops in openapi.document["paths"].items()
        for m, op in ops.items()
        for s in op["responses"]
        if s in ("200", "202")
        and p not in ("/openapi.json", "/rebuild", "/duplicates")  # test_duplicate_tiers.py
        and not p.startswith("/folders")  # test_folder_routes.py checks every answer of its routes
        and not p.startswith("/duplicates/")  # test_resolve_routes.py checks every answer of its routes
        and p not in PAGE_AND_PICTURE_PATHS  # not JSON: test_web.py and test_thumbnails.py check them
        and p != METRICS_PATH
    }
    assert promised <= openapi.seen, promised - openapi.seen
