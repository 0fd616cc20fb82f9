"""Which model serves each extractor, which comes next, the settings that built each, and their index folders.

A row per (extractor, state): ``serving`` is the model the index and searches use; ``next``
the one a model change is embedding the library with (``service.model_change``). ``settings``
is the JSON of the model's ``[extractors.NAME]`` section, so the old model can be built
again at start (None for a catalogue from before schema version 6, which never stored it).
``folder`` is the index's folder under the data folder.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

SERVING = "serving"
NEXT = "next"


@dataclass(frozen=True)
class ModelRow:
    """One model of one extractor as the catalogue records it."""

    extractor: str
    state: str  # SERVING or NEXT
    model_id: str
    settings: str | None  # JSON of the [extractors.NAME] section; None: not known (schema < 6)
    folder: str  # the index's folder, relative to the data folder
    since: float


def read(conn: sqlite3.Connection, extractor: str) -> dict[str, ModelRow]:
    """state -> row of one extractor (empty for an extractor never recorded)."""
    rows = conn.execute(
        "SELECT extractor, state, model_id, settings, folder, since FROM models WHERE extractor=?", (extractor,)
    )
    return {r[1]: ModelRow(*r) for r in rows}


def put(conn: sqlite3.Connection, row: ModelRow) -> None:
    conn.execute(
        "INSERT OR REPLACE INTO models (extractor, state, model_id, settings, folder, since) VALUES (?, ?, ?, ?, ?, ?)",
        (row.extractor, row.state, row.model_id, row.settings, row.folder, row.since),
    )


def drop_next(conn: sqlite3.Connection, extractor: str) -> None:
    conn.execute("DELETE FROM models WHERE extractor=? AND state=?", (extractor, NEXT))


def promote_next(conn: sqlite3.Connection, extractor: str, since: float) -> None:
    """The next model serves from now on: its row becomes the serving one (the old row goes); nothing
    changes when no model comes next."""
    if NEXT not in read(conn, extractor):
        return
    conn.execute("DELETE FROM models WHERE extractor=? AND state=?", (extractor, SERVING))
    conn.execute("UPDATE models SET state=?, since=? WHERE extractor=? AND state=?", (SERVING, since, extractor, NEXT))


def folder_of(conn: sqlite3.Connection, extractor: str, model_id: str) -> str | None:
    """The index folder recorded for this extractor's model, or None when it is not recorded."""
    row = conn.execute("SELECT folder FROM models WHERE extractor=? AND model_id=?", (extractor, model_id)).fetchone()
    return str(row[0]) if row else None


def vector_models(conn: sqlite3.Connection, extractor: str) -> dict[str, int]:
    """model id -> how many vectors of this extractor it made."""
    rows = conn.execute("SELECT model_id, count(*) FROM vectors WHERE extractor=? GROUP BY model_id", (extractor,))
    return {r[0]: int(r[1]) for r in rows}


def rename(conn: sqlite3.Connection, extractor: str, old: str, new: str, settings: str) -> int:
    """Give a model a new id (its vectors, cached query vectors and row; the same weights under the
    id a newer fingerprint gives them). Returns how many vectors it renamed."""
    renamed = conn.execute(
        "UPDATE OR IGNORE vectors SET model_id=? WHERE extractor=? AND model_id=?", (new, extractor, old)
    ).rowcount
    conn.execute(
        "UPDATE OR IGNORE query_vectors SET model_id=? WHERE extractor=? AND model_id=?", (new, extractor, old)
    )
    conn.execute(
        "UPDATE models SET model_id=?, settings=? WHERE extractor=? AND model_id=?", (new, settings, extractor, old)
    )
    return int(renamed)
