"""Option values checked by argparse: a bad one is a usage error (exit 2, argparse's message)
before anything is sent or loaded, not a 400 from the daemon afterwards."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

# The match levels, strongest first: ``search.match_levels.LEVELS``, named here so that every
# command's start does not import numpy for them (tests/cli/test_cli_levels.py keeps the two equal).
MATCH_LEVELS: tuple[str, ...] = ("same", "similar", "related", "weak")


def int_in(low: int, high: int | None = None) -> Callable[[str], int]:
    """A whole number from ``low`` to ``high`` (no upper bound when None)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{value} is not {_range(low, high, True, True)}")
        return value

    parse.__name__ = "number"  # argparse names the type in its own messages
    return parse


def float_in(low: float, high: float | None = None, *, above: bool = False) -> Callable[[str], float]:
    """A finite number from ``low`` (or above it, with ``above``) to ``high``."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        low_ok = value > low if above else value >= low
        if not math.isfinite(value) or not low_ok or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"{text} is not {_range(low, high, not above, True)}")
        return value

    parse.__name__ = "number"
    return parse


def _range(low: float, high: float | None, low_in: bool, high_in: bool) -> str:
    if high is None:
        return f"{'at least' if low_in else 'above'} {low}"
    return f"from {low} to {high}" if low_in else f"above {low} and at most {high}"
