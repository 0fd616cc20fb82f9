"""The HTTP API: Bottle routes, JSON in and out, every error a JSON body with the right status.

The routes only read from the daemon's indexes and put work on its queue (through the
small ``Service`` facade in ``service``); they never touch files or models directly
except through ``images`` and ``query``. Served by waitress (``http_server``); every request
first passes the Host and cross-site checks of ``origin``.

Longer than most modules: every route and the checks of its parameters live here, so
the API has one place to read.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import logging
import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import bottle

from ..errors import ApiError, image_error
from ..extractors import TextNotSupportedError
from ..ingest.watcher import FolderState
from ..media import images
from ..paths import from_query
from ..search import time_range
from ..store.rows import SearchScope
from . import origin, page
from .headers import ANSWER_HEADERS, content_disposition, header_bytes, header_text
from .metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from .metrics import Metrics
from .spec import DEFAULT_GROUPS, DEFAULT_LIMIT, DUPLICATE_KINDS, DUPLICATE_SORTS, MAX_DISTANCE, MAX_LIMIT, spec

if TYPE_CHECKING:
    from ..service.facade import Service

log = logging.getLogger("imgsearchd.api.app")


def _json_response(status: int, body: dict[str, Any]) -> bottle.HTTPResponse:
    headers = {"Content-Type": "application/json"}
    if status == 503:  # starting, busy, or the disk: each passes, so say when to ask again
        headers["Retry-After"] = "1"
    elif status == 429:  # too many wrong tokens: the body says how long the wait is
        headers["Retry-After"] = str(body.get("retry_after", 60))
    return bottle.HTTPResponse(body=json.dumps(body), status=status, headers=headers)


def _error_body(status: int, message: str, **extra: Any) -> bottle.HTTPResponse:
    return _json_response(status, {"error": message, **extra})


def json_api(callback: Callable[..., Any]) -> Callable[..., Any]:
    """A Bottle plugin: dicts become JSON, ApiError and any crash become JSON errors."""

    @functools.wraps(callback)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            result = callback(*args, **kwargs)
        except ApiError as exc:
            return _error_body(exc.status, exc.message, **exc.extra)
        except bottle.HTTPResponse:
            raise
        except Exception:
            log.exception("internal error in %s %s", bottle.request.method, bottle.request.path)
            return _error_body(500, "internal error; see the daemon's log")
        if isinstance(result, tuple):
            status, body = result
            return _json_response(status, body)
        if isinstance(result, dict):
            return _json_response(200, result)
        return result

    return wrapper


# -- parameter parsing ------------------------------------------------------------------


def _bounded(raw: Any, convert: Callable[[str], Any], low: float, high: float, name: str, what: str) -> Any:
    """A query parameter converted and checked to lie in [low, high]; None when absent."""
    if raw is None or raw == "":
        return None
    try:
        value = convert(str(raw))
    except ValueError:
        raise ApiError(400, f"{name} must be {what}, not {raw!r}") from None
    if not low <= value <= high:
        raise ApiError(400, f"{name} must be {what}, not {value}")
    return value


def parse_limit(raw: Any, default: int = DEFAULT_LIMIT) -> int:
    value = _bounded(raw, int, 1, MAX_LIMIT, "limit", f"an integer from 1 to {MAX_LIMIT}")
    return default if value is None else value


def parse_max_distance(raw: Any) -> float | None:
    return _bounded(raw, float, 0.0, MAX_DISTANCE, "max_distance", f"a number from 0 to {MAX_DISTANCE:g}")


def parse_threshold(raw: Any) -> float | None:
    value = _bounded(raw, float, 0.0, 1.0, "threshold", "a cosine above 0 and at most 1")
    if value is not None and value <= 0.0:  # NaN fails the bounds check above
        raise ApiError(400, f"threshold must be a cosine above 0 and at most 1, not {value}")
    return value


def parse_offset(raw: Any) -> int:
    if raw == "":
        raise ApiError(400, "offset must be an integer of 0 or more, not ''")
    value = _bounded(raw, int, 0, 2**62, "offset", "an integer of 0 or more")
    return value or 0


def parse_choice(raw: Any, name: str, choices: tuple[str, ...]) -> str:
    """One of ``choices``; the first when the parameter is absent."""
    if raw is None:
        return choices[0]
    if raw not in choices:
        raise ApiError(400, f"{name} must be one of {', '.join(choices)}, not {raw!r}")
    return str(raw)


def etag_matches(header: str | None, etag: str) -> bool:
    """Whether an If-None-Match header names this ETag (weakly compared), or is ``*``."""
    if not header:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in header.split(",")]
    return "*" in tags or etag in tags


# ``/thumbnail?image=PATH`` names a file, whose picture may change: the browser asks again
# each time (a 304 when the ETag, the content hash, still matches). With ``&v=HASH`` (the
# ``hash`` of a search result) the URL names one picture for good: kept a year, not asked
# again. ``private``: with a token set, a shared cache must not keep them.
# Never sniffed into HTML or script; never shown by another site's page (origin.py).
PICTURE_HEADERS = {"X-Content-Type-Options": "nosniff", "Cross-Origin-Resource-Policy": "same-origin"}
THUMBNAIL_REVALIDATE = "private, no-cache"
THUMBNAIL_IMMUTABLE = "private, max-age=31536000, immutable"


# -- the app ------------------------------------------------------------------------------


def create_app(service: Service) -> bottle.Bottle:
    """The Bottle application over a running (or starting) service."""
    app = bottle.Bottle()
    app.install(json_api)
    sessions = page.Sessions()
    metrics = Metrics(service.stats, tuple(images.Reason), tuple(FolderState))
    throttle = page.Throttle(lambda: int(service.config.server["wrong_tokens_per_minute"]))
    app.default_error_handler = _json_error_page  # bottle's own errors (400, 404, 405, 500) as JSON

    @app.hook("after_request")
    def answer_headers() -> None:
        for name, value in ANSWER_HEADERS.items():
            bottle.response.set_header(name, value)

    @app.hook("before_request")
    def check_origin() -> None:
        server = service.config.server
        try:
            origin.check(bottle.request.environ, server["host"], server["allowed_hosts"])
        except origin.Refused as exc:
            raise _error_body(403, str(exc)) from None

    def authorise() -> None:
        token = service.config.server["token"]
        if not token:
            return
        environ = bottle.request.environ
        header = header_bytes(environ, "Authorization")  # any bytes: compared as bytes, never decoded
        if not header and sessions.authorises(environ, sessions.read(bottle.request), token):
            return  # the page's login cookie (page.py) stands in for the header
        scheme, _, given = header.partition(b" ")
        if scheme.lower() == b"bearer" and given.strip():
            with throttle.attempt(environ) as attempt:  # wrong ones counted per client: guessing takes years
                attempt.right = page.token_matches(given.strip(), token)
            if attempt.right:
                return
        raise ApiError(401, "missing or wrong token: send 'Authorization: Bearer <token>' (or log in on the page at /)")

    def require_ready() -> None:
        if not service.ready:
            raise ApiError(503, f"imgsearchd is starting ({service.phase}); try again shortly")

    def guarded(need_ready: bool = True) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def decorate(handler: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(handler)
            def wrapped(*args: Any, **kwargs: Any) -> Any:
                authorise()
                if need_ready:
                    require_ready()
                return handler(*args, **kwargs)

            return wrapped

        return decorate

    def path_param(name: str = "image") -> str:
        # Bottle hands query values over as Latin-1-decoded bytes; a file name may be any
        # bytes (percent-encoded in the URL), so decode them as the file system does.
        native = bottle.request.query.get(name)
        raw = from_query(native) if native else None
        if not raw:
            raise ApiError(400, f"missing parameter '{name}' (a file or folder path)")
        return service.check_path(raw)

    @app.get("/add")
    @guarded()
    def add() -> Any:
        path = service.canonical(path_param())
        if os.path.isdir(path):
            if not os.access(path, os.R_OK | os.X_OK):
                raise ApiError(403, f"{path}: folder is not readable by imgsearchd", reason="unreadable", image=path)
            job = service.add_folder(path)
            return 202, {
                "job": job.id,
                "status_url": f"/jobs/{job.id}",
                "folder": path,
                "files_found": job.found,
                "scan_complete": job.scan_done.is_set(),
                "state": job.state,
            }
        return service.add_file(path)

    @app.get("/remove")
    @guarded()
    def remove() -> Any:
        path = path_param()
        removed = service.remove(path)
        named = service.canonical(path)
        if not removed and named != path:  # added through a folder link: catalogued by its own name
            path, removed = named, service.remove(named)
        if not removed:
            raise ApiError(404, f"{path} is not in the index", image=path)
        return {"image": path, "removed": removed}

    @app.get("/search")
    @guarded()
    def search_get() -> Any:
        started = time.perf_counter()
        query = bottle.request.query
        limit = parse_limit(query.get("limit"))
        max_distance = parse_max_distance(query.get("max_distance"))
        extractor = query.getunicode("extractor") or None
        text = query.getunicode("text")
        if text is not None and query.get("image"):
            raise ApiError(400, "give either 'image' or 'text', not both")
        scope = scope_param({})
        if text is not None:
            return answered("text", started, search_text(text, extractor, limit, max_distance, scope))
        path = path_param()
        try:
            return answered("path", started, service.search_path(path, extractor, limit, max_distance, scope))
        except images.ImageError as exc:
            raise image_error(exc, path) from None

    @app.post("/search")
    @guarded()
    def search_post() -> Any:
        started = time.perf_counter()
        query = bottle.request.query
        data, fields = read_upload()
        limit = parse_limit(fields.get("limit", query.get("limit")))
        max_distance = parse_max_distance(fields.get("max_distance", query.get("max_distance")))
        extractor = string_field(fields, "extractor") or query.getunicode("extractor") or None
        scope = scope_param(fields)
        if "query" in fields:
            if data is not None or fields.get("text") is not None:
                raise ApiError(400, "give either 'query' (a combined query) or 'image_base64' or 'text', not both")
            answer = service.search_combined(fields["query"], extractor, limit, max_distance, scope)
            return answered("combined", started, answer)
        if data is None:
            text = string_field(fields, "text")
            if text:
                return answered("text", started, search_text(text, extractor, limit, max_distance, scope))
            raise ApiError(
                400,
                "no image in the request: send raw bytes, a multipart field 'image', or JSON {\"image_base64\": ...}",
            )
        try:
            return answered("upload", started, service.search_bytes(data, extractor, limit, max_distance, scope))
        except images.ImageError as exc:
            raise image_error(exc) from None

    def answered(kind: str, started: float, answer: dict[str, Any]) -> dict[str, Any]:
        """A search answer, timed into /metrics' latency histogram (errors are not counted)."""
        metrics.observe_search(kind, started)
        return answer

    def string_field(fields: dict[str, Any], name: str) -> str | None:
        value = fields.get(name)
        if value is not None and not isinstance(value, str):
            raise ApiError(400, f"{name} must be a string, not {type(value).__name__}")
        return value

    def folder_param(fields: dict[str, Any]) -> str | None:
        """The optional ``folder`` filter (a body field, else the query string), checked as paths are."""
        raw = string_field(fields, "folder")
        if raw is None:
            native = bottle.request.query.get("folder")
            raw = None if native is None else from_query(native)
        return checked_folder(raw)

    def scope_param(fields: dict[str, Any]) -> SearchScope | None:
        """The search's filters: ``folder``, ``taken_after``, ``taken_before`` (body fields, else the query string)."""
        folder = folder_param(fields)
        # not ``getunicode``, which answers None for bytes that are not UTF-8: the filter was dropped
        query = bottle.request.query
        bounds = [
            string_field(fields, k) or (None if query.get(k) is None else from_query(query.get(k)))
            for k in ("taken_after", "taken_before")
        ]
        try:
            after, before = time_range.parse_range(*bounds)
        except time_range.BadTimeBound as exc:
            raise ApiError(400, str(exc)) from None
        if folder is None and after is None and before is None:
            return None
        return SearchScope(folder, after, before)

    def checked_folder(raw: str | None) -> str | None:
        """A folder filter inside the allowed roots; an empty one or a file is refused, not ignored."""
        if raw is None:
            return None
        if not raw:
            raise ApiError(400, "parameter 'folder' is empty; leave it out to search everything")
        folder = service.check_path(raw)
        if os.path.exists(folder) and not os.path.isdir(folder):
            raise ApiError(400, f"{folder} is a file, not a folder", folder=folder)
        return folder

    # Keys a JSON body of POST /search may hold, and the JSON types of the scalar ones: a key
    # outside this list is refused, not silently dropped ("image" there is a path for GET).
    JSON_FIELDS: dict[str, tuple[tuple[type, ...], str]] = {
        "limit": ((int,), "an integer"),
        "max_distance": ((int, float), "a number"),
        "extractor": ((str,), "a string"),
        "text": ((str,), "a string"),
        "folder": ((str,), "a string"),
        "taken_after": ((str,), "a string"),
        "taken_before": ((str,), "a string"),
        "query": ((list,), "a list"),
    }

    def check_json_fields(body: dict[str, Any]) -> None:
        for key, value in body.items():
            if key not in JSON_FIELDS:
                known = ", ".join(["image_base64", *JSON_FIELDS])
                raise ApiError(400, f"unknown field {key!r} in the JSON body; known: {known}")
            kinds, wanted = JSON_FIELDS[key]
            if value is not None and key != "query" and (isinstance(value, bool) or not isinstance(value, kinds)):
                raise ApiError(400, f"{key} must be {wanted}, not {type(value).__name__}")

    def search_text(
        text: str, extractor: str | None, limit: int, max_distance: float | None, scope: SearchScope | None
    ) -> Any:
        if not text.strip():
            raise ApiError(400, "parameter 'text' is empty")
        try:
            return service.search_text(text, extractor, limit, max_distance, scope)
        except TextNotSupportedError as exc:
            raise ApiError(400, str(exc)) from None

    def read_upload() -> tuple[bytes | None, dict[str, Any]]:
        """The posted image as bytes (raw, multipart or base64 JSON), and any other JSON fields."""
        cap = service.max_upload_bytes
        length = bottle.request.content_length
        if length > cap:
            raise ApiError(413, f"upload is {length} bytes, over the {cap}-byte cap (server.max_upload_mb)")
        content_type = (bottle.request.content_type or "").split(";")[0].strip().lower()
        if content_type == "application/json":
            try:
                body = json.loads(bottle.request.body.read(cap + 1) or b"{}")
            except (ValueError, UnicodeDecodeError):
                raise ApiError(400, "the request body is not valid JSON") from None
            except RecursionError:
                # json.loads recurses once per level; Python's limit (1000) is the depth cap
                raise ApiError(400, "the JSON body is nested too deeply") from None
            if not isinstance(body, dict):
                raise ApiError(400, "the JSON body must be an object")
            encoded = body.pop("image_base64", None)
            check_json_fields(body)
            if encoded is None:
                return None, body
            if not isinstance(encoded, str):
                raise ApiError(400, "image_base64 must be a string")
            if "," in encoded[:100] and encoded.startswith("data:"):
                encoded = encoded.split(",", 1)[1]  # a data: URL
            try:
                data = base64.b64decode(encoded, validate=True)
            except (binascii.Error, ValueError):
                raise ApiError(400, "image_base64 is not valid base64") from None
            return capped(data, "decoded image"), body
        if content_type == "multipart/form-data":
            return read_multipart(cap)
        return (capped(bottle.request.body.read(cap + 1), "upload") or None), {}

    def read_multipart(cap: int) -> tuple[bytes, dict[str, Any]]:
        try:
            upload = bottle.request.files.get("image")
            forms = bottle.request.forms
        except bottle.HTTPError as exc:  # bottle's "Malformed multipart/form-data"
            raise ApiError(400, f"malformed multipart body: {exc.body}") from None
        except UnicodeDecodeError:  # bottle decodes part headers as UTF-8, as browsers send them
            raise ApiError(400, "malformed multipart body: a part header (the file name?) is not UTF-8") from None
        except ValueError as exc:
            raise ApiError(400, f"malformed multipart body: {exc}") from None
        if upload is None:
            if forms.get("image") is not None:  # bottle files only hold parts with a file name
                raise ApiError(400, "multipart field 'image' must be a file part (with a filename) holding the image")
            raise ApiError(400, "multipart upload has no field 'image'")
        fields = {
            k: forms.getunicode(k)
            for k in ("limit", "extractor", "max_distance", "text", "folder", "taken_after", "taken_before")
            if forms.get(k) is not None
        }
        return capped(upload.file.read(cap + 1), "upload"), fields

    def capped(data: bytes, what: str) -> bytes:
        cap = service.max_upload_bytes
        if len(data) > cap:
            raise ApiError(413, f"{what} is over the {cap}-byte cap (server.max_upload_mb)")
        return data

    @app.get("/duplicates")
    @guarded()
    def find_duplicates() -> Any:
        query = bottle.request.query
        native = query.get("folder")
        return service.find_duplicates(
            query.getunicode("extractor") or None,
            parse_threshold(query.get("threshold")),
            parse_choice(query.getunicode("kind"), "kind", DUPLICATE_KINDS),
            checked_folder(None if native is None else from_query(native)),
            parse_offset(query.get("offset")),
            parse_limit(query.get("limit"), DEFAULT_GROUPS),
            parse_choice(query.getunicode("sort"), "sort", DUPLICATE_SORTS),
        )

    @app.get("/thumbnail")
    @guarded()
    def thumbnail() -> Any:
        found = service.thumbnail(path_param())
        pinned = bottle.request.query.get("v") == found.content_hash
        cache = THUMBNAIL_IMMUTABLE if pinned else THUMBNAIL_REVALIDATE
        headers = {"ETag": found.etag, "Cache-Control": cache, **PICTURE_HEADERS}
        if etag_matches(header_text(bottle.request.environ, "If-None-Match"), found.etag):
            return bottle.HTTPResponse(status=304, headers=headers)
        return bottle.HTTPResponse(body=found.data, status=200, headers={**headers, "Content-Type": found.content_type})

    @app.get("/original")
    @guarded()
    def original() -> Any:
        path = path_param()
        fh, size, content_type = service.original(path)
        headers = {
            "Content-Type": content_type,
            "Content-Length": str(size),
            "Content-Disposition": content_disposition(path),
            "Cache-Control": "no-cache",
            **PICTURE_HEADERS,
        }
        return bottle.HTTPResponse(body=fh, status=200, headers=headers)

    @app.get("/stats")
    @guarded(need_ready=False)
    def stats() -> Any:
        return service.stats()

    @app.get("/metrics")
    @guarded(need_ready=False)
    def prometheus() -> Any:
        return bottle.HTTPResponse(body=metrics.render(), status=200, headers={"Content-Type": METRICS_CONTENT_TYPE})

    @app.get("/health")
    @guarded(need_ready=False)
    def health() -> Any:
        if not service.ready:
            return 503, {"status": "starting", "phase": service.phase}
        return service.health()

    @app.get("/jobs")
    @guarded(need_ready=False)
    def jobs() -> Any:
        return {"jobs": service.jobs.summary()}

    @app.get("/jobs/<job_id>")
    @guarded(need_ready=False)
    def job(job_id: str) -> Any:
        found = service.jobs.get(job_id)
        if found is None:
            raise ApiError(404, f"no job {job_id!r}")
        return found.as_dict()

    @app.post("/rebuild")
    @guarded()
    def rebuild() -> Any:
        extractor = bottle.request.query.getunicode("extractor") or None
        return 202, service.rebuild(extractor)

    page.add_routes(app, lambda: str(service.config.server["token"] or ""), sessions, throttle)

    @app.get("/openapi.json")
    def openapi() -> Any:
        return spec()

    return app


def _json_error_page(error: bottle.HTTPError) -> str:
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
