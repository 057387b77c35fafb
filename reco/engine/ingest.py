"""Aggregate updates from newly stored watch events (called inside the consumer's transaction).

The consumer inserts events (unique by event id) and passes only the new
ones here, in the same transaction, so that a duplicate never counts twice.
Four statements per batch whatever its size: read the users' recent windows,
upsert history, upsert popularity (which also stamps ``changed_at`` on every
watched item, for the read-side caches), append the co-occurrence increments
to ``item_cooccurrence_deltas``. The increments reach ``item_cooccurrence``
when a folder folds them (reco/folder/folding.py), a fraction of a second
later: popular pairs are in nearly every batch, and adding to them here made
concurrent batches wait for each other's row locks.

Every transaction locks in the same order: history rows, then popularity
rows, each sorted. Each upsert sends one row per distinct key as unnest()
arrays, sorted by key (concurrent consumers then lock rows in one global
order: no deadlock cycles), and adds to the stored value under the row lock
(no lost updates).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Sequence

import asyncpg
import attrs

from reco.db import classify
from reco.db.queries import watch_events
from reco.engine import aggregates, stamps
from reco.errors import UnprocessableData
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
# PostgreSQL's exp() raises "value out of range: underflow" below about -708 (Python's
# returns 0.0): a watch from 1997 after one from today is a gap of ~750 in these units.
# exp(-700) ~ 1e-304 is still a normal double, and ln(1 + x) of it is 0 to the last bit,
# so capping the gap at 700 changes no result and leaves no argument that underflows.
_POPULARITY = """
INSERT INTO item_popularity AS p (item_id, watch_count, user_count, log_score, last_at)
SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::float8[], $5::timestamptz[])
ON CONFLICT (item_id) DO UPDATE SET
    watch_count = p.watch_count + EXCLUDED.watch_count,
    user_count = p.user_count + EXCLUDED.user_count,
    log_score = GREATEST(p.log_score, EXCLUDED.log_score)
                + ln(1 + exp(-LEAST(abs(p.log_score - EXCLUDED.log_score), 700))),
    last_at = GREATEST(p.last_at, EXCLUDED.last_at),
    changed_at = clock_timestamp()
"""

# Every user of the batch (their stamps move with the history upsert, sql/0004): other
# instances' stamp watches hear it once the batch commits (reco/engine/stamps.py).
_NOTIFY = "SELECT pg_notify($1, u) FROM unnest($2::text[]) AS u"

# Appended (COPY), never updated: no row is shared with another batch (see folding.py).
_DELTAS = "item_cooccurrence_deltas"
_DELTA_COLUMNS = ("item_id", "other_item_id", "weight")


async def apply_events(conn: asyncpg.Connection, events: Sequence[WatchEvent]) -> None:
    """Update user history and item popularity for ``events``; queue their co-occurrence."""
    if not events:
        return
    ordered = sorted(events, key=lambda e: e.occurred_at)  # stable: keeps the given order
    users = sorted({e.user_id for e in ordered})
    windows = await _recent_windows(conn, users)
    new_pairs = await _upsert_history(conn, aggregates.history_rows(ordered))
    await conn.execute(_NOTIFY, stamps.CHANNEL, users)
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


Apply = Callable[[asyncpg.Connection, Sequence[WatchEvent]], Awaitable[None]]


async def store_events(
    conn: asyncpg.Connection, events: Sequence[WatchEvent], apply: Apply | None = None
) -> list[str]:
    """The consumer's write path for one batch, in the caller's transaction.

    Inserts the events (unique by ``event_id``), applies only the new ones in
    time order (``apply``, default :func:`apply_events`), and returns the ids that were new.
    """
    new_ids = await watch_events.insert_new(conn, events)
    await (apply or apply_events)(conn, new_in_order(events, new_ids))
    return new_ids


@attrs.frozen
class Stored:
    """What :func:`store_batch` did with a batch.

    ``new_ids``: stored now (their effects applied); ``conflicts``: an event
    whose ``event_id`` was already stored for another watch, with the stored
    (user, item, instant); ``unprocessable``: events the database refuses,
    with the error. Every other event was already stored, as the same watch.
    """

    new_ids: tuple[str, ...] = ()
    conflicts: tuple[tuple[WatchEvent, tuple[str, str, dt.datetime]], ...] = ()
    unprocessable: tuple[tuple[WatchEvent, UnprocessableData], ...] = ()

    def __add__(self, other: Stored) -> Stored:
        return Stored(
            self.new_ids + other.new_ids,
            self.conflicts + other.conflicts,
            self.unprocessable + other.unprocessable,
        )


async def store_batch(
    conn: asyncpg.Connection, events: Sequence[WatchEvent], apply: Apply | None = None
) -> Stored:
    """:func:`store_events`, isolating what the database refuses, in the caller's transaction.

    The batch is tried in a savepoint; when the database refuses its data for
    good (:class:`~reco.errors.UnprocessableData`), the savepoint is rolled back
    and each half is tried the same way, down to single events: ``k`` poison
    events in ``n`` cost about ``2 k log2(n)`` extra attempts, and every other
    event is stored. Any other error (transient, or a bug) propagates.
    """
    ordered = sorted(events, key=lambda e: (e.occurred_at, e.event_id))
    return await _isolating(conn, ordered, apply)


async def _isolating(
    conn: asyncpg.Connection, events: Sequence[WatchEvent], apply: Apply | None
) -> Stored:
    if not events:
        return Stored()
    try:
        async with conn.transaction():  # a savepoint inside the caller's transaction
            new_ids = await store_events(conn, events, apply)
    except Exception as exc:
        refused = classify.translate(exc)
        if not isinstance(refused, UnprocessableData):
            raise
        if len(events) == 1:
            return Stored(unprocessable=((events[0], refused),))
        half = len(events) // 2
        return await _isolating(conn, events[:half], apply) + await _isolating(
            conn, events[half:], apply
        )
    return Stored(tuple(new_ids), await _conflicts(conn, events, new_ids))


async def _conflicts(
    conn: asyncpg.Connection, events: Sequence[WatchEvent], new_ids: Sequence[str]
) -> tuple[tuple[WatchEvent, tuple[str, str, dt.datetime]], ...]:
    """The repeats (ids stored before) that describe another watch than the stored one."""
    new = set(new_ids)
    repeats = [e for e in events if e.event_id not in new]
    if not repeats:
        return ()
    stored = await watch_events.stored_watches(conn, [e.event_id for e in repeats])
    return tuple(
        (e, stored[e.event_id])
        for e in repeats
        if e.event_id in stored and stored[e.event_id] != (e.user_id, e.item_id, e.occurred_at)
    )
