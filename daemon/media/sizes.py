"""Byte sizes in words, one rule for every place that shows one: the CLI, the keeper's reasons
(``search.keeper``) and the page (``format.js`` ``fmtBytes``, the same rule in JavaScript)."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal


def human_size(size: int | float | None) -> str:
    """Bytes in units of 1024 with the page's rule, so both show the same text: bytes as they
    are, a larger unit with one decimal below 10 and none from 10 ("812 B", "3.4 KB", "103 KB",
    "1.2 GB"), rounded half up as JavaScript's ``toFixed`` rounds; None is "-"."""
    if size is None:
        return "-"
    value, unit = float(size), "B"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if value < 1024 or unit == "TB":
            break
        value /= 1024
    if unit == "B":
        return f"{size:g} B"
    places = Decimal("0.1") if value < 10 else Decimal("1")
    return f"{Decimal(value).quantize(places, rounding=ROUND_HALF_UP)} {unit}"
