"""The API's bounds and choices: one home, read by the request models, the server and the CLI.

Kept apart from the models so the CLI reads them without importing the answer models or
the rooms their enums come from.
"""

from __future__ import annotations

from typing import Literal, get_args

DEFAULT_LIMIT = 10
MAX_LIMIT = 1000
MAX_DISTANCE = 2  # Euclidean distance between unit vectors: 0 same, 2 opposite
MAX_OFFSET = 2**62  # /duplicates: beyond any catalogue, within SQLite's and msgspec's integers
DEFAULT_GROUPS = 20  # /duplicates: groups per page
DuplicateKind = Literal["all", "identical", "copies", "similar"]  # the tiers (search/duplicate_join.py)
DuplicateSort = Literal["similarity", "taken"]
DUPLICATE_KINDS: tuple[str, ...] = get_args(DuplicateKind)
DUPLICATE_SORTS: tuple[str, ...] = get_args(DuplicateSort)
