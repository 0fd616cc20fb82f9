"""Search by content hash (``/search?hash=``) and offset paging, on a real daemon and catalogue.

The daemon runs in this process with the session's real extractors (EfficientNet's real
weights, CLIP with random weights for texts); the library is nine photos, so every search
is exact and the pages of one ranking must join up exactly.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from imgsearchd.api.routes_search import search_request
from imgsearchd.extractors import LoadedExtractors
from imgsearchd.service import facade as service_module
from imgsearchd.store.catalog import Catalog

from helpers import CLIP_RANDOM_FP32, Live, live_server, server_config

LIBRARY = ("chelsea", "coffee", "astronaut", "rocket", "motorcycle_left", "motorcycle_right", "hubble", "retina")
OUTSIDER = "immunohistochemistry"  # uploaded only: never a library file


@pytest.fixture(scope="module")
def setup(tmp_path_factory, photos, clip_random, efficientnet) -> Any:
    """The config of a daemon over the library, the shared extractors, and the outsider's bytes."""
    root = tmp_path_factory.mktemp("search-hash")
    library = root / "photos"
    library.mkdir()
    for name in LIBRARY:
        photos[name].convert("RGB").save(library / f"{name}.jpg", quality=90)
    buffer = io.BytesIO()
    photos[OUTSIDER].convert("RGB").save(buffer, "JPEG", quality=85)
    config = server_config(
        root,
        server={"allowed_roots": [str(library)]},
        index={"extractors": ["efficientnet", "clip"]},
        **{"extractors.clip": dict(CLIP_RANDOM_FP32)},
    )
    shared = LoadedExtractors({"efficientnet": efficientnet, "clip": clip_random}, "efficientnet")
    return config, shared, library, buffer.getvalue()


def started(setup: Any, patch: pytest.MonkeyPatch) -> Any:
    config, shared, _, _ = setup
    patch.setattr(service_module, "load", lambda *_: shared)
    return live_server(config)


@pytest.fixture(scope="module")
def server(setup) -> Any:
    with pytest.MonkeyPatch.context() as patch, started(setup, patch) as live:
        live.root = setup[2]
        for name in LIBRARY:
            status, body = live.get("/add", image=str(live.root / f"{name}.jpg"))
            assert status == 200, body
        yield live


def names(answer: dict[str, Any]) -> list[str]:
    return [Path(r["image"]).stem for r in answer["results"]]


def upload(live: Live, data: bytes, **params: Any) -> dict[str, Any]:
    status, body = live.post("/search", data, "application/octet-stream", **params)
    assert status == 200, body
    return body


def test_an_upload_search_names_its_hash_and_the_hash_searches_again(server, setup):
    data = setup[3]
    first = upload(server, data, limit=5)
    wanted = hashlib.blake2b(data, digest_size=16).hexdigest()
    assert first["query"] == {"kind": "upload", "hash": wanted}
    status, again = server.get("/search", hash=wanted, limit=5)
    assert status == 200, again
    assert again["results"] == first["results"] and again["query"] == {"kind": "hash", "hash": wanted}
    # upper case is the same hash; POST with a JSON body answers the same
    status, upper = server.get("/search", hash=wanted.upper(), limit=5)
    assert status == 200 and upper["results"] == first["results"]
    status, posted = server.post("/search", json.dumps({"hash": wanted, "limit": 5}).encode(), "application/json")
    assert status == 200 and posted["results"] == first["results"], posted


def test_a_library_file_is_searched_by_its_hash_as_by_its_path(server):
    status, by_path = server.get("/search", image=str(server.root / "coffee.jpg"), limit=8)
    assert status == 200, by_path
    coffee = by_path["results"][0]
    assert Path(coffee["image"]).stem == "coffee"
    status, by_hash = server.get("/search", hash=coffee["hash"], limit=8)
    assert status == 200 and by_hash["results"] == by_path["results"]
    # the filters work with it as with image=
    status, taken = server.get("/search", hash=coffee["hash"], folder=str(server.root), max_distance=0.5)
    assert status == 200 and all(r["distance"] <= 0.5 for r in taken["results"]) and names(taken)[0] == "coffee"


