"""Aggregate updates from newly stored watch events (called inside the consumer's transaction).

The consumer inserts events (unique by event id) and passes only the new
ones here, in the same transaction, so that a duplicate never counts twice.
Four statements per batch whatever its size: read the users' recent windows,
upsert history, upsert popularity (which also stamps ``changed_at`` on every
watched item, for the read-side caches), append the co-occurrence increments
to ``item_cooccurrence_deltas``. The increments reach ``item_cooccurrence``
when a folder folds them (reco/engine/folding.py), a fraction of a second
later: popular pairs are in nearly every batch, and adding to them here made
concurrent batches wait for each other's row locks.

Every transaction locks in the same order: history rows, then popularity
rows, each sorted. Each upsert sends one row per distinct key as unnest()
arrays, sorted by key (concurrent consumers then lock rows in one global
order: no deadlock cycles), and adds to the stored value under the row lock
(no lost updates).
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from reco.db.queries import watch_events
from reco.engine import aggregates
from reco.events import WatchEvent, new_in_order

_WINDOWS = """
SELECT u.user_id, h.item_id, h.last_watched_at
FROM unnest($1::text[]) AS u(user_id)
CROSS JOIN LATERAL (
    SELECT item_id, last_watched_at FROM user_history
    WHERE user_id = u.user_id
    ORDER BY last_watched_at DESC LIMIT $2
) AS h
"""

_HISTORY = """
INSERT INTO user_history AS h (user_id, item_id, first_watched_at, last_watched_at, watch_count)
SELECT * FROM unnest($1::text[], $2::text[], $3::timestamptz[], $4::timestamptz[], $5::int[])
ON CONFLICT (user_id, item_id) DO UPDATE SET
    first_watched_at = LEAST(h.first_watched_at, EXCLUDED.first_watched_at),
    last_watched_at = GREATEST(h.last_watched_at, EXCLUDED.last_watched_at),
    watch_count = h.watch_count + EXCLUDED.watch_count
RETURNING user_id, item_id, watch_count
"""

# log_score adds in log space: log(exp(a) + exp(b)) (a stored -infinity adds nothing).
_POPULARITY = """
INSERT INTO item_popularity AS p (item_id, watch_count, user_count, log_score, last_at)
SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::float8[], $5::timestamptz[])
ON CONFLICT (item_id) DO UPDATE SET
    watch_count = p.watch_count + EXCLUDED.watch_count,
    user_count = p.user_count + EXCLUDED.user_count,
    log_score = GREATEST(p.log_score, EXCLUDED.log_score)
                + ln(1 + exp(-abs(p.log_score - EXCLUDED.log_score))),
    last_at = GREATEST(p.last_at, EXCLUDED.last_at),
    changed_at = clock_timestamp()
"""

# Appended (COPY), never updated: no row is shared with another batch (see folding.py).
_DELTAS = "item_cooccurrence_deltas"
_DELTA_COLUMNS = ("item_id", "other_item_id", "weight")


async def apply_events(conn: asyncpg.Connection, events: Sequence[WatchEvent]) -> None:
    """Update user history and item popularity for ``events``; queue their co-occurrence."""
    if not events:
        return
    ordered = sorted(events, key=lambda e: e.occurred_at)  # stable: keeps the given order
    windows = await _recent_windows(conn, sorted({e.user_id for e in ordered}))
    new_pairs = await _upsert_history(conn, aggregates.history_rows(ordered))
    await _upsert_popularity(conn, aggregates.popularity_rows(ordered, new_pairs))
    await _append_cooccurrence(conn, aggregates.cooccurrence_pairs(ordered, windows, new_pairs))


async def _recent_windows(conn: asyncpg.Connection, users: list[str]) -> dict[str, list[str]]:
    """Each user's last distinct items before this batch, most recent first."""
    rows = await conn.fetch(_WINDOWS, users, aggregates.COOCCURRENCE_WINDOW)
    rows.sort(key=lambda r: (r["user_id"], r["last_watched_at"]), reverse=True)
    windows: dict[str, list[str]] = {}
    for r in rows:
        windows.setdefault(r["user_id"], []).append(r["item_id"])
    return windows


async def _upsert_history(
    conn: asyncpg.Connection, rows: list[aggregates.HistoryRow]
) -> frozenset[tuple[str, str]]:
    """Upsert history; return the (user, item) pairs seen for the first time.

    A row is new when its stored count equals this batch's count (an update
    adds to a count that was already at least one).
    """
    result = await conn.fetch(
        _HISTORY, [r.user_id for r in rows], [r.item_id for r in rows],
        [r.first_at for r in rows], [r.last_at for r in rows], [r.count for r in rows],
    )  # fmt: skip
    counts = {(r.user_id, r.item_id): r.count for r in rows}
    return frozenset(
        (r["user_id"], r["item_id"])
        for r in result
        if r["watch_count"] == counts[(r["user_id"], r["item_id"])]
    )


async def _upsert_popularity(
    conn: asyncpg.Connection, rows: list[aggregates.PopularityRow]
) -> None:
    await conn.execute(
        _POPULARITY, [r.item_id for r in rows], [r.watch_count for r in rows],
        [r.user_count for r in rows], [r.log_score for r in rows], [r.last_at for r in rows],
    )  # fmt: skip


async def _append_cooccurrence(
    conn: asyncpg.Connection, pairs: dict[tuple[str, str], float]
) -> None:
    """COPY, not ``INSERT ... unnest($1::text[], ...)``: asyncpg checks every element of an
    array parameter against two ABCs, and with ~40,000 pairs a batch that check and the
    array encoding were the largest items in the consumer's profile; COPY's records skip
    the check, and the server loads them faster too (3x less wall time for 42,000)."""
    if pairs:
        await conn.copy_records_to_table(
            _DELTAS, records=[(a, b, w) for (a, b), w in pairs.items()], columns=_DELTA_COLUMNS
        )


async def store_events(conn: asyncpg.Connection, events: Sequence[WatchEvent]) -> list[str]:
    """The consumer's write path for one batch, in the caller's transaction.

    Inserts the events (unique by ``event_id``), applies only the new ones in
    time order, and returns the ids that were new.
    """
    new_ids = await watch_events.insert_new(conn, events)
    await apply_events(conn, new_in_order(events, new_ids))
    return new_ids
