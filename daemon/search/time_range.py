"""The ``taken_after`` / ``taken_before`` filters: ISO 8601 dates and times as unix seconds.

A bound may be a year (``2023``), a month (``2023-07``), a day (``2023-07-14``) or a time
(``2023-07-14T18:30``, ``2023-07-14T18:30:05+02:00``, ``...Z``). A bound without an offset
is read in the daemon's local time zone, as capture times without one are.

A bound names a period, and the filter takes all of it: ``taken_after=2023-07`` starts at
the first moment of July, ``taken_before=2023-07`` ends at the last (so both at ``2023``
give the whole year). A time names its last unit: ``2023-07-14T18`` the hour,
``...T18:30`` the minute, ``...T18:30:05`` the second, one with a fraction just the moment. ``taken_after`` is inclusive, ``taken_before`` exclusive of the
moment after its period.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta

_YEAR = re.compile(r"^(\d{4})$")
_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
# A time's fields (after the date and a one-character separator, as ``fromisoformat`` takes
# them), then an optional offset: which field is last says how long the period it names is.
_TIME = re.compile(r"^(?P<hour>\d{2})(:?(?P<minute>\d{2})(:?(?P<second>\d{2})(?P<fraction>[.,]\d+)?)?)?(Z|[+-].*)?$")

FORMS = "a year (2023), a month (2023-07), a day (2023-07-14) or a time (2023-07-14T18:30:05+02:00)"


class BadTimeBound(ValueError):
    """A ``taken_after`` / ``taken_before`` value that is not an ISO 8601 date or time."""


def parse_bound(raw: str, name: str, *, end: bool) -> float:
    """``raw`` as unix seconds: the start of its period, or with ``end`` the moment after it."""
    try:
        return _bound(raw.strip(), end).timestamp()
    except (ValueError, OverflowError):  # also a year out of range in the local zone ("0001")
        raise BadTimeBound(f"{name}={raw!r} is not a date or time: give {FORMS}") from None


def _bound(text: str, end: bool) -> datetime:
    """The start of the period ``text`` names, or with ``end`` the moment after it (aware)."""
    if match := _YEAR.match(text):
        year = int(match[1]) + (1 if end else 0)
        return datetime(year, 1, 1).astimezone()
    if match := _MONTH.match(text):
        year, month = int(match[1]), int(match[2])
        start = datetime(year, month, 1)  # checks the month
        return datetime(year + month // 12, month % 12 + 1, 1).astimezone() if end else start.astimezone()
    try:
        day = date.fromisoformat(text)  # every ISO day: 2023-07-14, 20230714, 2023-W28-5
    except ValueError:
        pass
    else:
        return datetime.fromordinal(day.toordinal() + (1 if end else 0)).astimezone()
    moment = datetime.fromisoformat(text)
    moment = moment if moment.tzinfo else moment.astimezone()
    return moment + timedelta(seconds=_time_step(text)) if end else moment


def _time_step(text: str) -> int:
    """Seconds in the period a time names: its last unit (an hour, a minute, a second), 0 with a fraction."""
    for length in (10, 8):  # 2023-07-14 or 2023-W28-5; 20230714 or 2023W285
        try:
            date.fromisoformat(text[:length])
        except ValueError:
            continue
        match = _TIME.match(text[length + 1 :])
        break
    else:
        return 0
    if match is None or match["fraction"]:
        return 0
    return 1 if match["second"] else 60 if match["minute"] else 3600


def parse_range(after: str | None, before: str | None) -> tuple[float | None, float | None]:
    """Both bounds (None where not given); ``BadTimeBound`` when one is malformed or they hold no time."""
    start = parse_bound(after, "taken_after", end=False) if after is not None else None
    stop = parse_bound(before, "taken_before", end=True) if before is not None else None
    if start is not None and stop is not None and start >= stop:
        raise BadTimeBound(f"taken_after={after!r} is not before taken_before={before!r}: no time lies between")
    return start, stop
