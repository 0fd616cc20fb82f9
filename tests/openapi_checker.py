"""Validates real answers against the schema /openapi.json documents for them (shared by the API tests)."""

from __future__ import annotations

from typing import Any

import jsonschema

from imgsearchd.api.spec import spec


class OpenApiChecker:
    """Validates real responses against the schema /openapi.json documents for them."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = dict(spec())  # read freely: the tests index deep into it
        self.seen: set[tuple[str, str, str]] = set()

    def check(self, method: str, route: str, status: int, body) -> None:
        operation = self.document["paths"][route][method.lower()]
        assert str(status) in operation["responses"], f"{method} {route} answered undocumented {status}"
        schema = operation["responses"][str(status)]["content"]["application/json"]["schema"]
        resolver_doc = {**schema, "components": self.document["components"]}
        jsonschema.validate(body, resolver_doc)
        self.seen.add((method.upper(), route, str(status)))
