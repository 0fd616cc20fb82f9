"""The OpenAPI 3.1 description of the HTTP API (served at /openapi.json), generated from the
route table (``routes``) and its typed models (``models``): what a route accepts and answers
is what its description says, as both come from the same definitions.

The API's bounds live in ``bounds`` (the request models and the CLI read them there).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, cast

import msgspec

from .. import __version__
from .json_types import JsonObject, JsonValue

if TYPE_CHECKING:
    from .routing import Answer, Body, Route

__all__ = ["document", "spec"]

Schema = JsonObject  # a JSON Schema (or an OpenAPI object), as it is written out
REF = "#/components/schemas/{name}"

ERRORS = {
    400: "bad parameter",
    401: "missing or wrong token",
    403: "a Host that is not this daemon's name, a request from another site (anything but the page), "
    "or a path outside the allowed roots (or unreadable)",
    404: "no such file (or not in the index)",
    409: "clashes with what is set up: a folder inside a watched one, or one the settings watch",
    413: "too large",
    415: "not a readable image",
    429: "too many wrong tokens from this client within a minute: wait Retry-After seconds",
    500: "an internal error (a bug): the daemon's log has the traceback",
    503: "starting, or the catalogue cannot be written now (full or read-only disk; retried by itself)",
    504: "still queued after the timeout",
}
INFO = {
    "title": "imgsearchd",
    "description": 'Local image-search daemon. Errors are JSON {"error": ...}. Before any route, the '
    "server refuses a malformed request (400), a body over server.max_upload_mb (413, from "
    "Content-Length before the body is read) and a header over 64 KiB (431); a Host that is not "
    "the daemon's name is refused with 403 on every route.",
}
SECURITY = {"bearer": {"type": "http", "scheme": "bearer", "description": "only when server.token is set"}}


@functools.cache
def spec() -> Schema:
    """The whole document, for the route table the app serves: built once (about 8 ms; the
    route is open, so it is not rebuilt per request), and shared: do not change it."""
    from .routes import TABLE  # here: the CLI imports this module for the bounds, and needs no routes

    return document(TABLE)


def document(table: Sequence[Route]) -> Schema:
    """The OpenAPI document of ``table``."""
    from .models.answers import Error

    models: list[type[msgspec.Struct]] = list(dict.fromkeys([Error, *(m for route in table for m in _models(route))]))
    refs, schemas = _components(models)
    ref_of: dict[type, Schema] = dict(zip(models, refs, strict=True))
    paths: dict[str, Schema] = {}
    for route in table:
        paths.setdefault(route.path, {})[route.method.lower()] = _operation(route, ref_of)
    return {
        "openapi": "3.1.0",
        "info": {**INFO, "version": __version__},
        "servers": [{"url": "http://127.0.0.1:8080"}],
        "components": {"schemas": schemas, "securitySchemes": SECURITY},
        "paths": paths,
    }


def _components(models: Sequence[type[msgspec.Struct]]) -> tuple[list[Schema], Schema]:
    """The reference to each of ``models`` (in order) and the schemas they refer to."""
    refs, schemas = msgspec.json.schema_components(models, ref_template=REF)
    # The one boundary with msgspec, whose schemas are untyped dicts (of JSON values): typed here.
    return cast(list[Schema], list(refs)), cast(Schema, schemas)


def _models(route: Route) -> Iterable[type[msgspec.Struct]]:
    """The structs a route's body and answers are described by (its query is written inline)."""
    yield from (a.model for a in route.answers if a.model is not None)
    if route.body is not None:
        yield from (m for m in (route.body.json, route.body.form, route.body.urlencoded) if m is not None)


def _operation(route: Route, ref_of: Mapping[type, Schema]) -> Schema:
    operation: Schema = {"summary": route.summary}
    if route.description:
        operation["description"] = route.description
    parameters = [*_query_parameters(route.query), *_other_parameters(route)]
    if parameters:
        operation["parameters"] = parameters
    if route.body is not None:
        operation["requestBody"] = _body(route.body, ref_of)
    responses = {str(a.status): _answer(a, ref_of) for a in route.answers}
    operation["responses"] = {**responses, **_errors(route.error_statuses, ref_of)}
    operation["security"] = route.security  # the bearer token, or [] where the route is open
    return operation


