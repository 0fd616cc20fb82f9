"""What each route accepts: query parameters, the multipart form and the JSON body.

Every field says what it is (``description``, in /openapi.json) and its bounds (checked by
``params`` when a request is parsed, and shown in the spec). ``extra`` holds what the parser
needs beyond the type: ``what``, the words of the error a bad value gets (clients and tests
read them); ``source``, how a query value is decoded (``path``: the bytes of a file name, as
the file system has them; ``raw``: as sent; else text, UTF-8); ``blank``: an empty value is
taken as absent.

Query strings ignore a parameter they do not know (as every web server does); the JSON
body refuses one (``forbid_unknown_fields``), so a typo is not silently dropped.
"""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import UNSET, Meta, UnsetType

from ...search.combined import MAX_PARTS
from ...search.match_levels import LEVELS
from .. import bounds
from .answers import MatchLevel

# -- fields shared by several routes ----------------------------------------------------

_ABSENT_IF_BLANK = {"blank": "absent"}
_PATH = {"source": "path"}
_LIMIT_WHAT = f"an integer from 1 to {bounds.MAX_LIMIT}"

Limit = Annotated[
    int,
    Meta(ge=1, le=bounds.MAX_LIMIT, description="how many results", extra={"what": _LIMIT_WHAT, **_ABSENT_IF_BLANK}),
]
MaxDistance = Annotated[
    float,
    Meta(
        ge=0,
        le=bounds.MAX_DISTANCE,
        description="drop results further than this",
        extra={"what": f"a number from 0 to {bounds.MAX_DISTANCE:g}", **_ABSENT_IF_BLANK},
    ),
]
Extractor = Annotated[
    str, Meta(description="which running extractor answers (default: the first)", extra=_ABSENT_IF_BLANK)
]
Folder = Annotated[
    str,
    Meta(
        description="only files at or below this absolute folder (inside the allowed roots; 404 when the "
        "catalogue has no indexed image there)",
        extra=_PATH,
    ),
]
_BOUND = "an ISO 8601 year, month, day or time (no offset: the daemon's local time)"
TakenAfter = Annotated[
    str,
    Meta(
        description=f"only photos taken at or after this: {_BOUND}, from its first moment",
        examples=["2023-07"],
        extra=_PATH,
    ),
]
TakenBefore = Annotated[
    str,
    Meta(
        description=f"only photos taken before the end of this: {_BOUND} (2023-07 takes all of July)",
        examples=["2024"],
        extra=_PATH,
    ),
]
Text = Annotated[str, Meta(description="text to match (extractors with a text encoder)")]
ContentHash = Annotated[
    str,
    Meta(
        pattern="^[0-9a-fA-F]{32}$",
        description="search by the picture with this content hash (a result's hash, or an upload search's "
        "query.hash: kept for the last 2000 uploads); 404 when none is known",
        extra={"what": "32 hexadecimal digits (a result's or an upload's content hash)", **_ABSENT_IF_BLANK},
    ),
]
Offset = Annotated[
    int,
    Meta(
        ge=0,
        le=bounds.MAX_LIMIT - 1,
        description=f"skip this many of the best results: the next page of the same ranking (a page "
        f"ends at the {bounds.MAX_LIMIT}th result: offset + limit past it gives fewer)",
        extra={"what": f"an integer from 0 to {bounds.MAX_LIMIT - 1}", **_ABSENT_IF_BLANK},
    ),
]


MinMatch = Annotated[
    MatchLevel,
    Meta(
        description="keep only results of this match level or stronger (same > similar > related > weak); "
        "fewer than limit may come back",
        extra={"what": f"one of {', '.join(LEVELS)}", **_ABSENT_IF_BLANK},
    ),
]


