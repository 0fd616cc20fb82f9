"""Wall-clock times as the API and the snapshot metadata write them: ISO 8601, UTC, seconds."""

from __future__ import annotations

from datetime import UTC, datetime


def iso_utc(ts: float) -> str:
    """``ts`` (seconds since the epoch) as ``2026-11-26T14:07:00+00:00``."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def parse_iso(text: str) -> float:
    """The inverse of ``iso_utc``: seconds since the epoch; ValueError when malformed."""
    return datetime.fromisoformat(text).timestamp()
