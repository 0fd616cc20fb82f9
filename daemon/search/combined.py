"""Combined queries: weighted image and text parts made into one query vector.

A query is a list of parts, each an ``image`` (a path), an ``image_base64`` (an upload) or a
``text`` (extractors with a text encoder), with a ``weight`` (any finite number, default 1;
negative pushes results away from the part). The query vector is

    q = sum_i weight_i * u_i / |sum_i weight_i * u_i|

where ``u_i`` is part i's unit vector from the one extractor that answers: the same rule
as rclip's ``a.jpg + "at night" - people``. Parts that cancel out (``q`` shorter than
``CANCELLED`` times the sum of the absolute weights, e.g. the same text with +1 and -1)
are refused, as is anything malformed, with the domain's error (``errors``: ``Invalid``,
``TooLarge``, ``BadImage``) that the HTTP API maps to its status.
Shared by the daemon and ``imgsearchd search --local``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import math
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import BadImage, Invalid, TooLarge
from ..extractors import Extractor
from ..media.failures import ImageError
from ..media.limits import ImageLimits
from ..store.catalog import Catalog
from . import query

MAX_PARTS = 16  # parts of one query: more is a mistake, and each may run the model
KINDS = ("image", "image_base64", "text")
# |q| below this share of sum |weight|: the parts cancel (float32 rounding of exact
# cancellation stays under 1e-6; two different real pictures are far above 1e-3).
CANCELLED = 1e-4


@dataclass(frozen=True)
class Part:
    """One part of a combined query: an image path, uploaded image bytes, or a text."""

    kind: str
    value: str | bytes
    weight: float = 1.0


def parse_weight(raw: Any, where: str) -> float:
    """A part's weight: a finite JSON number (booleans are not numbers here)."""
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise Invalid(f"{where}: weight must be a number, not {type(raw).__name__}")
    try:
        weight = float(raw)
    except OverflowError:  # an integer literal past the float range (json gives ints exactly)
        weight = math.inf
    if not math.isfinite(weight):
        raise Invalid(f"{where}: weight must be a finite number, not {raw!r}")
    return weight


def decode_base64(encoded: str, where: str) -> bytes:
    """Base64 (or a ``data:`` URL) to bytes; ``Invalid`` when it is not valid."""
    if encoded.startswith("data:") and "," in encoded[:100]:
        encoded = encoded.split(",", 1)[1]
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise Invalid(f"{where}: image_base64 is not valid base64") from None


def parse_parts(raw: Any, max_bytes: int, check_path: Callable[[str], str]) -> list[Part]:
    """The JSON ``query`` list as parts; ``Invalid`` (shape), ``Refused`` (a path outside the roots), ``TooLarge``.

    ``check_path`` normalises an image path and refuses one outside the allowed roots;
    ``max_bytes`` caps the uploads of all parts together.
    """
    if not isinstance(raw, list) or not raw:
        raise Invalid('query must be a non-empty list of parts such as {"image": PATH} or {"text": ...}')
    if len(raw) > MAX_PARTS:
        raise Invalid(f"query has {len(raw)} parts; at most {MAX_PARTS}")
    parts = []
    uploaded = 0
    for n, item in enumerate(raw):
        where = f"query[{n}]"
        if not isinstance(item, dict):
            raise Invalid(f"{where} must be an object, not {type(item).__name__}")
        unknown = sorted(set(item) - {*KINDS, "weight"})
        if unknown:
            raise Invalid(f"{where}: unknown key {unknown[0]!r}; a part has one of {', '.join(KINDS)} and weight")
        kinds = [k for k in KINDS if k in item]
        if len(kinds) != 1:
            raise Invalid(f"{where} must have exactly one of {', '.join(KINDS)}")
        kind = kinds[0]
        value = item[kind]
        if not isinstance(value, str):
            raise Invalid(f"{where}: {kind} must be a string, not {type(value).__name__}")
        weight = parse_weight(item["weight"], where) if "weight" in item else 1.0
        if kind == "text" and not value.strip():
            raise Invalid(f"{where}: text is empty")
        if kind == "image":
            parts.append(Part(kind, check_path(value), weight))
        elif kind == "image_base64":
            data = decode_base64(value, where)
            uploaded += len(data)
            if uploaded > max_bytes:
                raise TooLarge(f"the query's images are over the {max_bytes}-byte cap (server.max_upload_mb)")
            parts.append(Part(kind, data, weight))
        else:
            parts.append(Part(kind, value, weight))
    return parts


