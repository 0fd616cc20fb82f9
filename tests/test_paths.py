"""Paths: any bytes a Linux file name may hold survive the catalogue, the queue and the API."""

from __future__ import annotations

import base64
import json
import os
import urllib.parse

from hypothesis import given, settings
from hypothesis import strategies as st

from imgsearchd.paths import from_query, json_fields, normalise_path, path_from_key, path_key
from imgsearchd.store.catalog import Catalog
from imgsearchd.store.rows import FileResult

# One file-name component: any bytes but "/" and NUL (what Linux allows).
NAME = st.binary(min_size=1, max_size=40).filter(lambda b: b"/" not in b and b"\0" not in b and b not in (b".", b".."))
PATHS = st.lists(NAME, min_size=1, max_size=5).map(lambda parts: os.fsdecode(b"/" + b"/".join(parts)))
MESSY = st.lists(st.sampled_from(["", ".", "..", "a", "b", "é", "x.png"]), min_size=1, max_size=8).map(
    lambda parts: "/" * 2 + "/".join(parts)
)


@given(PATHS)
def test_a_name_of_any_bytes_round_trips_through_key_query_and_json(path):
    assert path_from_key(path_key(path)) == path
    url_value = urllib.parse.quote(path_key(path))  # what a client sends for these bytes
    assert from_query(urllib.parse.unquote(url_value, encoding="latin-1")) == path
    fields = json.loads(json.dumps(json_fields(path)))
    assert fields["image"] == path  # Python reads the \\udcXX escapes back
    if "path_base64" in fields:
        assert base64.b64decode(fields["path_base64"]) == os.fsencode(path)
    else:
        assert os.fsencode(path).decode("utf-8") == path


@given(MESSY)
def test_normalise_path_is_idempotent_absolute_and_has_one_leading_slash(raw):
    once = normalise_path(raw)
    assert once == normalise_path(once) and once.startswith("/") and not once.startswith("//")
    assert normalise_path("/" + raw) == once  # "///x" and "//x" and "/x" are one file on Linux


@settings(max_examples=30, deadline=None)
@given(st.lists(PATHS, min_size=1, max_size=6, unique=True))
def test_catalogue_keeps_any_names_apart_and_gives_them_back(tmp_path_factory, paths):
    with Catalog(tmp_path_factory.mktemp("cat") / "c.sqlite3") as catalog:
        catalog.record_batch([FileResult(p, 1, 1, f"h{i}") for i, p in enumerate(paths)])
        for i, path in enumerate(paths):
            record = catalog.get(path)
            assert record is not None and record.path == path and record.content_hash == f"h{i}"
        assert catalog.counts()["files"] == len({normalise_path(p) for p in paths})
