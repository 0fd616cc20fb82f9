"""The route table's shape, and how a table becomes Bottle routes.

A ``Route`` says everything about one route: its method and path, what it accepts (its query
model, path parameters, headers, body), what it answers (each status with its model or
media types), who may call it (``guard``) and the function that answers. ``register`` adds
the routes to the app; ``spec`` turns the same table into /openapi.json, so a route cannot
exist without its description. Routes another module adds (the page's, ``page.add_routes``)
are in the table with ``handler=None``, and ``check_documented`` refuses an app with a
route the table does not describe.

Each answer goes through its route's model for its status before it is sent (``Checked``,
a Bottle plugin over every described route, the page's too): a key the model lacks, a
missing one or a wrong type is a 500 with the mismatch in the log, never an answer that
differs from the spec. The error statuses a route documents are derived, not typed: from
its guard (401, 429, 503 while starting), its parameters (400), the domain errors it may
raise (``raises``, mapped through ``errors``' one table) and those its handler raises
itself (``errors``).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import bottle
import msgspec

from .. import errors as domain
from ..media import images
from . import auth, params
from .context import Context
from .errors import IMAGE_ERROR_STATUS, STATUS, UNUSABLE_IMAGE, error_answer
from .responses import json_response

log = logging.getLogger(__name__)

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
    errors: Sequence[int] = ()  # statuses the handler raises itself (``ApiError``)
    query: type[msgspec.Struct] | None = None
    description: str = ""
    path_params: Sequence[str] = ()
    headers: Mapping[str, str] = field(default_factory=dict)  # request header -> description
    body: Body | None = None
    # "ready": the token (when one is set) and a loaded daemon; "token": the token only;
    # "open": neither (the spec, the page's files and login)
    guard: Literal["ready", "token", "open"] = "ready"
    parse_query: bool = True  # False: the handler parses ``query`` itself (merged with its body)
    # the domain errors the handler may raise (``errors.DomainError`` classes; ``images.ImageError``
    # or ``errors.BadImage``: a picture that cannot be used, any of its reasons)
    raises: Sequence[type[Exception]] = ()

    @property
    def rule(self) -> str:
        """The path as Bottle writes it: /jobs/<job_id>."""
        return re.sub(r"\{(\w+)\}", r"<\1>", self.path)

    @property
    def error_statuses(self) -> tuple[int, ...]:
        """Every error status the route can answer, derived from what it checks and raises."""
        codes = {403, *self.errors}  # 403: a Host that is not the daemon's name (origin.py), on every route
        if self.guard != "open":
            codes |= {401, 429}  # a missing or wrong token; too many wrong ones (page.Throttle)
        if self.guard == "ready":
            codes.add(503)  # starting
        if self.query is not None and msgspec.structs.fields(self.query):
            codes.add(400)  # a bad parameter
        if self.body is not None:
            codes.add(400)  # a bad body
        for cls in self.raises:
            codes |= statuses_of(cls)
        return tuple(sorted(codes - {a.status for a in self.answers}))

    @property
    def security(self) -> list[dict[str, list[str]]]:
        """The OpenAPI security of the route: the bearer token unless it is open."""
        return [] if self.guard == "open" else [{"bearer": []}]


def statuses_of(cls: type[Exception]) -> set[int]:
    """The statuses an error class answers with, through ``errors``' table (an unusable image:
    every status its reasons map to)."""
    if issubclass(cls, (domain.BadImage, images.ImageError)):
        return {*IMAGE_ERROR_STATUS.values(), UNUSABLE_IMAGE}
    for base in cls.__mro__:
        if base in STATUS:
            return {STATUS[base]}
    return {500}


def register(app: bottle.Bottle, table: Sequence[Route], context: Context) -> None:
    """Add every route of ``table`` that has a handler to ``app``, and check every described
    route's answers against their models (``Checked``)."""
    app.install(Checked(table))
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
        query = params.read_query(route.query) if route.query is not None and route.parse_query else None
        return handler(context, query, **path)

    return callback


