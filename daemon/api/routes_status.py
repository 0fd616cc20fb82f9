"""Routes on the daemon itself: ``/stats``, ``/metrics``, ``/health``, ``/jobs``,
``POST /rebuild`` and ``/openapi.json``."""

from __future__ import annotations

from typing import Any

import bottle

from .. import errors
from . import auth
from .context import Context
from .errors import ApiError
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .models import answers
from .models.requests import RebuildQuery
from .models.stats import Stats
from .routing import Answer, Route


def stats(context: Context, _: None) -> Any:
    return context.service.stats()


def prometheus(context: Context, _: None) -> Any:
    body = context.metrics.render()
    return bottle.HTTPResponse(body=body, status=200, headers={"Content-Type": METRICS_CONTENT_TYPE})


def health(context: Context, _: None) -> Any:
    """Open, for monitors: the status alone without the token (when one is set), details with it."""
    service = context.service
    details = auth.authorised(context)  # a wrong token: 401, counted like any wrong token
    if not service.ready:
        return 503, answers.Health(status="starting", phase=service.phase) if details else {"status": "starting"}
    answer = service.health()
    return answer if details else {"status": answer["status"]}


def jobs(context: Context, _: None) -> Any:
    return {"jobs": context.service.jobs.summary()}


def job(context: Context, _: None, job_id: str) -> Any:
    found = context.service.jobs.get(job_id)
    if found is None:
        raise ApiError(404, f"no job {job_id!r}")
    return found.as_dict()


def rebuild(context: Context, query: RebuildQuery) -> Any:
    return 202, context.service.rebuild(query.extractor)


def openapi(context: Context, _: None) -> Any:
    return context.document()  # ``spec.spec``: handed over, as the spec reads this module


ROUTES = (
    Route(
        "GET",
        "/stats",
        "Counts, progress, extractors and jobs",
        stats,
        (Answer(200, "statistics", Stats),),
        guard="token",
    ),
    Route(
        "GET",
        "/metrics",
        "Prometheus metrics (text format 0.0.4)",
        prometheus,
        (Answer(200, "the metrics", media=("text/plain",), schema={"type": "string"}),),
        description="Files, vectors and index facts per extractor, queue depth, files indexed and "
        "failed by reason, watch state per folder (read from /stats at each scrape), and the latency "
        "of answered searches by query kind (imgsearchd_search_seconds). Answered while starting.",
        guard="token",
    ),
    Route(
        "GET",
        "/health",
        "200 once the models and indexes are loaded; degraded while a model runs on its fallback",
        health,
        (Answer(200, "serving", answers.Health), Answer(503, "starting", answers.Health)),
        (401, 429),  # open, but a wrong token is refused and counted (auth.authorised)
        description="Open to monitors: without the token (when server.token is set) only the status "
        '(ok, degraded or starting); with it, why: {"status": "degraded", "fallback": {...}} while a '
        "configured model runs on its fallback, storage while the catalogue cannot be written.",
        guard="open",
    ),
    Route("GET", "/jobs", "Folder jobs", jobs, (Answer(200, "jobs", answers.Jobs),), guard="token"),
    Route(
        "GET",
        "/jobs/{job_id}",
        "One folder job's progress",
        job,
        (Answer(200, "the job", answers.Job),),
        (404,),
        path_params=("job_id",),
        guard="token",
    ),
    Route(
        "POST",
        "/rebuild",
        "Rebuild the indexes now, in the background",
        rebuild,
        (Answer(202, "started", answers.Rebuilding),),
        (),
        RebuildQuery,
        raises=(errors.Invalid,),  # an extractor that is not running
    ),
    Route(
        "GET",
        "/openapi.json",
        "This document",
        openapi,
        (Answer(200, "OpenAPI 3.1", media=("application/json",), schema={"type": "object"}),),
        guard="open",
    ),
)