def test_a_kept_upload_survives_a_restart(setup, tmp_path):
    data = setup[3]
    wanted = hashlib.blake2b(data, digest_size=16).hexdigest()
    own = (server_config(tmp_path, server={"allowed_roots": [str(setup[2])]}), *setup[1:])  # its own data folder
    with pytest.MonkeyPatch.context() as patch:
        with started(own, patch) as live:
            for name in LIBRARY[:4]:
                assert live.get("/add", image=str(setup[2] / f"{name}.jpg"))[0] == 200
            first = upload(live, data, limit=4)
        with started(own, patch) as live:  # a new service on the same data folder
            status, again = live.get("/search", hash=wanted, limit=4)
    assert status == 200, again
    assert again["results"] == first["results"]


def test_unknown_and_malformed_hashes(server, setup):
    unknown = hashlib.blake2b(b"never uploaded", digest_size=16).hexdigest()
    status, body = server.get("/search", hash=unknown)
    assert status == 404 and body["hash"] == unknown
    assert f"no picture with content hash {unknown} is indexed or was uploaded recently" in body["error"]
    assert "upload it again" in body["error"]
    # an upload searched with EfficientNet keeps that extractor's vector only
    data = setup[3]
    upload(server, data, extractor="efficientnet")
    kept = hashlib.blake2b(data, digest_size=16).hexdigest()
    status, body = server.get("/search", hash=kept, extractor="clip")
    assert status == 404 and "clip" in body["error"], body
    for bad in ("xyz", "0" * 31, "g" * 32, "0" * 33):
        status, body = server.get("/search", hash=bad)
        assert status == 400 and "hash must be 32 hexadecimal digits" in body["error"], (bad, body)
        status, body = server.post("/search", json.dumps({"hash": bad}).encode(), "application/json")
        assert status == 400 and "hash must be 32 hexadecimal digits" in body["error"], (bad, body)
    status, body = server.get("/search", hash=kept, image=str(server.root / "coffee.jpg"))
    assert status == 400 and "only one of" in body["error"]
    status, body = server.get("/search", hash=kept, text="a cat")
    assert status == 400 and "only one of" in body["error"]
    both = {"hash": kept, "image_base64": base64.b64encode(data).decode()}
    status, body = server.post("/search", json.dumps(both).encode(), "application/json")
    assert status == 400 and "only one of" in body["error"]


def pages(live: Live, size: int, total: int, method: str = "GET", **query: Any) -> list[dict[str, Any]]:
    """The results, page by page through ``next_offset``, with ``size`` results a page."""
    out: list[dict[str, Any]] = []
    offset: int | None = 0
    while offset is not None:
        if method == "GET":
            status, body = live.get("/search", limit=size, offset=offset, **query)
        else:
            payload = json.dumps({**query, "limit": size, "offset": offset}).encode()
            status, body = live.post("/search", payload, "application/json")
        assert status == 200, body
        assert body["offset"] == offset
        out.extend(body["results"])
        offset = body["next_offset"]
        assert len(out) <= total, "paging does not stop"
    return out