class AnswerMismatch(RuntimeError):
    """An answer its route's model for its status does not describe (a bug: answered 500)."""


class Checked:
    """A Bottle plugin: each answer of a described route goes through the route's model for its
    status before it is sent (installed last, so it sees what the handler returned).

    A dict (status 200), a ``(status, dict)`` or a model instance is checked by
    ``msgspec.convert`` against the model (answer models forbid unknown keys) and then sent as
    JSON; a response the handler made itself (a file, the page's login) is checked for its
    status, and its JSON body, if any, against the model too. An error a handler raises is left
    to ``responses.json_api`` (checked against ``models.answers.Error``); one whose status the
    route does not document is logged.
    """

    name = "answer_models"
    api = 2

    def __init__(self, table: Sequence[Route]) -> None:
        self.routes = {(r.method, r.rule): r for r in table}

    def apply(self, callback: Handler, route: bottle.Route) -> Handler:
        described = self.routes.get((route.method, route.rule))
        if described is None:
            return callback

        @functools.wraps(callback)
        def checked(*args: Any, **kwargs: Any) -> Any:
            try:
                result = callback(*args, **kwargs)
            except bottle.HTTPResponse:
                raise
            except Exception as exc:
                _note_undocumented(described, exc)
                raise
            return checked_answer(described, result)

        return checked


def checked_answer(route: Route, result: Any) -> Any:
    """``result`` as the response it is, after checking it against the route's answer models."""
    if isinstance(result, bottle.HTTPResponse):
        return _checked_response(route, result)
    status, body = result if isinstance(result, tuple) else (200, result)
    answer = _answer_for(route, status)
    if answer.model is None:
        if isinstance(body, dict) and "application/json" in answer.media:
            return json_response(status, body)  # free-form JSON (the spec itself)
        raise AnswerMismatch(f"{route.method} {route.path} answered JSON for {status}, which it documents as bytes")
    if isinstance(body, msgspec.Struct):
        if not isinstance(body, answer.model):
            raise AnswerMismatch(f"{route.method} {route.path} {status}: {type(body).__name__}, not {answer.model}")
        return json_response(status, msgspec.to_builtins(body))
    try:
        msgspec.convert(body, answer.model)
    except msgspec.ValidationError as exc:
        raise AnswerMismatch(f"{route.method} {route.path} {status} is not a {answer.model.__name__}: {exc}") from None
    return json_response(status, body)  # the body itself: json.dumps prints it as the API always has


def _checked_response(route: Route, response: bottle.HTTPResponse) -> bottle.HTTPResponse:
    status = response.status_code
    if status >= 400:
        return response
    answer = _answer_for(route, status)
    if answer.model is not None:
        try:
            msgspec.json.decode(response.body, type=answer.model)
        except (msgspec.ValidationError, msgspec.DecodeError, TypeError) as exc:
            raise AnswerMismatch(
                f"{route.method} {route.path} {status}: not a {answer.model.__name__}: {exc}"
            ) from None
    return response


def _answer_for(route: Route, status: int) -> Answer:
    for answer in route.answers:
        if answer.status == status:
            return answer
    raise AnswerMismatch(f"{route.method} {route.path} answered {status}, which it does not document")


def _note_undocumented(route: Route, exc: Exception) -> None:
    """Log an error answer whose status the route does not document (the spec is missing it)."""
    answer = error_answer(exc)
    if answer is not None and answer[0] not in route.error_statuses:
        log.error("%s %s answers %d, which its spec does not list: %s", route.method, route.path, answer[0], exc)


def check_documented(app: bottle.Bottle, table: Sequence[Route]) -> None:
    """Refuse an app with a route the table does not describe, or a described route it lacks."""
    served = {(r.method, r.rule) for r in app.routes}
    described = {(r.method, r.rule) for r in table}
    if served != described:
        raise RuntimeError(
            f"routes and their table differ: served only {sorted(served - described)}, "
            f"described only {sorted(described - served)}"
        )
