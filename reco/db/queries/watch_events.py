"""Storing watch events: two round trips per batch, unique by ``event_id`` within the window.

``watch_events`` is partitioned by the day it was received (sql/0006): an id
is remembered for as long as its day's partition is kept
(``RECO_WATCH_EVENT_RETENTION``, reco/maintenance/). The insert skips the
ids stored on any day (one ``= ANY`` lookup on the primary key, whose first
column is ``event_id``) and, for a transaction storing the same id the same
day, the primary key's ON CONFLICT; ``watch_events_day()`` orders
transactions around the day change so that neither misses the other.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import asyncpg

from reco.events import WatchEvent

_DAY = "SELECT watch_events_day()"

_INSERT_NEW = """
WITH seen AS (SELECT event_id FROM watch_events WHERE event_id = ANY($1::text[]))
INSERT INTO watch_events
    (event_id, user_id, item_id, occurred_at, watched_seconds, completed, received_day)
SELECT u.*, $7::date FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[],
                                 $5::float8[], $6::boolean[])
    AS u(event_id, user_id, item_id, occurred_at, watched_seconds, completed)
WHERE u.event_id NOT IN (SELECT event_id FROM seen)
ON CONFLICT (event_id, received_day) DO NOTHING
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
    # its own statement: the insert's snapshot is taken after the day's barrier
    day = await conn.fetchval(_DAY)
    rows = await conn.fetch(
        _INSERT_NEW,
        [e.event_id for e in ordered], [e.user_id for e in ordered],
        [e.item_id for e in ordered], [e.occurred_at for e in ordered],
        [e.watched_seconds for e in ordered], [e.completed for e in ordered], day,
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
