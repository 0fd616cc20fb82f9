"""Routes on the watched folders: ``GET /folders`` (every one, its state and counts), ``POST
/folders`` (watch one from now on), ``DELETE /folders`` (stop watching one added so) and
``GET /folders/browse`` (the sub-folders a page offers while a path is typed)."""

from __future__ import annotations

import json
from typing import Any

import bottle

from .. import errors
from . import params
from .context import Context
from .errors import ApiError
from .models import answers
from .models.requests import BrowseQuery, FolderBody, FolderQuery
from .routing import Answer, Body, Route

MAX_BODY = 64 * 1024  # a path (PATH_MAX is 4096 bytes) in a small JSON object
CHECKED_PATH = (errors.Invalid, errors.Refused)  # Service.check_path: not absolute, a NUL; outside the roots


def folders(context: Context, _: None) -> Any:
    return context.service.folders()


def watch(context: Context, _: None) -> Any:
    return context.service.watch_folder(read_body().folder)


def unwatch(context: Context, query: FolderQuery) -> Any:
    return context.service.unwatch_folder(query.folder)


def browse(context: Context, query: BrowseQuery) -> Any:
    return context.service.browse(query.path)


def read_body() -> FolderBody:
    """The JSON body as ``FolderBody``: 400 for one that is not JSON, not an object, or with a key
    or type the model does not take."""
    raw = bottle.request.body.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise ApiError(400, f'the JSON body is over {MAX_BODY} bytes; send {{"folder": PATH}}')
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(400, 'the request body is not valid JSON; send {"folder": PATH}') from None
    if not isinstance(body, dict):
        raise ApiError(400, 'the JSON body must be an object: {"folder": PATH}')
    params.check_json(FolderBody, body)
    if not body.get("folder"):
        raise ApiError(400, "missing field 'folder' in the JSON body: {\"folder\": PATH}")
    return FolderBody(folder=body["folder"])


FOLDER_RAISES = (*CHECKED_PATH, errors.NotFound, errors.Conflict, errors.StorageUnavailable)

ROUTES = (
    Route(
        "GET",
        "/folders",
        "The watched folders: the config's and those added, their state, counts and jobs",
        folders,
        (Answer(200, "every watched folder", answers.Folders),),
    ),
    Route(
        "POST",
        "/folders",
        "Watch a folder from now on (kept across restarts) and index it now",
        watch,
        (
            Answer(201, "watched from now on; its indexing job started", answers.FolderWatched),
            Answer(200, "watched already: nothing changed", answers.FolderWatched),
        ),
        (400,),
        raises=FOLDER_RAISES,
        description="The same rules as /add: an absolute path inside the allowed roots (403 outside, or "
        "unreadable), links resolved as a scan names them, an existing folder (404). A folder inside one "
        "watched already is refused (409, naming it); one that holds folders added earlier takes their "
        "place. Follow the job at /jobs/{job_id} or in GET /folders.",
        body=Body(json=FolderBody),
    ),
    Route(
        "DELETE",
        "/folders",
        "Stop watching a folder added at run time; its pictures leave the index (the files stay)",
        unwatch,
        (Answer(200, "no longer watched", answers.FolderUnwatched),),
        (),
        FolderQuery,
        raises=FOLDER_RAISES,
        description="404: not a watched folder. 409: a folder of the config (watch.directories or --watch), "
        "which only the settings can change. Pictures that another watched folder holds stay.",
    ),
    Route(
        "GET",
        "/folders/browse",
        "The sub-folders of a folder inside the allowed roots, for completing a path",
        browse,
        (Answer(200, "the sub-folders, by name", answers.Browse),),
        (),
        BrowseQuery,
        raises=(*CHECKED_PATH, errors.NotFound),
        description="Hidden folders are left out; at most 500 (then truncated is true). Without path: the "
        "allowed roots, or the daemon user's home folder when none are set. 403 outside the allowed roots.",
    ),
)