def _query_parameters(model: type[msgspec.Struct] | None) -> list[Schema]:
    """One query parameter per field of the route's query model."""
    if model is None:
        return []
    properties, required = _struct_schema(model)
    out: list[Schema] = []
    for name, prop in properties.items():
        schema = _plain(prop)
        parameter: Schema = {"name": name, "in": "query", "required": name in required, "schema": schema}
        if "description" in schema:
            parameter["description"] = schema.pop("description")
        out.append(parameter)
    return out


def _struct_schema(model: type[msgspec.Struct]) -> tuple[dict[str, Schema], set[str]]:
    """The JSON Schema of ``model``'s fields, by name, and the names it requires."""
    struct = msgspec.json.schema(model)["$defs"][model.__name__]
    # msgspec's schema is an untyped dict: an object schema, whose "properties" are schemas
    # and whose "required" (if any) is a list of names; typed here.
    return cast(dict[str, Schema], struct["properties"]), set(cast(list[str], struct.get("required", ())))


def _plain(prop: Schema) -> Schema:
    """A parameter's schema: without the null a model's optional field allows (absent is how a
    query string leaves a value out) and without a null default."""
    schema = dict(prop)
    branches = [b for b in _array(schema.pop("anyOf", ())) if b != {"type": "null"}]
    if len(branches) == 1:
        schema = {**_object(branches[0]), **schema}
    elif branches:
        schema["anyOf"] = branches
    if schema.get("default", 0) is None:
        del schema["default"]
    return schema


def _other_parameters(route: Route) -> list[Schema]:
    """The route's path parameters and request headers."""
    path: list[Schema] = [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string"}} for n in route.path_params
    ]
    headers: list[Schema] = [
        {"name": n, "in": "header", "required": False, "schema": {"type": "string"}, "description": d}
        for n, d in route.headers.items()
    ]
    return [*path, *headers]


def _body(body: Body, ref_of: Mapping[type, Schema]) -> Schema:
    content: Schema = {t: {"schema": {"type": "string", "format": "binary"}} for t in body.binary}
    kinds = (
        ("multipart/form-data", body.form),
        ("application/json", body.json),
        ("application/x-www-form-urlencoded", body.urlencoded),
    )
    content.update({kind: {"schema": ref_of[model]} for kind, model in kinds if model is not None})
    return {"required": body.required, "content": content}


def _answer(answer: Answer, ref_of: Mapping[type, Schema]) -> Schema:
    out: Schema = {"description": answer.description}
    if answer.headers:
        out["headers"] = {n: {"schema": {"type": "string"}, "description": d} for n, d in answer.headers.items()}
    if answer.model is not None:
        out["content"] = {"application/json": {"schema": ref_of[answer.model]}}
    elif answer.media:
        out["content"] = {t: {"schema": dict(answer.schema)} for t in answer.media}
    return out


def _errors(codes: Iterable[int], ref_of: Mapping[type, Schema]) -> Schema:
    """The error answers (``Route.error_statuses``: derived from the route's guard, parameters
    and what it may raise, through the one error table in ``errors``)."""
    from .models.answers import Error

    error = {"application/json": {"schema": ref_of[Error]}}
    return {str(c): {"description": ERRORS[c], "content": error} for c in sorted(codes)}


def _array(value: JsonValue) -> Sequence[JsonValue]:
    """``value``, a JSON array (a list, or a tuple where a default stands in for one)."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise TypeError(f"not a JSON array: {value!r}")
    return value


def _object(value: JsonValue) -> Mapping[str, JsonValue]:
    """``value``, a JSON object."""
    if not isinstance(value, Mapping):
        raise TypeError(f"not a JSON object: {value!r}")
    return value