# ``image``: a path, decoded as the file system names it; empty is missing
_IMAGE = {**_PATH, **_ABSENT_IF_BLANK}
ImagePath = Annotated[str, Meta(description="absolute path of a file or folder", extra=_IMAGE)]
IndexedImage = Annotated[
    str, Meta(description="absolute path of an indexed file, as search results name it", extra=_IMAGE)
]

# -- query parameters, route by route ---------------------------------------------------


class PathQuery(msgspec.Struct, kw_only=True):
    """``GET /add`` and ``GET /remove``: the file or folder."""

    image: ImagePath


class FileQuery(msgspec.Struct, kw_only=True):
    """``GET /original``: an indexed file."""

    image: IndexedImage


class ThumbnailQuery(msgspec.Struct, kw_only=True):
    """``GET /thumbnail``: an indexed file, and the content hash that pins the answer."""

    image: IndexedImage
    v: Annotated[
        str | None,
        Meta(
            description="the file's content hash (a result's hash): the answer may be kept a year",
            extra={"source": "raw"},
        ),
    ] = None


class SearchQuery(msgspec.Struct, kw_only=True):
    """``GET /search``: an indexed (or any readable) image by its path, or a text."""

    image: Annotated[str | None, Meta(description="absolute path of an image (or give text)", extra=_PATH)] = None
    text: Text | None = None
    hash: ContentHash | None = None
    limit: Limit = bounds.DEFAULT_LIMIT
    offset: Offset = 0
    extractor: Extractor | None = None
    max_distance: MaxDistance | None = None
    folder: Folder | None = None
    taken_after: TakenAfter | None = None
    taken_before: TakenBefore | None = None
    min_match: MinMatch | None = None


class UploadQuery(msgspec.Struct, kw_only=True):
    """``POST /search``: the query string beside the body (a body field of the same name wins)."""

    limit: Limit = bounds.DEFAULT_LIMIT
    offset: Offset = 0
    extractor: Extractor | None = None
    max_distance: MaxDistance | None = None
    folder: Folder | None = None
    taken_after: TakenAfter | None = None
    taken_before: TakenBefore | None = None
    min_match: MinMatch | None = None


class DuplicatesQuery(msgspec.Struct, kw_only=True):
    """``GET /duplicates``: which groups, and which page of them."""

    extractor: Extractor | None = None
    threshold: (
        Annotated[
            float,
            Meta(
                gt=0,
                le=1,
                description="cosine from which two pictures are similar shots (default: the extractor's "
                "similar_threshold); copies are decided by duplicate_threshold and the framing check",
                extra={"what": "a cosine above 0 and at most 1", **_ABSENT_IF_BLANK},
            ),
        ]
        | None
    ) = None
    kind: Annotated[
        bounds.DuplicateKind,
        Meta(description="which tier: identical (the same bytes), copies (one picture edited), similar (shots)"),
    ] = "all"
    folder: Annotated[
        str | None, Meta(description="only groups with a file in this folder (absolute)", extra=_PATH)
    ] = None
    keep_in: Annotated[
        str | None,
        Meta(
            description="a folder (absolute) whose files each group keeps, before the [duplicates] keep_rules",
            extra=_PATH,
        ),
    ] = None
    offset: Annotated[
        int,
        Meta(ge=0, le=bounds.MAX_OFFSET, description="groups to skip", extra={"what": "an integer of 0 or more"}),
    ] = 0
    limit: Annotated[
        int,
        Meta(
            ge=1,
            le=bounds.MAX_LIMIT,
            description="groups per page",
            extra={"what": _LIMIT_WHAT, **_ABSENT_IF_BLANK},
        ),
    ] = bounds.DEFAULT_GROUPS
    sort: Annotated[
        bounds.DuplicateSort,
        Meta(
            description="similarity: biggest groups first, centre first; taken: members oldest first, groups "
            "by their oldest photo"
        ),
    ] = "similarity"


class RebuildQuery(msgspec.Struct, kw_only=True):
    """``POST /rebuild``: one extractor, or all."""

    extractor: Extractor | None = None