@pytest.mark.parametrize("size", [1, 3, 4])
def test_offset_pages_join_up_to_the_unpaged_list(server, setup, size):
    coffee = str(server.root / "coffee.jpg")
    encoded = base64.b64encode(setup[3]).decode()
    queries: list[tuple[str, dict[str, Any]]] = [
        ("GET", {"image": coffee}),
        ("GET", {"text": "a red motorcycle", "extractor": "clip"}),
        ("GET", {"image": coffee, "folder": str(server.root)}),
        ("POST", {"image_base64": encoded}),
        ("POST", {"query": [{"image": coffee}, {"text": "a cat", "weight": 0.5}], "extractor": "clip"}),
    ]
    for method, query in queries:
        if method == "GET":
            status, whole = server.get("/search", limit=len(LIBRARY), **query)
        else:
            body = json.dumps({**query, "limit": len(LIBRARY)}).encode()
            status, whole = server.post("/search", body, "application/json")
        assert status == 200 and len(whole["results"]) == len(LIBRARY), whole
        assert whole["next_offset"] == len(LIBRARY)  # a full page: there may be more
        paged = pages(server, size, len(LIBRARY), method, **query)
        assert paged == whole["results"], (method, query)
    upload_hash = hashlib.blake2b(setup[3], digest_size=16).hexdigest()
    status, whole = server.get("/search", hash=upload_hash, limit=len(LIBRARY))
    assert status == 200 and pages(server, size, len(LIBRARY), hash=upload_hash) == whole["results"]


def test_offset_bounds(server):
    coffee = str(server.root / "coffee.jpg")
    status, body = server.get("/search", image=coffee, offset=1000)
    assert status == 400 and "offset must be an integer from 0 to 999, not 1000" in body["error"], body
    status, body = server.get("/search", image=coffee, offset=-1)
    assert status == 400 and "offset must be an integer from 0 to 999" in body["error"], body
    status, body = server.get("/search", image=coffee, offset="two")
    assert status == 400 and "offset must be" in body["error"], body
    # a page ends at the bound's result: no search ranks more than 1000
    assert search_request(None, 10, 995, None, None).limit == 5
    assert search_request(None, 1000, 0, None, None).limit == 1000
    status, body = server.get("/search", image=coffee, offset=990, limit=10)
    assert status == 200 and body["results"] == [] and body["next_offset"] is None
    status, body = server.get("/search", image=coffee, offset=len(LIBRARY) - 1, limit=1)
    assert status == 200 and len(body["results"]) == 1 and body["next_offset"] == len(LIBRARY)


def test_the_kept_vectors_are_bounded_least_recently_used_first(tmp_path):
    vectors = {f"{k:032x}": np.full(4, k, dtype=np.float32) for k in range(5)}
    with Catalog(tmp_path / "catalog.sqlite3") as catalog:
        for content_hash, vector in list(vectors.items())[:3]:
            catalog.keep_query_vector(content_hash, "e", "m1", vector, kept=3)
        first = f"{0:032x}"
        catalog.touch_query_vector(first, "e")  # used again: the oldest is now the second
        catalog.keep_query_vector(f"{3:032x}", "e", "m1", vectors[f"{3:032x}"], kept=3)
        assert catalog.count_query_vectors() == 3
        assert catalog.query_vector(f"{1:032x}", "e", "m1") is None
        for k in (0, 2, 3):
            got = catalog.query_vector(f"{k:032x}", "e", "m1")
            assert got is not None and np.array_equal(got, vectors[f"{k:032x}"])
        assert catalog.query_vector(first, "e", "m2") is None  # another model's vector is not this one's
        catalog.keep_query_vector(f"{4:032x}", "e", "m1", vectors[f"{4:032x}"], kept=3)
        assert catalog.query_vector(f"{2:032x}", "e", "m1") is None  # now the least recently used
    with Catalog(tmp_path / "catalog.sqlite3") as catalog:  # kept in the file
        assert catalog.count_query_vectors() == 3


def test_path_and_text_searches_write_nothing(server):
    before = server.service.catalog.count_query_vectors()
    assert server.get("/search", image=str(server.root / "rocket.jpg"))[0] == 200
    assert server.get("/search", text="a rocket", extractor="clip")[0] == 200
    assert server.service.catalog.count_query_vectors() == before


def test_a_new_upload_adds_one_row(server, photos):
    buffer = io.BytesIO()
    photos["retina"].convert("RGB").rotate(90).save(buffer, "PNG")
    before = server.service.catalog.count_query_vectors()
    upload(server, buffer.getvalue())
    assert server.service.catalog.count_query_vectors() == before + 1
