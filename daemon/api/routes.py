"""The route table: every route the API serves, by resource. ``app`` registers it, ``spec``
describes it; a route outside it is refused at start (``routing.check_documented``)."""

from __future__ import annotations

from . import routes_files, routes_folders, routes_page, routes_search, routes_status, routes_tidy
from .routing import Route

TABLE: tuple[Route, ...] = (
    *routes_files.ROUTES,
    *routes_folders.ROUTES,
    *routes_search.ROUTES,
    *routes_tidy.ROUTES,
    *routes_status.ROUTES,
    *routes_page.ROUTES,
)
