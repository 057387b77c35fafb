"""Storing watch events: one round trip per batch, unique by ``event_id``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import asyncpg

from reco.events import WatchEvent

_INSERT_NEW = """
INSERT INTO watch_events (event_id, user_id, item_id, occurred_at, watched_seconds, completed)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[],
                     $5::float8[], $6::boolean[])
ON CONFLICT (event_id) DO NOTHING
RETURNING event_id
"""


async def insert_new(conn: asyncpg.Connection, events: Sequence[WatchEvent]) -> list[str]:
    """Insert ``events``, skipping ids already stored; return the ids that were new.

    Rows go in ``event_id`` order so that two transactions inserting
    overlapping batches take their row locks in the same order (no deadlock).
    """
    if not events:
        return []
    ordered = sorted(events, key=lambda e: e.event_id)
    rows = await conn.fetch(
        _INSERT_NEW,
        [e.event_id for e in ordered], [e.user_id for e in ordered],
        [e.item_id for e in ordered], [e.occurred_at for e in ordered],
        [e.watched_seconds for e in ordered], [e.completed for e in ordered],
    )  # fmt: skip
    return [row[0] for row in rows]


async def count(conn: asyncpg.Connection) -> int:
    """How many events are stored (tests and the benchmark)."""
    value: int = await conn.fetchval("SELECT count(*) FROM watch_events")
    return value


_STORED = """
SELECT event_id, user_id, item_id, occurred_at FROM watch_events WHERE event_id = ANY($1::text[])
"""


async def stored_watches(
    conn: asyncpg.Connection, event_ids: Sequence[str]
) -> dict[str, tuple[str, str, dt.datetime]]:
    """The stored (user, item, instant) of each of ``event_ids`` that is stored."""
    if not event_ids:
        return {}
    rows = await conn.fetch(_STORED, list(event_ids))
    return {r["event_id"]: (r["user_id"], r["item_id"], r["occurred_at"]) for r in rows}
