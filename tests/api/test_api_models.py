"""The spec and the server agree: every route of /openapi.json, against a real daemon.

For each operation the spec documents, one request with valid values for what it needs
(the base), then:

- each documented query parameter, request header and body field, sent with a valid value:
  accepted (a documented success), and the server read it;
- an undocumented query parameter: ignored (a query string may carry anything), never read;
- an undocumented body field: refused with 400 where the body's schema says
  ``additionalProperties: false``, accepted where it does not;
- while answering, the server reads no query parameter or form field the spec does not list,
  and no body where the spec documents none (the requests are watched inside the server);
- every answer is documented for its status, with its media type, and a JSON answer
  validates against its schema.

So a field the server reads that the spec lacks, or one the spec lists that the server
does not read (or refuses), fails here. And what the spec forbids (``test_the_server_
refuses_what_the_spec_forbids``): each query parameter and JSON body field with bounds or
choices is sent at its documented edges (accepted) and just past them, or outside its
choices (refused with 400, which the route documents, its body the error's schema); each
route is called without the token: 401 (documented) exactly where the spec's ``security``
names the bearer token.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import threading
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import bottle
import jsonschema
import pytest

from imgsearchd.api.spec import spec
from imgsearchd.extractors import LoadedExtractors
from imgsearchd.service import facade as service_module

from helpers import CLIP_RANDOM_FP32, live_server, server_config

TOKEN = "agreement-token"
UNDOCUMENTED = "zz_undocumented"
DOCUMENT: dict[str, Any] = dict(spec())  # read freely: the tests index deep into it
OPERATIONS = sorted((path, method.upper()) for path, ops in DOCUMENT["paths"].items() for method in ops)


# -- what the server reads, watched inside it --------------------------------------------------


@dataclass
class Reads:
    """The query parameters, form fields and body a request's handling read."""

    query: set[str] = field(default_factory=set)
    forms: set[str] = field(default_factory=set)
    body: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def clear(self) -> None:
        with self.lock:
            self.query, self.forms, self.body = set(), set(), False


READS = Reads()
WATCHED = {"bottle.request.query": "query", "bottle.request.forms": "forms", "bottle.request.files": "forms"}


def _environ() -> dict[str, Any] | None:
    try:
        return bottle.request.environ
    except RuntimeError:  # not inside a request
        return None


def _spy(original: Callable[..., Any]) -> Callable[..., Any]:
    def spy(self: bottle.FormsDict, key: str, *args: Any, **kwargs: Any) -> Any:
        environ = _environ()
        for slot, where in WATCHED.items():
            if environ is not None and environ.get(slot) is self:
                with READS.lock:
                    getattr(READS, where).add(key)
        return original(self, key, *args, **kwargs)

    return spy


@pytest.fixture(scope="module")
def watched() -> Iterator[Reads]:
    patch = pytest.MonkeyPatch()
    for name in ("get", "getunicode", "getall", "getone", "__getitem__", "__contains__"):
        patch.setattr(bottle.FormsDict, name, _spy(getattr(bottle.FormsDict, name)))
    body = bottle.BaseRequest.body

    def read_body(self: bottle.BaseRequest) -> Any:
        READS.body = True
        return body.fget(self)

    patch.setattr(bottle.BaseRequest, "body", property(read_body))
    yield READS
    patch.undo()


# -- the daemon ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live(tmp_path_factory, photos, clip_random, efficientnet, watched):
    root = tmp_path_factory.mktemp("agreement")
    folder = root / "photos"
    folder.mkdir()
    for name in ("chelsea", "coffee", "rocket"):
        photos[name].convert("RGB").save(folder / f"{name}.jpg", quality=90)
    config = server_config(
        root,
        server={"allowed_roots": [str(root)], "token": TOKEN, "wrong_tokens_per_minute": 10**6},
        index={"extractors": ["clip", "efficientnet"]},
        **{"extractors.clip": dict(CLIP_RANDOM_FP32)},
    )
    # the session's real extractors, not a second CLIP load: the daemon is otherwise as configured
    shared = LoadedExtractors({"clip": clip_random, "efficientnet": efficientnet}, "clip")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(service_module, "load", lambda *_: shared)
        stack = live_server(config)
        server = stack.__enter__()
    try:
        server.root, server.paths = root, {p.stem: p for p in folder.iterdir()}
        status, job = call(server, "GET", "/add", {"image": str(folder)}).json_pair()
        assert status == 202, job
        server.wait_job(job["job"])
        server.job_id = job["job"]
        yield server
    finally:
        stack.__exit__(None, None, None)


