"""The OpenAPI 3.1 description of the HTTP API (served at /openapi.json, checked by tests).

Also the one home of the API's bounds, which the server and the CLI check.

Longer than most modules: it is one document, and reads best whole.
"""

from __future__ import annotations

from typing import Any

from .. import __version__
from ..media import format_types

DEFAULT_LIMIT = 10
MAX_LIMIT = 1000
MAX_DISTANCE = 2  # Euclidean distance between unit vectors: 0 same, 2 opposite
DEFAULT_GROUPS = 20  # /duplicates: groups per page
DUPLICATE_KINDS = ("all", "exact", "near")
DUPLICATE_SORTS = ("similarity", "taken")

_ERROR = {"$ref": "#/components/schemas/Error"}


# The measured recall of an index (daemon/recall.py; README "Measured recall").
RECALL_STATS: dict[str, Any] = {
    "recall_at_10": {"type": ["number", "null"], "description": "measured after the last build; 1.0 in exact mode"},
    "target_recall": {"type": "number"},
    "target_met": {"type": ["boolean", "null"], "description": "null: a snapshot built before measuring"},
    "search_k": {
        "type": ["integer", "null"],
        "description": "Annoy candidates per query in use; null unless mode is annoy",
    },
    "search_k_source": {
        "enum": ["auto", "config", "unmeasured", "exact", None],
        "description": "exact in exact mode (either kind); null while an HNSW snapshot serves",
    },
    "ef": {
        "type": ["integer", "null"],
        "description": "HNSW search effort (usearch expansion_search); null unless mode is hnsw",
    },
    "ef_source": {"enum": ["auto", "config", "unmeasured", None]},
    "search_budget_ms": {"type": "number"},
    "p50_ms": {
        "type": ["number", "null"],
        "description": "median search time at search_k or ef, measured by the builder",
    },
    "p95_ms": {"type": ["number", "null"]},
    "recall_sample": {"type": ["integer", "null"], "description": "stored vectors the recall was measured with"},
    "trees": {
        "type": ["integer", "null"],
        "description": "trees of the Annoy snapshot in use; null unless mode is annoy",
    },
    "trees_source": {"enum": ["auto", "config"]},
    "next_trees": {
        "type": ["integer", "null"],
        "description": "trees of the next Annoy build; null while an HNSW snapshot serves",
    },
    "recall_note": {"type": ["string", "null"], "description": "why the target is not met, when it is not"},
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    text = {
        400: "bad parameter",
        401: "missing or wrong token",
        403: "a Host that is not this daemon's name, a request from another site (anything but the page), "
        "or a path outside the allowed roots (or unreadable)",
        404: "no such file (or not in the index)",
        413: "too large",
        415: "not a readable image",
        429: "too many wrong tokens from this client within a minute: wait Retry-After seconds",
        500: "an internal error (a bug): the daemon's log has the traceback",
        503: "starting, or the catalogue cannot be written now (full or read-only disk; retried by itself)",
        504: "still queued after the timeout",
    }
    # 403: every route refuses a foreign Host (origin.py), whatever else it answers
    # 429: where a token is checked, wrong ones are counted (page.Throttle)
    throttled = {429} if 401 in codes else set()
    return {str(c): _json(_ERROR, text[c]) for c in sorted({*codes, *throttled, 403})}


def _param(name: str, schema: dict[str, Any], description: str, required: bool = False) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": required, "schema": schema, "description": description}


IMAGE = _param("image", {"type": "string"}, "absolute path of a file or folder", required=True)
LIMIT = _param(
    "limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT}, "how many results"
)
EXTRACTOR = _param("extractor", {"type": "string"}, "which running extractor answers (default: the first)")
FOLDER = _param(
    "folder",
    {"type": "string"},
    "only files at or below this absolute folder (inside the allowed roots; 404 when the catalogue "
    "has no indexed image there)",
)
_BOUND = "an ISO 8601 year, month, day or time (no offset: the daemon's local time)"
TAKEN_AFTER = _param(
    "taken_after", {"type": "string"}, f"only photos taken at or after this: {_BOUND}, from its first moment"
)
TAKEN_BEFORE = _param(
    "taken_before",
    {"type": "string"},
    f"only photos taken before the end of this: {_BOUND} (2023-07 takes all of July)",
)
MAX_DISTANCE_PARAM = _param(
    "max_distance", {"type": "number", "minimum": 0, "maximum": MAX_DISTANCE}, "drop results further than this"
)

METADATA_FIELDS: dict[str, Any] = {
    "taken": {
        "type": ["string", "null"],
        "description": "capture time, ISO 8601 (with the offset when the camera wrote one); "
        "null while the file's metadata is not read yet",
    },
    "taken_from": {
        "enum": ["exif", "mtime", None],
        "description": "exif: the photo's own date; mtime: it had none, the file's modification time stands in",
    },
    "width": {"type": ["integer", "null"], "minimum": 1, "description": "pixels as shown (EXIF turn applied)"},
    "height": {"type": ["integer", "null"], "minimum": 1},
    "camera": {"type": ["string", "null"], "description": "EXIF make and model"},
    "orientation": {"type": ["integer", "null"], "minimum": 1, "maximum": 8, "description": "EXIF orientation"},
    "gps": {"type": ["boolean", "null"], "description": "whether the file holds a position (never the position)"},
}


def web_paths() -> dict[str, Any]:
    """The page (daemon/page.py): its files need no token; /login trades the token for a cookie."""
    login_state = {
        "type": "object",
        "required": ["token_required", "authorised"],
        "properties": {"token_required": {"type": "boolean"}, "authorised": {"type": "boolean"}},
    }
    logged_in = {
        "type": "object",
        "required": ["ok", "token_required"],
        "properties": {"ok": {"const": True}, "token_required": {"type": "boolean"}},
    }
    token_body = {
        "type": "object",
        "required": ["token"],
        "properties": {"token": {"type": "string", "minLength": 1}},
    }
    page = {"description": "the page", "content": {"text/html": {"schema": {"type": "string"}}}}
    asset = {
        "description": "a file of the page",
        "content": {kind: {"schema": {"type": "string"}} for kind in ("text/javascript", "text/css", "text/html")},
    }
    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
    return {
        "/": {"get": {"summary": "The web page (search, duplicates, status)", "responses": {"200": page, **_errors()}}},
        "/ui/{name}": {
            "get": {
                "summary": "A file of the page: index.html, app.js or app.css",
                "parameters": [name],
                "responses": {"200": asset, **_errors(404)},
            }
        },
        "/login": {
            "get": {
                "summary": "Whether the page must ask for the token (never 401)",
                "responses": {"200": _json(login_state, "the login state"), **_errors()},
            },
            "post": {
                "summary": "Trade server.token for an HttpOnly SameSite=Strict cookie that stands in for the "
                "Bearer header (refused cross-site)",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": token_body},
                        "application/x-www-form-urlencoded": {"schema": token_body},
                    },
                },
                "responses": {"200": _json(logged_in, "signed in (Set-Cookie)"), **_errors(400, 401)},
            },
        },
        "/logout": {
            "post": {
                "summary": "End the page's session (in the daemon too) and clear its cookie",
                "responses": {
                    "200": _json({"type": "object", "properties": {"ok": {"const": True}}}, "signed out"),
                    **_errors(),
                },
            }
        },
    }


