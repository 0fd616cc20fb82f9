"""The ``taken_after`` / ``taken_before`` filters: ISO 8601 dates and times as unix seconds.

A bound may be a year (``2023``), a month (``2023-07``), a day (``2023-07-14``) or a time
(``2023-07-14T18:30``, ``2023-07-14T18:30:05+02:00``, ``...Z``). A bound without an offset
is read in the daemon's local time zone, as capture times without one are.

A bound names a period, and the filter takes all of it: ``taken_after=2023-07`` starts at
the first moment of July, ``taken_before=2023-07`` ends at the last (so both at ``2023``
give the whole year). ``taken_after`` is inclusive, ``taken_before`` exclusive of the
moment after its period.
"""

from __future__ import annotations

import re
from datetime import datetime

_YEAR = re.compile(r"^(\d{4})$")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_DAY = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")

FORMS = "a year (2023), a month (2023-07), a day (2023-07-14) or a time (2023-07-14T18:30:05+02:00)"


class BadTimeBound(ValueError):
    """A ``taken_after`` / ``taken_before`` value that is not an ISO 8601 date or time."""


def parse_bound(raw: str, name: str, *, end: bool) -> float:
    """``raw`` as unix seconds: the start of its period, or with ``end`` the moment after it."""
    text = raw.strip()
    try:
        if match := _YEAR.match(text):
            year = int(match[1])
            start, after = datetime(year, 1, 1), datetime(year + 1, 1, 1)
        elif match := _MONTH.match(text):
            year, month = int(match[1]), int(match[2])
            start = datetime(year, month, 1)
            after = datetime(year + month // 12, month % 12 + 1, 1)
        elif _DAY.match(text):
            start = datetime.fromisoformat(text)
            after = datetime.fromordinal(start.toordinal() + 1)
        else:
            moment = datetime.fromisoformat(text)
            return (moment if moment.tzinfo else moment.astimezone()).timestamp()
    except (ValueError, OverflowError):
        raise BadTimeBound(f"{name}={raw!r} is not a date or time: give {FORMS}") from None
    return (after if end else start).astimezone().timestamp()


def parse_range(after: str | None, before: str | None) -> tuple[float | None, float | None]:
    """Both bounds (None where not given); ``BadTimeBound`` when one is malformed or they hold no time."""
    start = parse_bound(after, "taken_after", end=False) if after is not None else None
    stop = parse_bound(before, "taken_before", end=True) if before is not None else None
    if start is not None and stop is not None and start >= stop:
        raise BadTimeBound(f"taken_after={after!r} is not before taken_before={before!r}: no time lies between")
    return start, stop