def part_vectors(
    parts: Sequence[Part],
    extractor: Extractor,
    catalog: Catalog,
    limits: ImageLimits,
    roots: Sequence[str] | None = None,
    embedding: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
) -> np.ndarray:
    """Each part's vector (rows in the order of ``parts``); embeds only what is not stored.

    An indexed, unchanged image uses its stored vector. ``embedding`` wraps the model runs
    (the daemon's limit on concurrent slow work). Raises ``Invalid`` for a text part and an
    extractor without a text encoder, ``BadImage`` for an unusable image.
    """
    texts = [n for n, p in enumerate(parts) if p.kind == "text"]
    if texts and not extractor.supports_text:
        raise Invalid(f"a text part needs a text encoder; {extractor.text_refusal}")
    rows: dict[int, np.ndarray] = {}
    for n, part in enumerate(parts):
        if part.kind == "image":
            assert isinstance(part.value, str)
            try:
                stored = query.stored_vector_for_path(catalog, extractor, part.value)
            except ImageError as exc:
                raise BadImage.of(exc, part.value) from None
            if stored is not None:
                rows[n] = stored
    if len(rows) < len(parts):
        with embedding():
            if texts:
                encoded = extractor.encode_text([str(parts[n].value) for n in texts])
                rows.update(zip(texts, encoded))
            for n, part in enumerate(parts):
                if n in rows:
                    continue
                try:
                    if isinstance(part.value, bytes):
                        rows[n] = query.query_vector_for_bytes(extractor, part.value, limits)
                    else:
                        rows[n] = query.embed_path(extractor, part.value, limits, roots)
                except ImageError as exc:
                    raise BadImage.of(exc, part.value if isinstance(part.value, str) else None) from None
    return np.stack([np.asarray(rows[n], dtype=np.float32).reshape(-1) for n in range(len(parts))])


def combine(vectors: np.ndarray, weights: Sequence[float]) -> np.ndarray:
    """The unit query vector: the weighted sum of the parts' unit vectors, normalised.

    ``Invalid`` when the weights cancel the parts out (or are all zero).
    """
    vectors = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if not np.all(np.isfinite(norms)) or np.any(norms == 0):
        raise Invalid("a part of the query has no usable vector")
    w = np.asarray(weights, dtype=np.float64)
    largest = float(np.abs(w).max()) if len(w) else 0.0
    if largest > 0:
        w = w / largest  # the same direction, and no overflow from weights near the float limit
    total = (w[:, None] * (vectors / norms)).sum(axis=0)
    length = float(np.linalg.norm(total))
    if length <= CANCELLED * float(np.abs(w).sum()) or length == 0.0:
        raise Invalid("the query's parts cancel each other out (the weighted sum is zero); change the weights")
    return (total / length).astype(np.float32)


def query_vector(
    parts: Sequence[Part],
    extractor: Extractor,
    catalog: Catalog,
    limits: ImageLimits,
    roots: Sequence[str] | None = None,
    embedding: Callable[[], AbstractContextManager[None]] = contextlib.nullcontext,
) -> np.ndarray:
    """The combined query's unit vector for ``extractor`` (see the module's docstring)."""
    vectors = part_vectors(parts, extractor, catalog, limits, roots, embedding)
    return combine(vectors, [p.weight for p in parts])
