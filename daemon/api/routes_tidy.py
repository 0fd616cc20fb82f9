"""Routes acting on duplicates: ``POST /duplicates/resolve`` (trash, move or link the others of
each group), ``POST /duplicates/undo`` and ``GET /duplicates/resolutions``."""

from __future__ import annotations

import json
import re
from typing import Any, TypeVar

import bottle
import msgspec
import msgspec.inspect

from .. import errors
from ..tidy.checks import Group
from .context import Context
from .errors import ApiError
from .models import tidy
from .routing import Answer, Body, Route

# 10,000 paths of up to a few hundred bytes each; the server's max_upload_mb caps any body too
MAX_BODY = 8 * 1024 * 1024
T = TypeVar("T", bound=msgspec.Struct)


def read_json(model: type[T], shape: str) -> T:
    """The JSON body as ``model``: 400 naming the key for one that is not JSON or not the model."""
    raw = bottle.request.body.read(MAX_BODY + 1)
    if len(raw) > MAX_BODY:
        raise ApiError(400, f"the JSON body is over {MAX_BODY} bytes; send {shape}")
    try:  # json, not msgspec's decoder: a name that is not UTF-8 comes as \udcXX escapes, which msgspec refuses
        body = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(400, f"the request body is not valid JSON; send {shape}") from None
    try:
        return msgspec.convert(body, model)
    except msgspec.ValidationError as exc:
        raise ApiError(400, f"the JSON body is not {shape}: {exc}{_choices(model, str(exc))}") from None


def _choices(model: type[msgspec.Struct], said: str) -> str:
    """``; KEY is one of A, B, C`` when msgspec refused a value of a top-level enum field."""
    match = re.search(r"`\$\.(\w+)`", said)
    if not said.startswith("Invalid enum value") or match is None:
        return ""
    info = msgspec.inspect.type_info(model)
    assert isinstance(info, msgspec.inspect.StructType)
    for field in info.fields:
        kind = field.type
        while isinstance(kind, msgspec.inspect.Metadata):  # Annotated[...]: the type inside
            kind = kind.type
        if field.encode_name == match[1] and isinstance(kind, msgspec.inspect.LiteralType):
            return f"; {field.encode_name} is one of {', '.join(map(str, kind.values))}"
    return ""


def resolve(context: Context, _: None) -> Any:
    body = read_json(tidy.ResolveBody, '{"groups": [{"keep": PATH, "others": [PATH]}], "action": ...}')
    groups = [Group(g.keep, list(g.others)) for g in body.groups]
    return context.service.resolve_duplicates(groups, body.action, body.to, body.dry_run)


def undo(context: Context, _: None) -> Any:
    return context.service.undo_resolution(read_json(tidy.UndoBody, '{"undo": ID}').undo)


def resolutions(context: Context, _: None) -> Any:
    return context.service.resolutions()


ROUTES = (
    Route(
        "POST",
        "/duplicates/resolve",
        "Trash, move or link the duplicates of each group's keeper; undoable",
        resolve,
        (Answer(200, "what was done (or would be, dry_run), file by file", tidy.Resolved),),
        (400,),
        raises=(errors.Invalid, errors.Refused),
        description="Every path must lie inside the watched folders or allowed roots (403 naming it; nothing "
        "done). Each file is checked first and skipped with its reason when it is not the content grouped "
        "(its bytes hash now to another value than the catalogue's), its keeper is gone or changed, it is "
        "no duplicate of its keeper, it is a keeper in the request, or (link) it has other bytes or another "
        "file system, or (move) its target exists. Each action is journaled in the catalogue before it is "
        "done; a crash leaves every file done or untouched. Trashed and moved files leave the index at once.",
        body=Body(json=tidy.ResolveBody),
    ),
    Route(
        "POST",
        "/duplicates/undo",
        "Put a resolution's files back and index them again",
        undo,
        (Answer(200, "what was put back, file by file", tidy.Undone),),
        (400,),
        raises=(errors.NotFound, errors.Conflict),
        description="404: no such resolution; 409: nothing of it is left to undo. A file whose path holds a "
        "file again stays where it is (skipped, the reason says so) and the resolution is 'partly undone': "
        "the same request later tries only the files still at their target. A link becomes an independent "
        "copy with its old mode and mtime.",
        body=Body(json=tidy.UndoBody),
    ),
    Route(
        "GET",
        "/duplicates/resolutions",
        "The latest resolutions (at most 50), newest first, with their state",
        resolutions,
        (Answer(200, "the resolutions", tidy.Resolutions),),
    ),
)
