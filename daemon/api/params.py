"""Query parameters and form fields, parsed by the route's request model (``models.requests``).

A query string arrives as text (Bottle hands its values over as Latin-1-decoded bytes); each
field is read as its model says (``extra["source"]``: a path keeps a file name's bytes, text
is UTF-8). Field by field, in the model's order, a value is converted by its type
(``int``/``float`` as Python reads them), then checked by ``msgspec.convert`` against the
field's own annotated type (its bounds and choices), then by the route's own check of that
field if it has one (``/duplicates``' folder): the first bad field answers, as the hand-written
parsing before the models did. A bad value answers 400 with the words clients have always
read: ``limit must be an integer from 1 to 1000, not 0``. Each field is checked on its own,
so the error names the field without reading msgspec's messages.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, get_type_hints

import bottle
import msgspec
import msgspec.inspect as mi

from ..paths import from_query
from .errors import ApiError

S = TypeVar("S", bound=msgspec.Struct)
Check = Callable[[Any], Any]  # a route's own check of a field's value: the value to keep, or ApiError


@dataclasses.dataclass(frozen=True)
class Field:
    """What parsing needs to know of one field of a request model."""

    name: str
    kind: str  # "int", "float", "str", "choice" (a Literal), "bytes" (a file part), or "any"
    required: bool
    choices: tuple[Any, ...] = ()
    what: str = ""  # the words of the error: "an integer from 1 to 1000"
    source: str = "text"  # "text" (UTF-8), "path" (a file name's bytes) or "raw" (as sent)
    blank_is_absent: bool = False
    hint: Any = dataclasses.field(default=Any, compare=False)  # the annotated type its value is checked by


_KINDS: dict[type, str] = {mi.IntType: "int", mi.FloatType: "float", mi.StrType: "str", mi.LiteralType: "choice"}
_CONVERT: dict[str, Callable[[str], Any]] = {"int": int, "float": float}


def _field(info: mi.Field, hint: Any) -> Field:
    extra: dict[str, object] = {}
    kind, choices = "any", ()
    todo = [info.type]
    while todo:
        t = todo.pop()
        if isinstance(t, mi.Metadata):
            extra = {**(t.extra or {}), **extra}
            todo.append(t.type)
        elif isinstance(t, mi.UnionType):
            todo.extend(t.types)
        elif type(t) in _KINDS:
            kind = _KINDS[type(t)]
            choices = getattr(t, "values", ())
    return Field(
        info.name,
        kind,
        info.required,
        tuple(choices),
        str(extra.get("what", "")),
        str(extra.get("source", "text")),
        extra.get("blank") == "absent",
        hint,
    )


@functools.cache
def fields(model: type[msgspec.Struct]) -> tuple[Field, ...]:
    """The fields of a request model, in its order (the order their errors are found in)."""
    info = mi.type_info(model)
    assert isinstance(info, mi.StructType)
    hints = get_type_hints(model, include_extras=True)
    return tuple(_field(f, hints[f.name]) for f in info.fields)


def read_query(model: type[S], checks: Mapping[str, Check] | None = None) -> S:
    """The request's query string as ``model``; 400 for a bad value."""
    query = bottle.request.query
    return parse(model, {f.name: _read(query, f) for f in fields(model)}, checks)


def _read(values: bottle.FormsDict, field: Field) -> str | None:
    if field.source == "raw":
        return values.get(field.name)
    if field.source == "path":
        native = values.get(field.name)
        return None if native is None else from_query(native)
    # not found, or bytes that are not UTF-8: absent (as Bottle's getunicode answers)
    return values.getunicode(field.name)


def parse(model: type[S], raw: Mapping[str, Any], checks: Mapping[str, Check] | None = None) -> S:
    """``model`` from text values (a query string's, a form's; None: absent): each field in
    turn converted, checked, then given to its check in ``checks`` (if any), so the first bad
    field is the one refused."""
    values: dict[str, object] = {}
    for field in fields(model):
        value = raw.get(field.name)
        if value is None or (value == "" and field.blank_is_absent):
            if field.required:
                raise missing(field.name)
            continue
        value = checked(field, value)
        check = (checks or {}).get(field.name)
        values[field.name] = value if check is None else check(value)
    return model(**values)


def checked(field: Field, value: Any) -> Any:
    """One field's value converted from text and checked by its type: 400 naming the field."""
    convert = _CONVERT.get(field.kind)
    if convert is not None:
        try:
            value = convert(str(value))
        except ValueError:
            raise ApiError(400, f"{field.name} must be {field.what}, not {value!r}") from None
    try:
        return msgspec.convert(value, field.hint)
    except msgspec.ValidationError:
        raise _refusal(field, value) from None


def missing(name: str) -> ApiError:
    """The 400 for a path parameter that is not there (or empty)."""
    return ApiError(400, f"missing parameter '{name}' (a file or folder path)")


def _refusal(field: Field, value: Any) -> ApiError:
    """The 400 for a value the field's type refuses, in the words of the field's kind."""
    if field.kind == "choice":  # the choices sorted, unless the field says them in its order (``what``)
        what = field.what or f"one of {', '.join(map(str, field.choices))}"
        return ApiError(400, f"{field.name} must be {what}, not {value!r}")
    if field.what:
        return ApiError(400, f"{field.name} must be {field.what}, not {value}")
    return ApiError(400, f"{field.name} must be {_JSON_TYPES.get(field.kind, 'valid')}, not {value!r}")


# -- JSON bodies ------------------------------------------------------------------------

_JSON_TYPES = {"int": "an integer", "float": "a number", "str": "a string", "choice": "a string", "any": "a list"}


def check_json(model: type[msgspec.Struct], body: Mapping[str, Any]) -> None:
    """Check a decoded JSON object's keys and JSON types against ``model``: the first key it
    does not know, or the first value of the wrong type, answers 400 naming it. A number out of
    bounds (or a string its pattern refuses) is left to ``parse``, which checks it with the query
    string's value it stands for."""
    known = {f.name: f for f in fields(model)}
    for key, value in body.items():
        field = known.get(key)
        if field is None:
            names = ", ".join(known)
            raise ApiError(400, f"unknown field {key!r} in the JSON body; known: {names}")
        try:
            msgspec.convert(value, field.hint)
        except msgspec.ValidationError:
            if field.kind in _CONVERT and _is_number(value, field.kind):
                continue  # the right type, out of bounds
            if field.kind in ("str", "choice") and isinstance(value, str):
                continue  # a string its pattern or choices refuse (a hash, a level): parse names what it must be
            raise ApiError(400, f"{key} must be {_JSON_TYPES[field.kind]}, not {type(value).__name__}") from None


def _is_number(value: Any, kind: str) -> bool:
    """Whether a JSON value is of a number field's type (booleans are not numbers here)."""
    allowed = (int,) if kind == "int" else (int, float)
    return isinstance(value, allowed) and not isinstance(value, bool)