HASH_FIELD = {
    "type": ["string", "null"],
    "description": "the file's content hash: /thumbnail?image=...&v=HASH may be cached for good",
}
THUMBNAIL_TYPES = ("image/webp", "image/jpeg")
ORIGINAL_TYPES: tuple[str, ...] = ("image/jpeg", "image/png", "image/webp", "image/gif", "image/bmp", "image/tiff")
ORIGINAL_TYPES += tuple(dict.fromkeys(format_types.CONTENT_TYPES.values()))  # HEIF, AVIF, camera RAW
THUMBNAIL_HEADERS = {
    "ETag": {"schema": {"type": "string"}, "description": "the quoted content hash with a size and format tag"},
    "Cache-Control": {
        "schema": {"type": "string"},
        "description": "private, no-cache; with v = the content hash: private, max-age=31536000, immutable",
    },
}
THUMBNAIL_STATS = {
    "type": ["object", "null"],
    "description": "the thumbnails folder (null while starting)",
    "required": ["count", "bytes", "max_bytes", "dir"],
    "properties": {
        "count": {"type": "integer", "minimum": 0},
        "bytes": {"type": "integer", "minimum": 0},
        "max_bytes": {"type": "integer", "description": "[thumbnails] max_mb: least recently served go first beyond"},
        "dir": {"type": "string"},
    },
}

