"""Search routes: ``GET /search`` (a path, a text or a content hash), ``POST /search`` (an
upload, a text, a combined query or a content hash) and ``GET /duplicates``.

Every search takes ``offset``: results offset..offset+limit of the same ranking; a page
ends at the limit bound's result (``bounds.MAX_LIMIT``), so no search ranks more than that.
Every search takes ``min_match`` too: each result carries its ``match`` level, and the page
keeps those at that level or stronger (``search.matches``)."""

from __future__ import annotations

import functools
import os
import time
from typing import TYPE_CHECKING, Any

import bottle

from .. import errors
from ..paths import from_query
from ..search import time_range
from ..search.combined import MAX_PARTS
from ..search.request import ByHash, ByPath, ByText, ByUpload, Combined, Query, SearchRequest
from ..store.rows import SearchScope
from . import bounds, params, uploads
from .context import Context
from .errors import ApiError
from .models import answers
from .models.requests import DuplicatesQuery, SearchBody, SearchForm, SearchQuery, UploadQuery
from .routing import Answer, Body, Route

if TYPE_CHECKING:
    from ..service.facade import Service

# What a search may raise (its statuses come from the one table in api.errors): a bad
# parameter or extractor, a path outside the roots, an unknown folder, no free slot to embed,
# a picture that cannot be used (any of its reasons).
SEARCH_RAISES = (errors.Invalid, errors.Refused, errors.NotFound, errors.Busy, errors.BadImage)
NO_IMAGE = "no image in the request: send raw bytes, a multipart field 'image', or JSON {\"image_base64\": ...}"


def search_get(context: Context, query: SearchQuery) -> Any:
    started = time.perf_counter()
    if sum(getattr(query, name) is not None for name in ("image", "text", "hash")) > 1:
        raise ApiError(400, "give only one of 'image', 'text' or 'hash'")
    scope = search_scope(context.service, query.folder, query.taken_after, query.taken_before)
    request = search_request(query.extractor, query.limit, query.offset, query.max_distance, scope, query.min_match)
    if query.hash is not None:
        return searched(context, started, request, ByHash(query.hash.lower()))
    if query.text is not None:
        return searched(context, started, request, ByText(query.text))
    if not query.image:
        raise params.missing("image")
    return searched(context, started, request, ByPath(context.service.check_path(query.image)))


def search_post(context: Context, _: None) -> Any:
    started = time.perf_counter()
    data, fields = uploads.read_upload(context.service.max_upload_bytes)
    query = params.parse(UploadQuery, merged(fields))  # a body field wins over the query string's
    content_hash = body_hash(fields)
    scope = search_scope(context.service, query.folder, query.taken_after, query.taken_before)
    request = search_request(query.extractor, query.limit, query.offset, query.max_distance, scope, query.min_match)
    if content_hash is not None:
        if data is not None or fields.get("text") is not None or "query" in fields:
            raise ApiError(400, "give only one of 'hash', 'image_base64', 'text' or 'query'")
        return searched(context, started, request, ByHash(content_hash))
    if "query" in fields:
        if data is not None or fields.get("text") is not None:
            raise ApiError(400, "give either 'query' (a combined query) or 'image_base64' or 'text', not both")
        return searched(context, started, request, Combined(fields["query"]))
    if data is None:
        if fields.get("text"):
            return searched(context, started, request, ByText(fields["text"]))
        raise ApiError(400, NO_IMAGE)
    return searched(context, started, request, ByUpload(data))


def merged(fields: uploads.Fields) -> dict[str, object]:
    """The POST's parameters: each body field, else the query string's (numbers: a body field
    that is there, even null, wins; text: a body field that is not empty)."""
    query = bottle.request.query

    def path(name: str) -> str | None:
        # not ``getunicode``, which answers None for bytes that are not UTF-8: the filter was dropped
        native = query.get(name)
        return None if native is None else from_query(native)

    folder = fields.get("folder")
    return {
        "limit": fields["limit"] if "limit" in fields else query.get("limit"),
        "offset": fields["offset"] if "offset" in fields else query.get("offset"),
        "max_distance": fields["max_distance"] if "max_distance" in fields else query.get("max_distance"),
        "extractor": fields.get("extractor") or query.getunicode("extractor") or None,
        "folder": folder if folder is not None else path("folder"),
        "taken_after": fields.get("taken_after") or path("taken_after"),
        "taken_before": fields.get("taken_before") or path("taken_before"),
        "min_match": fields.get("min_match") or query.getunicode("min_match") or None,
    }


