"""``reco check-aggregates``: do the aggregates still match the events they were built from?

What an operator runs after an incident (docs/runbook.md), and what the chaos
suite runs after every fault. It reads ``watch_events`` and the three
incrementally maintained tables in one read-only snapshot (so a batch committing
meanwhile is either wholly in or wholly out), adds the pending co-occurrence
increments to ``item_cooccurrence`` as a fold would (it writes nothing), and
compares them with a recomputation (reco/engine/audit.py). Exit status 0 when
equal, 1 with a readable diff otherwise.

Exact or lower-bound mode (reco/engine/audit.py): lower bound when retention
may have dropped events, i.e. the database's first migration was applied
before the first day ``RECO_WATCH_EVENT_RETENTION`` keeps (maintenance drops
only days before that, and no row was received before the database existed).
This errs towards lower bound (a check that is weaker, never false); a
retention once set shorter than now would need lower bound and is not seen.
"""

from __future__ import annotations

import asyncpg

from reco.db.pool import connect
from reco.engine import audit, queries
from reco.engine.aggregates import HistoryRow, PopularityRow, pair_scale
from reco.events import WatchEvent
from reco.maintenance.queries import cutoff_day
from reco.settings import Settings

EXIT_DIFFERENT = 1
SHOWN = 50  # diff lines printed; the counts cover the rest

_EVENTS = "SELECT event_id, user_id, item_id, occurred_at FROM watch_events"
_HISTORY = (
    "SELECT user_id, item_id, first_watched_at, last_watched_at, watch_count FROM user_history"
)
_POPULARITY = "SELECT item_id, watch_count, user_count, log_score, last_at FROM item_popularity"
_FOLDED = "SELECT item_id, other_item_id, weight FROM item_cooccurrence"
_PENDING = "SELECT item_id, other_item_id, weight FROM item_cooccurrence_deltas"


async def read_events(conn: asyncpg.Connection, *, statement_timeout: float) -> list[WatchEvent]:
    rows = await conn.fetch(_EVENTS, timeout=statement_timeout)
    return [WatchEvent(r["event_id"], r["user_id"], r["item_id"], r["occurred_at"]) for r in rows]


async def read_stored(conn: asyncpg.Connection, *, statement_timeout: float) -> audit.Aggregates:
    """The three tables as they are, the pending increments added to the folded pairs."""
    history = {
        (r[0], r[1]): HistoryRow(r[0], r[1], r[2], r[3], r[4])
        for r in await conn.fetch(_HISTORY, timeout=statement_timeout)
    }
    popularity = {
        r[0]: PopularityRow(r[0], r[1], r[2], r[3], r[4])
        for r in await conn.fetch(_POPULARITY, timeout=statement_timeout)
    }
    folded = [(r[0], r[1], r[2]) for r in await conn.fetch(_FOLDED, timeout=statement_timeout)]
    pending = [(r[0], r[1], r[2]) for r in await conn.fetch(_PENDING, timeout=statement_timeout)]
    return audit.Aggregates(history, popularity, audit.stored_pairs(folded, pending))


async def may_have_dropped(conn: asyncpg.Connection, retention: float) -> bool:
    """Could retention have dropped watch events yet (see the module docstring)?"""
    row = await conn.fetchrow(
        "SELECT now() AS now, (min(applied_at) AT TIME ZONE 'UTC')::date AS born "
        "FROM schema_migrations"
    )
    assert row is not None
    return row["born"] is not None and row["born"] < cutoff_day(row["now"], retention)


async def check(
    conn: asyncpg.Connection,
    *,
    statement_timeout: float,
    weight_floor: float = 0.0,
    lower_bound: bool = False,
) -> tuple[audit.Diff, int]:
    """The diff between the stored aggregates and a recomputation, and the events read;
    ``weight_floor`` is the folder's (``RECO_COOCCURRENCE_WEIGHT_FLOOR``, 0: exact);
    ``lower_bound``: stored only has to cover the kept events (reco/engine/audit.py)."""
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        # A whole-table read can outlast the service's statement timeout: the fold's bound.
        await conn.execute(f"SET LOCAL statement_timeout = {int(statement_timeout * 1000)}")
        events = await read_events(conn, statement_timeout=statement_timeout)
        stored = await read_stored(conn, statement_timeout=statement_timeout)
        below = weight_floor * pair_scale(await queries.prune_instant(conn))
    expected = audit.recompute(events)
    if lower_bound:
        expected = audit.whole_users_pairs(events, expected, stored)
    return audit.compare(expected, stored, below, lower_bound), len(events)


async def check_command(settings: Settings) -> int:
    conn = await connect(settings.database, "reco-check-aggregates")
    try:
        lower = await may_have_dropped(conn, settings.maintenance.watch_event_retention)
        diff, events = await check(
            conn, statement_timeout=settings.folder.timeout,
            weight_floor=settings.folder.weight_floor, lower_bound=lower,
        )  # fmt: skip
    finally:
        await conn.close()
    for line in audit.summary(diff, events, SHOWN, lower):
        print(line)
    return 0 if diff.equal else EXIT_DIFFERENT
