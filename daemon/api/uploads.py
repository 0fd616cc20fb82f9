"""The image a ``POST /search`` sends: raw bytes, a multipart form, or JSON with base64.

Each form is read under the upload cap (``server.max_upload_mb``: the Content-Length is
checked before the body is read, the bytes after), and its other fields come back as the
request models say (``models.requests``: ``SearchForm``, ``SearchBody``).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

import bottle

from . import params
from .errors import ApiError
from .models.requests import FORM_FIELDS, SearchBody

Fields = dict[str, Any]  # the body's fields beside the image: JSON values, or a form's text


def read_upload(cap: int) -> tuple[bytes | None, Fields]:
    """The posted image as bytes (raw, multipart or base64 JSON), and the body's other fields."""
    length = bottle.request.content_length
    if length > cap:
        raise ApiError(413, f"upload is {length} bytes, over the {cap}-byte cap (server.max_upload_mb)")
    content_type = (bottle.request.content_type or "").split(";")[0].strip().lower()
    if content_type == "application/json":
        return read_json(cap)
    if content_type == "multipart/form-data":
        return read_multipart(cap)
    return (capped(bottle.request.body.read(cap + 1), "upload", cap) or None), {}


def read_json(cap: int) -> tuple[bytes | None, Fields]:
    """A JSON object checked against ``SearchBody`` (``query`` is checked by ``search.combined``)."""
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
    # the parts of a combined query keep search.combined's own checks and words (the CLI's
    # --local shares them); the other keys are checked here, the first wrong one named
    fields = {k: v for k, v in body.items() if k != "query"}
    params.check_json(SearchBody, fields)  # the numbers' bounds: with the query string's, by routes_search
    if "query" in body:
        fields["query"] = body["query"]
    if encoded is None:
        return None, fields
    if not isinstance(encoded, str):
        raise ApiError(400, "image_base64 must be a string")
    if "," in encoded[:100] and encoded.startswith("data:"):
        encoded = encoded.split(",", 1)[1]  # a data: URL
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "image_base64 is not valid base64") from None
    return capped(data, "decoded image", cap), fields


def read_multipart(cap: int) -> tuple[bytes, Fields]:
    """The file part ``image`` and the form's text fields (``SearchForm``; others are ignored)."""
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
    fields = {k: forms.getunicode(k) for k in FORM_FIELDS if forms.get(k) is not None}
    return capped(upload.file.read(cap + 1), "upload", cap), fields


def capped(data: bytes, what: str, cap: int) -> bytes:
    """``data``, or 413 when it is over the cap."""
    if len(data) > cap:
        raise ApiError(413, f"{what} is over the {cap}-byte cap (server.max_upload_mb)")
    return data
