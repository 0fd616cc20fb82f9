"""The state an index's queries read, and the references that retire a replaced base safely.

Queries hold a reference to the base they use (``using``); a state swapped in replaces the
old one at once, but the base it retires is unloaded (and its files deleted) only when its
last query has finished, so no thread ever touches an unloaded AnnoyIndex or HNSW graph.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from .parts import Base, State


class StateHolder:
    """One index's current ``State``, swapped whole; counts the queries using each base."""

    def __init__(self) -> None:
        self._state: State | None = None
        self._lock = threading.Lock()  # guards _state and every base's users/retired

    @property
    def state(self) -> State | None:
        """The current state (None before the index opens and after it closes)."""
        return self._state

    @contextlib.contextmanager
    def using(self) -> Iterator[State]:
        """The current state, its base held until the block ends; RuntimeError when there is none."""
        with self._lock:
            state = self._state
            if state is None:
                raise RuntimeError("index is not open")
            state.base.users += 1
        try:
            yield state
        finally:
            with self._lock:
                base = state.base
                base.users -= 1
                drop = base.retired and base.users == 0
            if drop:
                _drop(base)

    def swap(self, state: State) -> None:
        """Make ``state`` current (the caller serialises updates); retire the base it replaces."""
        drop = None
        with self._lock:
            old, self._state = self._state, state
            if old is not None and old.base is not state.base:
                old.base.retired = True
                old.base.delete_files = True
                if old.base.users == 0:
                    drop = old.base
        if drop is not None:
            _drop(drop)

    def clear(self) -> None:
        """Drop the current state at close; its base is unloaded once no query uses it (files kept)."""
        with self._lock:
            state, self._state = self._state, None
            drop = None
            if state is not None:
                state.base.retired = True
                if state.base.users == 0:
                    drop = state.base
        if drop is not None:
            drop.close()


def _drop(base: Base) -> None:
    base.close()
    if base.delete_files:
        for path in base.files():
            path.unlink(missing_ok=True)
