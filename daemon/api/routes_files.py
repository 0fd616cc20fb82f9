"""Routes on files: ``/add`` and ``/remove`` (the index), ``/thumbnail`` and ``/original`` (the pictures)."""

from __future__ import annotations

import os
from typing import Any

import bottle

from .. import errors
from ..media import format_types
from .context import Context
from .errors import ApiError
from .headers import content_disposition, header_text
from .models import answers
from .models.requests import FileQuery, PathQuery, ThumbnailQuery
from .routing import Answer, Route

# ``/thumbnail?image=PATH`` names a file, whose picture may change: the browser asks again
# each time (a 304 when the ETag, the content hash, still matches). With ``&v=HASH`` (the
# ``hash`` of a search result) the URL names one picture for good: kept a year, not asked
# again. ``private``: with a token set, a shared cache must not keep them.
# Never sniffed into HTML or script; never shown by another site's page (origin.py).
PICTURE_HEADERS = {"X-Content-Type-Options": "nosniff", "Cross-Origin-Resource-Policy": "same-origin"}
THUMBNAIL_REVALIDATE = "private, no-cache"
THUMBNAIL_IMMUTABLE = "private, max-age=31536000, immutable"
THUMBNAIL_TYPES = ("image/webp", "image/jpeg")
ORIGINAL_TYPES: tuple[str, ...] = ("image/jpeg", "image/png", "image/webp", "image/gif", "image/bmp", "image/tiff")
ORIGINAL_TYPES += tuple(dict.fromkeys(format_types.CONTENT_TYPES.values()))  # HEIF, AVIF, camera RAW
CHECKED_PATH = (errors.Invalid, errors.Refused)  # Service.check_path: not absolute; outside the roots
THUMBNAIL_HEADERS = {
    "ETag": "the quoted content hash with a size and format tag",
    "Cache-Control": "private, no-cache; with v = the content hash: private, max-age=31536000, immutable",
}


def etag_matches(header: str | None, etag: str) -> bool:
    """Whether an If-None-Match header names this ETag (weakly compared), or is ``*``."""
    if not header:
        return False
    tags = [tag.strip().removeprefix("W/") for tag in header.split(",")]
    return "*" in tags or etag in tags


def add(context: Context, query: PathQuery) -> Any:
    service = context.service
    path = service.canonical(service.check_path(query.image))
    if os.path.isdir(path):
        if not os.access(path, os.R_OK | os.X_OK):
            raise ApiError(403, f"{path}: folder is not readable by imgsearchd", reason="unreadable", image=path)
        job = service.add_folder(path)
        return 202, answers.FolderJobStarted(
            job=job.id,
            status_url=f"/jobs/{job.id}",
            folder=path,
            files_found=job.found,
            scan_complete=job.scan_done.is_set(),
            state=job.state,
        )
    return service.add_file(path)


def remove(context: Context, query: PathQuery) -> Any:
    service = context.service
    path = service.check_path(query.image)
    removed = service.remove(path)
    named = service.canonical(path)
    if not removed and named != path:  # added through a folder link: catalogued by its own name
        path, removed = named, service.remove(named)
    if not removed:
        raise ApiError(404, f"{path} is not in the index", image=path)
    return {"image": path, "removed": removed}


def thumbnail(context: Context, query: ThumbnailQuery) -> Any:
    found = context.service.thumbnail(context.service.check_path(query.image))
    cache = THUMBNAIL_IMMUTABLE if query.v == found.content_hash else THUMBNAIL_REVALIDATE
    headers = {"ETag": found.etag, "Cache-Control": cache, **PICTURE_HEADERS}
    if etag_matches(header_text(bottle.request.environ, "If-None-Match"), found.etag):
        return bottle.HTTPResponse(status=304, headers=headers)
    return bottle.HTTPResponse(body=found.data, status=200, headers={**headers, "Content-Type": found.content_type})


def original(context: Context, query: FileQuery) -> Any:
    path = context.service.check_path(query.image)
    fh, size, content_type = context.service.original(path)
    headers = {
        "Content-Type": content_type,
        "Content-Length": str(size),
        "Content-Disposition": content_disposition(path),
        "Cache-Control": "no-cache",
        **PICTURE_HEADERS,
    }
    return bottle.HTTPResponse(body=fh, status=200, headers=headers)


ROUTES = (
    Route(
        "GET",
        "/add",
        "Index a file now, or a folder in the background",
        add,
        (
            Answer(200, "the file was indexed", answers.AddedFile),
            Answer(202, "a folder job started", answers.FolderJobStarted),
        ),
        (403,),  # a folder imgsearchd cannot read
        PathQuery,
        raises=(
            *CHECKED_PATH,
            errors.NotFound,
            errors.Busy,
            errors.TimedOut,
            errors.StorageUnavailable,
            errors.BadImage,
        ),
    ),
    Route(
        "GET",
        "/remove",
        "Forget a file or every file in a folder",
        remove,
        (Answer(200, "removed", answers.Removed),),
        (404,),
        PathQuery,
        raises=(*CHECKED_PATH, errors.StorageUnavailable),
    ),
    Route(
        "GET",
        "/thumbnail",
        "The thumbnail of an indexed file (made now if it has none yet)",
        thumbnail,
        (
            Answer(200, "the thumbnail", media=THUMBNAIL_TYPES, headers=THUMBNAIL_HEADERS),
            Answer(304, "not modified: the ETag matched", headers=THUMBNAIL_HEADERS),
        ),
        (),
        ThumbnailQuery,
        raises=(*CHECKED_PATH, errors.NotFound, errors.Busy, errors.BadImage),
        description="About [thumbnails] size pixels on the longer side, JPEG (WebP when so configured). "
        "The ETag names the content hash and the size; a request with a matching If-None-Match gets "
        "304. Cached for good only with v, the hash a search result gives.",
        headers={"If-None-Match": "an ETag from an earlier answer"},
    ),
    Route(
        "GET",
        "/original",
        "The file itself, when it is indexed and inside the allowed roots",
        original,
        (Answer(200, "the file's bytes", media=ORIGINAL_TYPES),),
        (),
        FileQuery,
        raises=(*CHECKED_PATH, errors.NotFound, errors.BadImage),
        description="Content-Type from the decoded header, not the name; Content-Disposition inline. "
        "Any other path is refused (403 outside the roots, 404 not an indexed catalogue file).",
    ),
)
