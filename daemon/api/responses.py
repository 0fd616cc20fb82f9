"""Answers as JSON: what a handler returns becomes a JSON response, an error its JSON body
with its status (``errors.error_answer``), a crash a 500 that points at the log."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import bottle

from .errors import error_answer

log = logging.getLogger("imgsearchd.api.app")


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
    return json_response(status, {"error": message, **extra})


def json_api(callback: Callable[..., Any]) -> Callable[..., Any]:
    """A Bottle plugin: dicts become JSON, errors their answers (``errors``), any crash a 500."""

    @functools.wraps(callback)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            result = callback(*args, **kwargs)
        except bottle.HTTPResponse:
            raise
        except Exception as exc:
            answer = error_answer(exc)
            if answer is not None:
                return json_response(*answer)
            log.exception("internal error in %s %s", bottle.request.method, bottle.request.path)
            return error_body(500, "internal error; see the daemon's log")
        if isinstance(result, tuple):
            status, body = result
            return json_response(status, body)
        if isinstance(result, dict):
            return json_response(200, result)
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
    return json.dumps({"error": message})