def body_hash(fields: uploads.Fields) -> str | None:
    """The JSON body's ``hash`` (lower case), checked as ``SearchBody`` says; None: not given."""
    raw = fields.get("hash")
    if raw is None:
        return None
    field = next(f for f in params.fields(SearchBody) if f.name == "hash")
    return str(params.checked(field, raw)).lower()


def search_request(
    extractor: str | None,
    limit: int,
    offset: int,
    max_distance: float | None,
    scope: SearchScope | None,
    min_match: str | None = None,
) -> SearchRequest:
    """The request; a page that would pass the limit bound's result ends there (fewer results).

    ``offset`` is below the bound (its model says so), so the page keeps at least one result.
    """
    page = min(limit, bounds.MAX_LIMIT - offset)
    return SearchRequest(extractor, page, max_distance, scope, offset, min_match)


def searched(context: Context, started: float, request: SearchRequest, what: Query) -> Any:
    """The search's answer, timed into /metrics' latency histogram (errors are not counted).

    ``next_offset`` is null where the next page would pass the limit bound.
    """
    answer = context.service.search(request, what)
    next_offset = answer.get("next_offset")
    if next_offset is not None and next_offset >= bounds.MAX_LIMIT:
        answer["next_offset"] = None
    context.metrics.observe_search(what.kind, started)
    return answer


def search_scope(
    service: Service, folder: str | None, taken_after: str | None, taken_before: str | None
) -> SearchScope | None:
    """The search's filters: a folder (checked as paths are) and a capture-time range; None: none."""
    checked = checked_folder(service, folder)
    try:
        after, before = time_range.parse_range(taken_after, taken_before)
    except time_range.BadTimeBound as exc:
        raise ApiError(400, str(exc)) from None
    if checked is None and after is None and before is None:
        return None
    return SearchScope(checked, after, before)


def checked_folder(service: Service, raw: str | None, name: str = "folder") -> str | None:
    """A folder filter inside the allowed roots; an empty one or a file is refused, not ignored."""
    if raw is None:
        return None
    if not raw:
        raise ApiError(400, f"parameter '{name}' is empty; leave it out to search everything")
    folder = service.check_path(raw)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ApiError(400, f"{folder} is a file, not a folder", folder=folder)
    return folder


def duplicates(context: Context, _: None) -> Any:
    service = context.service
    # the folder is checked in its turn (after kind, before offset): with several bad
    # parameters, the first one answers, as it always has
    check_folder = functools.partial(checked_folder, service)
    check_keep_in = functools.partial(checked_folder, service, name="keep_in")
    query = params.read_query(DuplicatesQuery, checks={"folder": check_folder, "keep_in": check_keep_in})
    answer = service.find_duplicates(
        query.extractor,
        query.threshold,
        query.kind,
        query.folder,
        query.offset,
        query.limit,
        query.sort,
        query.keep_in,
    )
    return (202 if answer["state"] == "computing" else 200), answer  # 202 while the first join runs


ROUTES = (
    Route(
        "GET",
        "/search",
        "Images most like an image path or a picture's content hash, or matching a text (CLIP)",
        search_get,
        (Answer(200, "best first", answers.SearchResults),),
        (400,),
        SearchQuery,
        raises=SEARCH_RAISES,
    ),
    Route(
        "POST",
        "/search",
        "Images most like an uploaded image or a content hash, or a combined query of weighted parts",
        search_post,
        (Answer(200, "best first", answers.SearchResults),),
        (400, 413),  # 413: an upload over server.max_upload_mb (uploads)
        UploadQuery,
        raises=(*SEARCH_RAISES, errors.TooLarge),  # TooLarge: a combined query's images together
        description="A JSON body with 'query' is a combined query: the query vector is the sum of "
        "weight x unit vector of each part, normalised (parts that cancel out: 400). At most "
        f"{MAX_PARTS} parts; all uploads together at most server.max_upload_mb. An upload's answer "
        "names its content hash (query.hash): GET /search?hash= asks the same search again.",
        body=Body(json=SearchBody, form=SearchForm, binary=("application/octet-stream", "image/*")),
        parse_query=False,  # a body field wins over the query string's: search_post merges them
    ),
    Route(
        "GET",
        "/duplicates",
        "Groups in three tiers (identical files, edited copies, similar shots), biggest first, a keeper each",
        duplicates,
        (
            Answer(200, "a page of groups", answers.Duplicates),
            Answer(202, "computing in the background: ask again", answers.DuplicatesComputing),
        ),
        (400,),
        DuplicatesQuery,
        raises=(errors.Invalid, errors.Refused, errors.NotFound),  # extractor; folder outside; unknown folder
        parse_query=False,  # duplicates parses it, checking the folder in its turn
    ),
)