BACKFILL_STATS = {
    "type": ["object", "null"],
    "description": "the last `imgsearchd backfill` on this catalogue (it runs in its own process); null: none yet",
    "properties": {
        "state": {
            "enum": ["planning", "running", "finished", "stopped", "failed", "interrupted", "unreadable"],
            "description": "interrupted: it said running but stopped updating (killed); a rerun does the rest",
        },
        "folders": {"type": "array", "items": {"type": "string"}},
        "cluster": {"type": "string", "description": "the Ray address it was given"},
        "planned": {"type": "integer", "minimum": 0, "description": "files it set out to embed"},
        "done": {"type": "integer", "minimum": 0, "description": "files written to the catalogue"},
        "left": {"type": "integer", "minimum": 0},
        "embedded": {"type": "integer", "minimum": 0},
        "reused": {"type": "integer", "minimum": 0, "description": "content that already had a vector"},
        "failed": {"type": "integer", "minimum": 0},
        "images_per_second": {"type": "number"},
        "eta_s": {"type": ["integer", "null"]},
        "started": {"type": "string"},
        "updated": {"type": "string"},
        "error": {"type": ["string", "null"]},
    },
}


def spec() -> dict[str, Any]:
    """The whole document."""
    # Imported here: the CLI imports this module for the bounds above and needs no watcher.
    from ..ingest.jobs import JobState
    from ..ingest.observers import ObserverKind
    from ..ingest.watcher import FolderState
    from ..search.combined import MAX_PARTS
    from ..search.parts import BaseKind

    schemas: dict[str, Any] = {
        "Error": {
            "type": "object",
            "required": ["error"],
            "properties": {
                "error": {"type": "string"},
                "reason": {"type": "string"},
                "image": {"type": "string"},
                "status": {"type": "string"},
                "storage": {"type": "object"},
                "folder": {"type": "string", "description": "the folder filter that is not known (404)"},
            },
        },
        "QueryPart": {
            "type": "object",
            "description": "One part of a combined query: exactly one of image, image_base64 or text, and a "
            "weight (default 1; negative moves results away from the part).",
            "additionalProperties": False,
            "oneOf": [{"required": ["image"]}, {"required": ["image_base64"]}, {"required": ["text"]}],
            "properties": {
                "image": {"type": "string", "description": "absolute path, as for GET /search?image="},
                "image_base64": {"type": "string", "description": "an uploaded image (or a data: URL)"},
                "text": {"type": "string", "description": "needs an extractor with a text encoder (clip)"},
                "weight": {"type": "number", "default": 1},
            },
        },
        "Result": {
            "type": "object",
            "required": ["image", "distance", "score"],
            "additionalProperties": False,
            "properties": {
                "image": {
                    "type": "string",
                    "description": "absolute path; bytes that are not UTF-8 appear as \\udcXX escapes",
                },
                "path_base64": {
                    "type": "string",
                    "description": "only for a name that is not valid UTF-8: its exact bytes, base64",
                },
                "distance": {
                    "type": "number",
                    "minimum": 0,
                    "maximum": MAX_DISTANCE,
                    "description": "Euclidean distance between unit vectors (0 = same)",
                },
                "score": {"type": "number", "minimum": -1, "maximum": 1, "description": "cosine similarity"},
                "hash": HASH_FIELD,
                **METADATA_FIELDS,
            },
        },
        "SearchResults": {
            "type": "object",
            "required": ["results"],
            "properties": {
                "results": {"type": "array", "items": {"$ref": "#/components/schemas/Result"}},
                "extractor": {"type": "string"},
                "folder": {"type": "string", "description": "the folder filter, when one was given"},
            },
        },
        "AddedFile": {
            "type": "object",
            "required": ["image", "status"],
            "properties": {
                "image": {"type": "string"},
                "status": {"enum": ["indexed", "unchanged"]},
                "embedded": {"type": "boolean"},
            },
        },
        "FolderJobStarted": {
            "type": "object",
            "required": ["job", "status_url", "folder", "files_found", "scan_complete", "state"],
            "properties": {
                "job": {"type": "string"},
                "status_url": {"type": "string"},
                "folder": {"type": "string"},
                "files_found": {"type": "integer", "minimum": 0},
                "scan_complete": {"type": "boolean"},
                "state": {"type": "string"},
            },
        },
        "Job": {
            "type": "object",
            "required": ["id", "folder", "state", "found", "done", "progress", "outcomes", "started", "seconds"],
            "properties": {
                "id": {"type": "string"},
                "folder": {"type": "string"},
                "state": {"enum": [s.value for s in JobState]},
                "found": {"type": "integer", "minimum": 0},
                "done": {"type": "integer", "minimum": 0},
                "progress": {"type": "number", "minimum": 0, "maximum": 1},
                "outcomes": {"type": "object", "additionalProperties": {"type": "integer"}},
                "error": {"type": ["string", "null"]},
                "started": {"type": "number"},
                "finished": {"type": ["number", "null"]},
                "seconds": {"type": "number"},
            },
        },
        "Removed": {
            "type": "object",
            "required": ["image", "removed"],
            "properties": {"image": {"type": "string"}, "removed": {"type": "integer", "minimum": 1}},
        },
        "ExtractorStats": {
            "type": "object",
            "required": ["model", "vectors", "indexed", "fresh", "tombstones", "last_build", "building"],
            "properties": {
                "model": {"type": "string"},
                "vectors": {"type": "integer"},
                "indexed": {"type": "integer"},
                "fresh": {"type": "integer"},
                "tombstones": {"type": "integer"},
                "last_build": {"type": ["string", "null"]},
                "last_build_seconds": {"type": ["number", "null"]},
                "building": {"type": "boolean"},
                "mode": {"enum": [k.value for k in BaseKind]},
                "dim": {"type": "integer"},
                "device": {"type": "string"},
                "precision": {"$ref": "#/components/schemas/Precision"},
                "channels_last": {"type": "boolean"},
                "text": {"type": "boolean"},
                **RECALL_STATS,
            },
        },
        "Precision": {
            "type": "object",
            "description": "The precision the model runs in, the setting, why, and the check at load against fp32.",
            "required": ["used", "asked", "reason", "min_cosine", "speedup"],
            "properties": {
                "used": {"enum": ["fp32", "bf16", "int8", "fp16"]},
                "asked": {"enum": ["auto", "fp32", "bf16", "int8", "fp16"]},
                "reason": {"type": "string"},
                "min_cosine": {"type": ["number", "null"]},
                "speedup": {"type": ["number", "null"]},
            },
        },
        "DuplicateMember": {
            "type": "object",
            "required": ["image", "size", "width", "height", "score"],
            "additionalProperties": False,
            "properties": {
                "image": {"type": "string", "description": "absolute path (as in Result)"},
                "path_base64": {"type": "string", "description": "only for a name that is not valid UTF-8"},
                "size": {"type": "integer", "minimum": 0, "description": "bytes, as indexed"},
                "score": {
                    "type": "number",
                    "minimum": -1,
                    "maximum": 1,
                    "description": "cosine to the group's centre (its first member in similarity order)",
                },
                "hash": HASH_FIELD,
                **METADATA_FIELDS,
            },
        },
        "DuplicateGroup": {
            "type": "object",
            "required": ["kind", "files", "similarity", "members"],
            "properties": {
                "kind": {"enum": ["exact", "near"], "description": "exact: the same bytes; near: similar pictures"},
                "files": {"type": "integer", "minimum": 2},
                "similarity": {"type": "number", "description": "the lowest cosine of a member to the first"},
                "members": {"type": "array", "items": {"$ref": "#/components/schemas/DuplicateMember"}},
            },
        },
        "DuplicateProgress": {
            "type": "object",
            "required": ["extractor", "phase", "done", "total", "progress", "seconds"],
            "properties": {
                "extractor": {"type": "string"},
                "phase": {"enum": ["queued", "reading", "joining"]},
                "done": {"type": "integer", "minimum": 0},
                "total": {"type": "integer", "minimum": 0},
                "progress": {"type": "number", "minimum": 0, "maximum": 1},
                "seconds": {"type": "number"},
            },
        },
        "Duplicates": {
            "type": "object",
            "required": [
                "state",
                "extractor",
                "threshold",
                "total",
                "offset",
                "limit",
                "next_offset",
                "groups",
                "stale",
            ],
            "properties": {
                "state": {"const": "ready"},
                "extractor": {"type": "string"},
                "threshold": {"type": "number"},
                "kind": {"enum": list(DUPLICATE_KINDS)},
                "folder": {"type": ["string", "null"]},
                "sort": {"enum": list(DUPLICATE_SORTS)},
                "total": {"type": "integer", "minimum": 0, "description": "groups of this kind (and folder)"},
                "offset": {"type": "integer", "minimum": 0},
                "limit": {"type": "integer", "minimum": 1},
                "next_offset": {"type": ["integer", "null"], "description": "the next page's offset; null: last page"},
                "groups": {"type": "array", "items": {"$ref": "#/components/schemas/DuplicateGroup"}},
                "stale": {
                    "type": "boolean",
                    "description": "the catalogue changed since: a new computation runs (see computing)",
                },
                "computing": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/DuplicateProgress"}]},
                "largest_component": {
                    "type": "integer",
                    "description": "what chaining pairs would have made one group",
                },
                "seq": {"type": "integer"},
                "contents": {"type": "integer", "description": "distinct contents joined"},
                "pairs": {"type": "integer"},
                "method": {"enum": ["exact", "index"]},
                "computed_at": {"type": "string"},
                "seconds": {"type": "number"},
            },
        },
        "DuplicatesComputing": {
            "type": "object",
            "required": ["state", "extractor", "threshold", "computing"],
            "properties": {
                "state": {"const": "computing"},
                "extractor": {"type": "string"},
                "threshold": {"type": "number"},
                "computing": {"$ref": "#/components/schemas/DuplicateProgress"},
                "last_error": {"type": ["string", "null"], "description": "why the last computation failed"},
            },
        },
        "Stats": {
            "type": "object",
            "required": [
                "images",
                "pending",
                "failed",
                "active_extractor",
                "fallback",
                "extractors",
                "watch",
                "jobs",
                "uptime_s",
                "version",
                "ready",
            ],
            "properties": {
                "images": {"type": ["integer", "null"], "description": "indexed files in the catalogue"},
                "files": {"type": "integer"},
                "metadata": {
                    "type": "object",
                    "required": ["missing"],
                    "properties": {
                        "missing": {
                            "type": "integer",
                            "minimum": 0,
                            "description": "indexed files whose capture date and size are not read yet "
                            "(catalogued before they were kept; read while the indexer is idle)",
                        }
                    },
                },
                "pending": {"type": "integer", "minimum": 0, "description": "queued work"},
                "failed": {
                    "type": "object",
                    "properties": {
                        "total": {"type": "integer"},
                        "by_reason": {"type": "object", "additionalProperties": {"type": "integer"}},
                        "recent": {"type": "array", "items": {"type": "object", "required": ["path", "reason"]}},
                    },
                },
                "active_extractor": {"type": ["string", "null"]},
                "fallback": {
                    "oneOf": [
                        {"type": "null"},
                        {
                            "type": "object",
                            "required": ["configured", "running", "reason"],
                            "properties": {
                                "configured": {"type": "string"},
                                "running": {"type": "string"},
                                "reason": {"type": "string"},
                            },
                        },
                    ]
                },
                "extractors": {
                    "type": "object",
                    "additionalProperties": {"$ref": "#/components/schemas/ExtractorStats"},
                },
                "watch": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["folder", "state"],
                        "properties": {
                            "folder": {"type": "string"},
                            "state": {
                                "enum": [s.value for s in FolderState],
                                "description": "offline: the folder is gone or unreadable as a whole (an unmounted "
                                "disk); its files are kept but not returned by search",
                            },
                            "observer": {"enum": [*(k.value for k in ObserverKind), None]},
                            "reason": {
                                "type": ["string", "null"],
                                "description": "why the folder is polled or offline",
                            },
                            "since": {"type": "string", "description": "when the folder entered this state"},
                            "events": {"type": "integer", "description": "file-system events seen"},
                            "settling": {"type": "integer", "description": "files written and not yet complete"},
                            "scanning": {"type": "boolean"},
                            "last_scan": {"type": ["object", "null"], "description": "the last reconcile scan"},
                        },
                    },
                },
                "jobs": {"type": "array", "items": {"$ref": "#/components/schemas/Job"}},
                "duplicates": {
                    "type": ["object", "null"],
                    "description": "the /duplicates computation running, and those cached",
                    "properties": {
                        "computing": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/DuplicateProgress"}]},
                        "cached": {"type": "object"},
                        "errors": {"type": "object"},
                    },
                },
                "indexing": {"type": "object"},
                "backfill": BACKFILL_STATS,
                "thumbnails": THUMBNAIL_STATS,
                "decoders": {
                    "type": "object",
                    "additionalProperties": {"type": "boolean"},
                    "description": "optional decoders this daemon has (heif, avif, raw); without one, such files fail with reason missing_library",
                },
                "uptime_s": {"type": "number"},
                "version": {"type": "string"},
                "ready": {"type": "boolean"},
                "phase": {"type": "string"},
            },
        },
        "Health": {
            "type": "object",
            "required": ["status"],
            "properties": {
                "status": {
                    "enum": ["ok", "degraded", "starting"],
                    "description": "degraded: searches work, but the catalogue cannot be written (see storage)",
                },
                "phase": {"type": "string"},
                "storage": {"type": "object"},
            },
        },
    }
    ref = lambda name: {"$ref": f"#/components/schemas/{name}"}  # noqa: E731
    paths: dict[str, Any] = {
        "/add": {
            "get": {
                "summary": "Index a file now, or a folder in the background",
                "parameters": [IMAGE],
                "responses": {
                    "200": _json(ref("AddedFile"), "the file was indexed"),
                    "202": _json(ref("FolderJobStarted"), "a folder job started"),
                    **_errors(400, 401, 403, 404, 413, 415, 500, 503, 504),
                },
            }
        },
        "/remove": {
            "get": {
                "summary": "Forget a file or every file in a folder",
                "parameters": [IMAGE],
                "responses": {"200": _json(ref("Removed"), "removed"), **_errors(400, 401, 403, 404, 503)},
            }
        },
        "/search": {
            "get": {
                "summary": "Images most like an image path, or matching a text (CLIP)",
                "parameters": [
                    {**IMAGE, "required": False, "description": "absolute path of an image (or give text)"},
                    _param("text", {"type": "string"}, "text to match (extractors with a text encoder)"),
                    LIMIT,
                    EXTRACTOR,
                    MAX_DISTANCE_PARAM,
                    FOLDER,
                    TAKEN_AFTER,
                    TAKEN_BEFORE,
                ],
                "responses": {
                    "200": _json(ref("SearchResults"), "best first"),
                    **_errors(400, 401, 403, 404, 413, 415, 503),
                },
            },
            "post": {
                "summary": "Images most like an uploaded image, or a combined query of weighted parts",
                "description": "A JSON body with 'query' is a combined query: the query vector is the sum of "
                "weight x unit vector of each part, normalised (parts that cancel out: 400). At most "
                f"{MAX_PARTS} parts; all uploads together at most server.max_upload_mb.",
                "parameters": [LIMIT, EXTRACTOR, MAX_DISTANCE_PARAM, FOLDER, TAKEN_AFTER, TAKEN_BEFORE],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                        "image/*": {"schema": {"type": "string", "format": "binary"}},
                        "multipart/form-data": {
                            "schema": {
                                "type": "object",
                                "required": ["image"],
                                "properties": {
                                    "image": {"type": "string", "format": "binary"},
                                    "folder": {"type": "string"},
                                    "taken_after": {"type": "string"},
                                    "taken_before": {"type": "string"},
                                },
                            }
                        },
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "image_base64": {"type": "string"},
                                    "text": {"type": "string"},
                                    "limit": {"type": "integer"},
                                    "extractor": {"type": "string"},
                                    "max_distance": {"type": "number"},
                                    "folder": {"type": "string"},
                                    "taken_after": {"type": "string"},
                                    "taken_before": {"type": "string"},
                                    "query": {
                                        "type": "array",
                                        "minItems": 1,
                                        "maxItems": MAX_PARTS,
                                        "items": {"$ref": "#/components/schemas/QueryPart"},
                                    },
                                },
                            }
                        },
                    },
                },
                "responses": {
                    "200": _json(ref("SearchResults"), "best first"),
                    **_errors(400, 401, 403, 404, 413, 415, 503),
                },
            },
        },
        "/duplicates": {
            "get": {
                "summary": "Groups of byte-identical and of near-duplicate files, biggest first",
                "parameters": [
                    EXTRACTOR,
                    _param(
                        "threshold",
                        {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
                        "cosine above which two pictures are near-duplicates (default: the extractor's "
                        "duplicate_threshold)",
                    ),
                    _param("kind", {"enum": list(DUPLICATE_KINDS), "default": "all"}, "which groups"),
                    _param("folder", {"type": "string"}, "only groups with a file in this folder (absolute)"),
                    _param(
                        "sort",
                        {"enum": list(DUPLICATE_SORTS), "default": "similarity"},
                        "similarity: biggest groups first, centre first; taken: members oldest first, groups "
                        "by their oldest photo",
                    ),
                    _param("offset", {"type": "integer", "minimum": 0, "default": 0}, "groups to skip"),
                    _param(
                        "limit",
                        {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_GROUPS},
                        "groups per page",
                    ),
                ],
                "responses": {
                    "200": _json(ref("Duplicates"), "a page of groups"),
                    "202": _json(ref("DuplicatesComputing"), "computing in the background: ask again"),
                    **_errors(400, 401, 403, 404, 503),
                },
            }
        },
        "/thumbnail": {
            "get": {
                "summary": "The thumbnail of an indexed file (made now if it has none yet)",
                "description": "About [thumbnails] size pixels on the longer side, JPEG (WebP when so configured). "
                "The ETag names the content hash and the size; a request with a matching If-None-Match gets "
                "304. Cached for good only with v, the hash a search result gives.",
                "parameters": [
                    {**IMAGE, "description": "absolute path of an indexed file, as search results name it"},
                    {
                        "name": "v",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "the file's content hash (a result's hash): the answer may be kept a year",
                    },
                    {
                        "name": "If-None-Match",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": "an ETag from an earlier answer",
                    },
                ],
                "responses": {
                    "200": {
                        "description": "the thumbnail",
                        "headers": THUMBNAIL_HEADERS,
                        "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in THUMBNAIL_TYPES},
                    },
                    "304": {"description": "not modified: the ETag matched", "headers": THUMBNAIL_HEADERS},
                    **_errors(400, 401, 403, 404, 413, 415, 503),
                },
            }
        },
        "/original": {
            "get": {
                "summary": "The file itself, when it is indexed and inside the allowed roots",
                "description": "Content-Type from the decoded header, not the name; Content-Disposition inline. "
                "Any other path is refused (403 outside the roots, 404 not an indexed catalogue file).",
                "parameters": [{**IMAGE, "description": "absolute path of an indexed file, as search results name it"}],
                "responses": {
                    "200": {
                        "description": "the file's bytes",
                        "content": {t: {"schema": {"type": "string", "format": "binary"}} for t in ORIGINAL_TYPES},
                    },
                    **_errors(400, 401, 403, 404, 413, 415, 503),
                },
            }
        },
        "/stats": {
            "get": {
                "summary": "Counts, progress, extractors and jobs",
                "responses": {"200": _json(ref("Stats"), "statistics"), **_errors(401)},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (text format 0.0.4)",
                "description": "Files, vectors and index facts per extractor, queue depth, files indexed and "
                "failed by reason, watch state per folder (read from /stats at each scrape), and the latency "
                "of answered searches by query kind (imgsearchd_search_seconds). Answered while starting.",
                "responses": {
                    "200": {"description": "the metrics", "content": {"text/plain": {"schema": {"type": "string"}}}},
                    **_errors(401),
                },
            }
        },
        "/health": {
            "get": {
                "summary": "200 once the models and indexes are loaded",
                "responses": {
                    "200": _json(ref("Health"), "serving"),
                    "503": _json(ref("Health"), "starting"),
                    **_errors(401),
                },
            }
        },
        "/jobs": {
            "get": {
                "summary": "Folder jobs",
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["jobs"],
                            "properties": {"jobs": {"type": "array", "items": ref("Job")}},
                        },
                        "jobs",
                    ),
                    **_errors(401),
                },
            }
        },
        "/jobs/{job_id}": {
            "get": {
                "summary": "One folder job's progress",
                "parameters": [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": _json(ref("Job"), "the job"), **_errors(401, 404)},
            }
        },
        "/rebuild": {
            "post": {
                "summary": "Rebuild the Annoy indexes now, in the background",
                "parameters": [EXTRACTOR],
                "responses": {
                    "202": _json(
                        {
                            "type": "object",
                            "required": ["rebuilding"],
                            "properties": {"rebuilding": {"type": "array", "items": {"type": "string"}}},
                        },
                        "started",
                    ),
                    **_errors(400, 401, 503),
                },
            }
        },
        **web_paths(),
        "/openapi.json": {
            "get": {"summary": "This document", "responses": {"200": {"description": "OpenAPI 3.1"}, **_errors(403)}}
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "imgsearchd",
            "version": __version__,
            "description": 'Local image-search daemon. Errors are JSON {"error": ...}. Before any route, the '
            "server refuses a malformed request (400), a body over server.max_upload_mb (413, from "
            "Content-Length before the body is read) and a header over 64 KiB (431); a Host that is not "
            "the daemon's name is refused with 403 on every route.",
        },
        "servers": [{"url": "http://127.0.0.1:8080"}],
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "only when server.token is set"}
            },
        },
        "paths": paths,
    }