@dataclass
class Answer:
    status: int
    content_type: str
    raw: bytes
    reads: Reads

    def json_pair(self) -> tuple[int, Any]:
        return self.status, json.loads(self.raw)


def call(
    server: Any,
    method: str,
    path: str,
    query: dict[str, str] | None = None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Answer:
    """One request with the token; the answer and what the server read to make it."""
    url = f"{server.base}{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    request = urllib.request.Request(url, data=body, method=method)
    for name, value in {"Authorization": f"Bearer {TOKEN}", **(headers or {})}.items():
        request.add_header(name, value)
    READS.clear()
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            status, raw, kind = response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as exc:
        status, raw, kind = exc.code, exc.read(), exc.headers.get("Content-Type", "")
    with READS.lock:
        reads = Reads(set(READS.query), set(READS.forms), READS.body)
    return Answer(status, kind.split(";")[0].strip(), raw, reads)


# -- valid values --------------------------------------------------------------------------------


def example(schema: dict[str, Any]) -> Any:
    """A valid value from a parameter's or field's schema."""
    schema = resolve(schema)
    if "examples" in schema:
        return schema["examples"][0]
    if schema.get("default") is not None:
        return schema["default"]
    if "enum" in schema:
        return schema["enum"][0]
    kinds = schema.get("type")
    if kinds == "integer":
        return schema.get("minimum", 1)
    if kinds == "number":
        return (schema.get("minimum", schema.get("exclusiveMinimum", 0)) + schema.get("maximum", 1)) / 2
    if kinds == "boolean":
        return True
    return "x"


def resolve(schema: dict[str, Any]) -> dict[str, Any]:
    """A schema with its $ref followed and the null branch of an optional field dropped."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return resolve({**DOCUMENT["components"]["schemas"][name], **{k: v for k, v in schema.items() if k != "$ref"}})
    branches = [b for b in schema.get("anyOf", ()) if b != {"type": "null"}]
    if len(branches) == 1:
        return resolve({**{k: v for k, v in schema.items() if k != "anyOf"}, **branches[0]})
    return schema


def fresh_copy(server: Any) -> str:
    """A new indexed file (for /remove, which forgets the file it names)."""
    path = server.root / "photos" / f"copy-{uuid.uuid4().hex[:8]}.jpg"
    shutil.copy(server.paths["chelsea"], path)
    assert call(server, "GET", "/add", {"image": str(path)}).status == 200
    return str(path)


JSON = {"Content-Type": "application/json"}


def fresh_watched(server: Any) -> str:
    """A new watched folder (for DELETE /folders, which stops watching the folder it names)."""
    folder = server.root / f"watched-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    body = json.dumps({"folder": str(folder)}).encode()
    assert call(server, "POST", "/folders", body=body, headers={"Content-Type": "application/json"}).status == 201
    return str(folder)


def fresh_resolution(server: Any) -> int:
    """A new resolution to undo (for POST /duplicates/undo): a fresh copy hard-linked to its original."""
    body = {"groups": [{"keep": str(server.paths["chelsea"]), "others": [fresh_copy(server)]}], "action": "link"}
    answer = call(server, "POST", "/duplicates/resolve", body=json.dumps(body).encode(), headers=JSON)
    status, resolved = answer.json_pair()
    assert status == 200 and resolved["undo"], resolved
    return int(resolved["undo"])


def image_b64(server: Any) -> str:
    return base64.b64encode(server.paths["coffee"].read_bytes()).decode()


# Values that the schema cannot give: a file inside the roots, a running extractor, ...
def value(server: Any, route: tuple[str, str], name: str, schema: dict[str, Any]) -> Any:
    path = route[0]
    known: dict[str, Callable[[], Any]] = {
        "image": lambda: fresh_copy(server) if path == "/remove" else str(server.paths["chelsea"]),
        "folder": lambda: fresh_watched(server) if route == ("/folders", "DELETE") else str(server.root / "photos"),
        "path": lambda: str(server.root),
        "keep_in": lambda: str(server.root / "photos"),
        "extractor": lambda: "clip",
        "text": lambda: "a cat on a sofa",
        "image_base64": lambda: image_b64(server),
        "hash": lambda: hashlib.blake2b(server.paths["coffee"].read_bytes(), digest_size=16).hexdigest(),
        "query": lambda: [{"image": str(server.paths["rocket"]), "weight": 1}, {"text": "a rocket", "weight": 0.5}],
        "token": lambda: TOKEN,
        "job_id": lambda: server.job_id,
        "name": lambda: "app.js",
        "If-None-Match": lambda: '"not-the-etag"',
        "groups": lambda: [],  # a resolve that acts on nothing (the action's example is trash)
        "undo": lambda: fresh_resolution(server),
    }
    return known[name]() if name in known else example(schema)


# Fields that stand instead of one the base request sends (only one query kind per search).
INSTEAD = {"text": ("image", "image_base64"), "query": ("image_base64",), "hash": ("image", "image_base64")}


# -- the requests for an operation ---------------------------------------------------------------


@dataclass
class Request:
    what: str
    query: dict[str, str]
    body: bytes | None = None
    content_type: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    form_fields: tuple[str, ...] = ()  # form fields sent (besides a file part)


def operation(route: tuple[str, str]) -> dict[str, Any]:
    path, method = route
    return DOCUMENT["paths"][path][method.lower()]


def parameters(route: tuple[str, str], where: str) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in operation(route).get("parameters", ()) if p["in"] == where}


# Optional parameters the base request sends all the same: a search needs an image or a text.
ALSO = {("/search", "GET"): ("image",)}


def base_query(server: Any, route: tuple[str, str]) -> dict[str, str]:
    """The required query parameters (a new file each time for /remove)."""
    wanted = [n for n, p in parameters(route, "query").items() if p["required"] or n in ALSO.get(route, ())]
    return {n: str(value(server, route, n, parameters(route, "query")[n]["schema"])) for n in wanted}


def url_path(server: Any, route: tuple[str, str]) -> str:
    path = route[0]
    for name, p in parameters(route, "path").items():
        path = path.replace("{" + name + "}", urllib.parse.quote(str(value(server, route, name, p["schema"]))))
    return path


def multipart(fields: dict[str, str], image: bytes | None) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()
    ]
    if image is not None:
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="a.jpg"\r\n'
        parts.append(head.encode() + b"Content-Type: image/jpeg\r\n\r\n" + image + b"\r\n")
    return b"".join([*parts, f"--{boundary}--\r\n".encode()]), f"multipart/form-data; boundary={boundary}"


def body_object(
    server: Any, route: tuple[str, str], kind: str, schema: dict[str, Any], extra: dict[str, Any]
) -> Request:
    """A body of media type ``kind``: its required fields (an image where the route takes one), and ``extra``."""
    props = resolve(schema).get("properties", {})
    fields = {n: value(server, route, n, props[n]) for n in resolve(schema).get("required", ()) if n != "image"}
    if "image_base64" in props:
        fields["image_base64"] = image_b64(server)
    for name in extra:
        for dropped in INSTEAD.get(name, ()):
            fields.pop(dropped, None)
    fields.update(extra)
    if kind == "application/json":
        return Request(f"json {sorted(extra)}", {}, json.dumps(fields).encode(), kind)
    text = {k: str(v) for k, v in fields.items()}
    if kind == "multipart/form-data":
        image = server.paths["coffee"].read_bytes() if "image" in props else None
        data, content_type = multipart(text, image)
        return Request(f"multipart {sorted(extra)}", {}, data, content_type, form_fields=tuple(text))
    return Request(f"form {sorted(extra)}", {}, urllib.parse.urlencode(text).encode(), kind, form_fields=tuple(text))


def base_body(server: Any, route: tuple[str, str]) -> Request | None:
    """The first documented body: raw bytes where the route takes them, else an object."""
    content = operation(route).get("requestBody", {}).get("content", {})
    for kind, media in content.items():
        if resolve(media["schema"]).get("format") == "binary":
            return Request(
                f"raw {kind}", {}, server.paths["coffee"].read_bytes(), "image/jpeg" if "*" in kind else kind
            )
        return body_object(server, route, kind, media["schema"], {})
    return None


def requests(server: Any, route: tuple[str, str]) -> Iterator[tuple[Request, str, str | None]]:
    """(request, what must happen, the field it must be seen read): the base, each documented
    parameter and field, and an undocumented one of each kind."""

    def with_query(query: dict[str, str], what: str) -> Request:
        body = base_body(server, route)  # made again each time: an undo's resolution is undone once
        if body is None:
            return Request(what, query)
        return Request(what, query, body.body, body.content_type, form_fields=body.form_fields)

    yield with_query(base_query(server, route), "base"), "accepted", None
    for name, p in parameters(route, "query").items():
        query = {k: v for k, v in base_query(server, route).items() if k not in INSTEAD.get(name, ())}
        yield (
            with_query({**query, name: str(value(server, route, name, p["schema"]))}, f"query {name}"),
            "accepted",
            name,
        )
    yield with_query({**base_query(server, route), UNDOCUMENTED: "1"}, "undocumented query"), "accepted", None
    for name, p in parameters(route, "header").items():
        request = with_query(base_query(server, route), f"header {name}")
        request.headers[name] = str(value(server, route, name, p["schema"]))
        yield request, "accepted", None
    for kind, media in operation(route).get("requestBody", {}).get("content", {}).items():
        schema = resolve(media["schema"])
        if schema.get("type") != "object":
            continue
        fields = schema.get("properties", {})
        for name in fields:
            if name != "image":
                request = body_object(server, route, kind, schema, {name: value(server, route, name, fields[name])})
                yield request, "accepted", name
        refused = schema.get("additionalProperties") is False
        request = body_object(server, route, kind, schema, {UNDOCUMENTED: "1"})
        request.query = base_query(server, route)
        yield request, ("refused" if refused else "accepted"), None
        yield from part_requests(server, route, kind, fields, schema.get("required", []))


def part_requests(
    server: Any, route: tuple[str, str], kind: str, fields: dict[str, Any], required: list[str]
) -> Iterator[tuple[Request, str, str | None]]:
    """A body field that is a list of objects (a combined query's parts): each of their fields,
    and an undocumented one."""
    for name, schema in fields.items():
        items = resolve(schema).get("items")
        if items is None or kind != "application/json":
            continue
        part = resolve(items)
        samples: dict[str, Any] = {
            "image": str(server.paths["rocket"]),
            "image_base64": image_b64(server),
            "text": "a rocket",
        }
        samples |= {"keep": str(server.paths["chelsea"]), "others": []}  # a resolve's group (acts on nothing)
        needed = {k: samples[k] for k in part.get("required", ())}  # a group's keep and others; none for a query part
        for key in part["properties"]:
            if needed:
                one = {**needed, key: samples[key] if key in samples else example(part["properties"][key])}
            else:
                one = (
                    {key: samples[key]}
                    if key in samples
                    else {"text": "a rocket", key: example(part["properties"][key])}
                )
            yield body_object(server, route, kind, fields_schema(fields, required), {name: [one]}), "accepted", None
        refused = part.get("additionalProperties") is False
        bad = [{"text": "a rocket", UNDOCUMENTED: 1}]
        yield (
            body_object(server, route, kind, fields_schema(fields, required), {name: bad}),
            "refused" if refused else "accepted",
            None,
        )


def fields_schema(fields: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": fields, "required": required}


# -- the checks ----------------------------------------------------------------------------------


def documented_reads(route: tuple[str, str]) -> tuple[set[str], set[str], bool]:
    """The query parameters, form fields and whether a body the spec documents for ``route``."""
    body = operation(route).get("requestBody", {}).get("content", {})
    forms = {
        name
        for kind, media in body.items()
        if kind in ("multipart/form-data", "application/x-www-form-urlencoded")
        for name in resolve(media["schema"]).get("properties", {})
    }
    return set(parameters(route, "query")), forms, bool(body)


def check_answer(route: tuple[str, str], request: Request, answer: Answer) -> None:
    """The answer is documented for its status, in its media type, and valid against its schema."""
    responses = operation(route)["responses"]
    where = f"{route[1]} {route[0]} ({request.what}) answered {answer.status}: {answer.raw[:300]!r}"
    assert str(answer.status) in responses, where
    content = responses[str(answer.status)].get("content")
    if not content:
        return
    kinds = {k.split(";")[0] for k in content}
    assert answer.content_type in kinds or "image/*" in kinds, f"{where}: {answer.content_type} not in {kinds}"
    if answer.content_type == "application/json":
        schema = content["application/json"]["schema"]
        jsonschema.validate(json.loads(answer.raw), {**schema, "components": DOCUMENT["components"]})


@pytest.mark.parametrize("route", OPERATIONS, ids=[f"{m} {p}" for p, m in OPERATIONS])
def test_the_spec_and_the_server_agree(live, route):
    query_names, form_names, has_body = documented_reads(route)
    path = url_path(live, route)
    checked = 0
    for request, expected, read in requests(live, route):
        headers = {**request.headers, **({"Content-Type": request.content_type} if request.content_type else {})}
        answer = call(live, route[1], path, request.query, request.body, headers)
        where = f"{route[1]} {route[0]} ({request.what}): {answer.status} {answer.raw[:300]!r}"
        check_answer(route, request, answer)
        if expected == "accepted":
            assert 200 <= answer.status < 400, where
        else:
            assert answer.status == 400, where
        assert answer.reads.query <= query_names, f"{where}: read undocumented {answer.reads.query - query_names}"
        assert answer.reads.forms <= form_names, f"{where}: read undocumented {answer.reads.forms - form_names}"
        assert has_body or not answer.reads.body, f"{where}: read a body the spec does not document"
        if read is not None and read in query_names and request.query.get(read) is not None:
            assert read in answer.reads.query, f"{where}: the documented parameter {read!r} was not read"
        if read is not None and read in request.form_fields:
            assert read in answer.reads.forms, f"{where}: the documented field {read!r} was not read"
        checked += 1
    assert checked >= 2


# -- what the spec forbids -----------------------------------------------------------------------


def edges(schema: dict[str, Any]) -> Iterator[tuple[str, Any, str]]:
    """(what, value, what must happen) at a bounded or enumerated schema's edges: the documented
    edges are accepted, one past them (or a value outside the choices) refused."""
    schema = resolve(schema)
    if "enum" in schema:
        yield "not a choice", f"zz-not-{schema['enum'][0]}", "refused"
    if schema.get("type") not in ("integer", "number"):
        return
    if "maximum" in schema:
        yield "the maximum", schema["maximum"], "accepted"
        yield "over the maximum", schema["maximum"] + 1, "refused"
    if "minimum" in schema:
        yield "the minimum", schema["minimum"], "accepted"
        yield "under the minimum", schema["minimum"] - 1, "refused"
    for bound in ("exclusiveMinimum", "exclusiveMaximum"):
        if bound in schema:
            yield f"the {bound}", schema[bound], "refused"


def forbidding_requests(server: Any, route: tuple[str, str]) -> Iterator[tuple[Request, str]]:
    """Each bounded or enumerated query parameter and JSON body field, at and past its edges."""
    body = base_body(server, route)
    for name, p in parameters(route, "query").items():
        for what, edge, expected in edges(p["schema"]):
            query = {**base_query(server, route), name: str(edge)}
            if body is None:
                yield Request(f"query {name}: {what}", query), expected
            else:
                yield Request(f"query {name}: {what}", query, body.body, body.content_type), expected
    media = operation(route).get("requestBody", {}).get("content", {}).get("application/json")
    if media is None:
        return
    schema = resolve(media["schema"])
    for name, field_schema in schema.get("properties", {}).items():
        for what, edge, expected in edges(field_schema):
            request = body_object(server, route, "application/json", schema, {name: edge})
            request.what = f"json {name}: {what}"
            yield request, expected


@pytest.mark.parametrize("route", OPERATIONS, ids=[f"{m} {p}" for p, m in OPERATIONS])
def test_the_server_refuses_what_the_spec_forbids(live, route):
    path = url_path(live, route)
    responses = operation(route)["responses"]
    for request, expected in forbidding_requests(live, route):
        headers = {**request.headers, **({"Content-Type": request.content_type} if request.content_type else {})}
        answer = call(live, route[1], path, request.query, request.body, headers)
        where = f"{route[1]} {route[0]} ({request.what}): {answer.status} {answer.raw[:300]!r}"
        check_answer(route, request, answer)  # documented, with a body its schema describes
        if expected == "accepted":
            assert 200 <= answer.status < 400, where
        else:
            assert answer.status == 400 and "400" in responses, where
    # the token: asked for (401, documented) exactly where the spec's security names it
    secured = operation(route).get("security")
    assert secured in ([], [{"bearer": []}]), f"{route}: security {secured!r}"
    body = base_body(live, route)
    request = Request("no token", base_query(live, route), *((body.body, body.content_type) if body else ()))
    headers = {"Authorization": "", **({"Content-Type": request.content_type} if request.content_type else {})}
    answer = call(live, route[1], path, request.query, request.body, headers)
    check_answer(route, request, answer)
    where = f"{route[1]} {route[0]} without the token: {answer.status} {answer.raw[:300]!r}"
    if secured:
        assert answer.status == 401 and "401" in responses, where
    else:
        assert answer.status != 401, where
