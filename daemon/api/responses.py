"""Answers as JSON: what a handler returns becomes a JSON response, an error its JSON body
with its status (``errors.error_answer``), a crash a 500 that points at the log.

Every error answer is checked against the one error model (``models.answers.Error``, which
forbids unknown keys) before it is sent; a route's other answers are checked against their
models in ``routing.Checked``. Bodies are printed by ``json.dumps``, as the API always has:
ASCII only (a file name's undecodable bytes stay ``\\udcXX`` escapes, which msgspec's encoder
refuses) and floats as Python writes them (``1e-05``)."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import bottle
import msgspec

from .errors import error_answer
from .models.answers import Error

log = logging.getLogger(__name__)


def json_response(status: int, body: Mapping[str, object]) -> bottle.HTTPResponse:
    """``body`` as JSON with ``status`` (and Retry-After where the status says to wait)."""
    headers = {"Content-Type": "application/json"}
    if status == 503:  # starting, busy, or the disk: each passes, so say when to ask again
        headers["Retry-After"] = "1"
    elif status == 429:  # too many wrong tokens: the body says how long the wait is
        headers["Retry-After"] = str(body.get("retry_after", 60))
    return bottle.HTTPResponse(body=json.dumps(body), status=status, headers=headers)


def error_body(status: int, message: str, **extra: Any) -> bottle.HTTPResponse:
    """An error answer: ``{"error": message, **extra}``."""
    return error_response(status, {"error": message, **extra})


def error_response(status: int, body: Mapping[str, object]) -> bottle.HTTPResponse:
    """An error answer, once ``body`` is checked against the error model; one it does not
    describe (a key it lacks: a bug) is logged and answered as a plain 500."""
    try:
        msgspec.convert(body, Error)
    except msgspec.ValidationError as exc:
        log.error("an error answer (%d) that the Error model does not describe: %s: %r", status, exc, body)
        return json_response(500, {"error": "internal error; see the daemon's log"})
    return json_response(status, body)


def json_api(callback: Callable[..., Any]) -> Callable[..., Any]:
    """A Bottle plugin: errors become their answers (``errors``), any crash a 500. What a route
    returns is already a response: ``routing.Checked`` (inside this plugin) made it one, after
    checking it against the route's model, and every served route is described
    (``routing.check_documented``)."""

    @functools.wraps(callback)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            result = callback(*args, **kwargs)
        except bottle.HTTPResponse:
            raise
        except Exception as exc:
            answer = error_answer(exc)
            if answer is not None:
                return error_response(*answer)
            log.exception("internal error in %s %s", bottle.request.method, bottle.request.path)
            return error_body(500, "internal error; see the daemon's log")
        return result

    return wrapper


def json_error_page(error: bottle.HTTPError) -> str:
    """An error bottle itself answers (no route, wrong method, unparsable body, a crash) as JSON."""
    bottle.response.content_type = "application/json"
    status = error.status_code
    if status == 404:
        message = "no such endpoint; see /openapi.json"
    elif status == 405:
        message = f"method {bottle.request.method} not allowed here"
    elif status >= 500:
        log.error("internal error in %s %s: %s", bottle.request.method, bottle.request.path, error.exception)
        message = "internal error; see the daemon's log"
    else:
        message = str(error.body or error.status_line)
    return json.dumps(msgspec.to_builtins(Error(error=message)))