class FolderQuery(msgspec.Struct, kw_only=True):
    """``DELETE /folders``: the watched folder to stop watching."""

    folder: Annotated[str, Meta(description="absolute path of a folder added with POST /folders", extra=_IMAGE)]


class BrowseQuery(msgspec.Struct, kw_only=True):
    """``GET /folders/browse``: the folder whose sub-folders to list."""

    path: Annotated[
        str | None,
        Meta(
            description="absolute path of a folder inside the allowed roots (default: the allowed roots, or "
            "the daemon user's home folder when none are set)",
            extra=_IMAGE,
        ),
    ] = None


# -- bodies -----------------------------------------------------------------------------


class FolderBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /folders``: the folder to watch from now on. A key not listed here is refused (400)."""

    folder: Annotated[
        str,
        Meta(
            description="absolute path of a folder inside the allowed roots; a name that is not UTF-8 as "
            "\\udcXX escapes",
            examples=["/home/me/Pictures"],
        ),
    ]


Binary = Annotated[str, Meta(extra_json_schema={"format": "binary"})]


class QueryPart(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One part of a combined query: exactly one of image, image_base64 or text, and a weight
    (default 1; negative moves results away from the part)."""

    image: Annotated[str, Meta(description="absolute path, as for GET /search?image=")] | UnsetType = UNSET
    image_base64: Annotated[str, Meta(description="an uploaded image (or a data: URL)")] | UnsetType = UNSET
    text: Annotated[str, Meta(description="needs an extractor with a text encoder (clip)")] | UnsetType = UNSET
    weight: Annotated[float, Meta(description="any finite number")] = 1.0


QUERY_PART_RULE = {"oneOf": [{"required": ["image"]}, {"required": ["image_base64"]}, {"required": ["text"]}]}


class SearchBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /search`` as JSON: an image in base64, a text, or a combined ``query``; a field
    of the query string's name wins over it. A key not listed here is refused (400)."""

    image_base64: Annotated[str | None, Meta(description="the image, base64 (or a data: URL)")] | UnsetType = UNSET
    hash: ContentHash | UnsetType | None = UNSET
    limit: Limit | UnsetType | None = UNSET
    offset: Offset | UnsetType | None = UNSET
    max_distance: MaxDistance | UnsetType | None = UNSET
    extractor: Extractor | UnsetType | None = UNSET
    text: Text | UnsetType | None = UNSET
    folder: Folder | UnsetType | None = UNSET
    taken_after: TakenAfter | UnsetType | None = UNSET
    taken_before: TakenBefore | UnsetType | None = UNSET
    min_match: MinMatch | UnsetType | None = UNSET
    query: (
        Annotated[
            list[Annotated[QueryPart, Meta(extra_json_schema=QUERY_PART_RULE)]],
            Meta(
                min_length=1,
                max_length=MAX_PARTS,
                description="a combined query: the sum of weight x unit vector of each part, normalised",
            ),
        ]
        | UnsetType
        | None
    ) = UNSET


class SearchForm(msgspec.Struct, kw_only=True):
    """``POST /search`` as ``multipart/form-data``: the image as a file part, and text fields
    (a part the server does not know is ignored, as browsers send what a form holds)."""

    image: Annotated[Binary, Meta(description="the image: a file part (with a filename)")]
    limit: Limit | UnsetType = UNSET
    offset: Offset | UnsetType = UNSET
    extractor: Extractor | UnsetType = UNSET
    max_distance: MaxDistance | UnsetType = UNSET
    text: Text | UnsetType = UNSET
    folder: Folder | UnsetType = UNSET
    taken_after: TakenAfter | UnsetType = UNSET
    taken_before: TakenBefore | UnsetType = UNSET
    min_match: MinMatch | UnsetType = UNSET


FORM_FIELDS = tuple(name for name in SearchForm.__struct_fields__ if name != "image")
