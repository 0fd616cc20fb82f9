"""The JSON value type: what a JSON document (an OpenAPI object, a JSON Schema) may hold.

Arrays and objects are read-only views (``Sequence``, ``Mapping``, covariant), so that a
``list[dict[str, str]]`` or a ``dict[str, Schema]`` is a JSON value as it stands; a ``str``
is also a ``Sequence``, which is harmless here (it is a JSON value either way).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TypeAlias

__all__ = ["JsonObject", "JsonValue"]

JsonValue: TypeAlias = str | int | float | bool | Sequence["JsonValue"] | Mapping[str, "JsonValue"] | None
JsonObject: TypeAlias = dict[str, JsonValue]  # a JSON object being built (its own keys may change)
