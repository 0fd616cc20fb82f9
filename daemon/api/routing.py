"""The route table's shape, and how a table becomes Bottle routes.

A ``Route`` says everything about one route: its method and path, what it accepts (its query
model, path parameters, headers, body), what it answers (each status with its model or
media types), who may call it (``guard``) and the function that answers. ``register`` adds
the routes to the app; ``spec`` turns the same table into /openapi.json, so a route cannot
exist without its description. Routes another module adds (the page's, ``page.add_routes``)
are in the table with ``handler=None``, and ``check_documented`` refuses an app with a
route the table does not describe.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import bottle
import msgspec

from . import auth, params
from .context import Context

Handler = Callable[..., Any]  # (context, query model or None, **path parameters) -> the answer


@dataclass(frozen=True)
class Answer:
    """One status a route answers: JSON of ``model``, or bytes of the ``media`` types."""

    status: int
    description: str
    model: type[msgspec.Struct] | None = None
    media: Sequence[str] = ()
    schema: Mapping[str, Any] = field(default_factory=lambda: {"type": "string", "format": "binary"})
    headers: Mapping[str, str] = field(default_factory=dict)  # name -> description (a string value)


@dataclass(frozen=True)
class Body:
    """What a route's request body may be, by media type."""

    json: type[msgspec.Struct] | None = None
    form: type[msgspec.Struct] | None = None  # multipart/form-data
    urlencoded: type[msgspec.Struct] | None = None
    binary: Sequence[str] = ()  # raw bytes of these media types
    required: bool = True


@dataclass(frozen=True)
class Route:
    """One route: what it accepts, what it answers, who may call it, and its handler."""

    method: str
    path: str  # as OpenAPI writes it: /jobs/{job_id}
    summary: str
    handler: Handler | None  # None: added by another module (the page's routes)
    answers: Sequence[Answer]
    errors: Sequence[int] = ()
    query: type[msgspec.Struct] | None = None
    description: str = ""
    path_params: Sequence[str] = ()
    headers: Mapping[str, str] = field(default_factory=dict)  # request header -> description
    body: Body | None = None
    # "ready": the token (when one is set) and a loaded daemon; "token": the token only;
    # "open": neither (the spec, the page's files and login)
    guard: Literal["ready", "token", "open"] = "ready"
    parse_query: bool = True  # False: the handler parses ``query`` itself (merged with its body)

    @property
    def rule(self) -> str:
        """The path as Bottle writes it: /jobs/<job_id>."""
        return re.sub(r"\{(\w+)\}", r"<\1>", self.path)


def register(app: bottle.Bottle, table: Sequence[Route], context: Context) -> None:
    """Add every route of ``table`` that has a handler to ``app``."""
    for route in table:
        if route.handler is not None:
            app.route(route.rule, route.method, _callback(route, route.handler, context), name=route.path)


def _callback(route: Route, handler: Handler, context: Context) -> Handler:
    """The Bottle callback: the guard, the query parsed by the route's model, then the handler."""

    @functools.wraps(handler)
    def callback(**path: str) -> Any:
        if route.guard != "open":
            auth.authorise(context)
        if route.guard == "ready":
            auth.require_ready(context.service)
        parse = route.query is not None and route.parse_query
        query = params.read_query(route.query) if parse and route.query is not None else None
        return handler(context, query, **path)

    return callback


def check_documented(app: bottle.Bottle, table: Sequence[Route]) -> None:
    """Refuse an app with a route the table does not describe, or a described route it lacks."""
    served = {(r.method, r.rule) for r in app.routes}
    described = {(r.method, r.rule) for r in table}
    if served != described:
        raise RuntimeError(
            f"routes and their table differ: served only {sorted(served - described)}, "
            f"described only {sorted(described - served)}"
        )
