"""What the route handlers are given: the service, and the app's metrics, logins and spec."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..service.facade import Service
    from .metrics import Metrics
    from .page import Sessions, Throttle


@dataclass(frozen=True)
class Context:
    """What the handlers use: the service, and the app's metrics and logins."""

    service: Service
    metrics: Metrics
    sessions: Sessions
    throttle: Throttle
    document: Callable[[], Mapping[str, Any]]  # /openapi.json (``spec.spec``, handed over: the spec reads the routes)
