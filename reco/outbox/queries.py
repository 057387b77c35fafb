"""Outbox SQL: plain async functions taking the connection first; the caller owns
the transaction.

The relay reads only rows whose writing transaction is below the xmin of the
current snapshot: every transaction with a smaller id has ended, so no row
with a smaller ``id`` can still appear later (sequence values are assigned
before commit). Rows are read in ``id`` order.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg
import attrs

NOTIFY_CHANNEL = "reco_outbox"


@attrs.frozen
class NewRow:
    """A row to enqueue: one Kafka message to be."""

    topic: str
    key: str
    event_id: str
    event_type: str
    payload: str  # JSON text


@attrs.frozen
class PendingRow:
    """An unpublished, committed row, as the relay reads it."""

    id: int
    topic: str
    key: str
    event_id: str
    event_type: str
    payload: bytes
    age: float  # seconds since the row was written, at read time


@attrs.frozen
class Backlog:
    unpublished: int
    oldest_age: float  # 0 when nothing is waiting


_INSERT = """
INSERT INTO outbox (topic, message_key, event_id, event_type, payload)
SELECT t, k, e, y, p::jsonb
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) AS r(t, k, e, y, p)
ON CONFLICT (topic, event_id) DO NOTHING
"""


async def enqueue(conn: asyncpg.Connection, rows: Sequence[NewRow]) -> int:
    """Insert ``rows``; a row whose (topic, event_id) is already there is skipped.

    Returns how many rows were inserted. The insert trigger notifies the relay
    at commit.
    """
    if not rows:
        return 0
    status = await conn.execute(
        _INSERT,
        [r.topic for r in rows], [r.key for r in rows], [r.event_id for r in rows],
        [r.event_type for r in rows], [r.payload for r in rows],
    )  # fmt: skip
    return int(status.rsplit(" ", 1)[-1])


_COPY_COLUMNS = ("topic", "message_key", "event_id", "event_type", "payload")


async def copy_rows(conn: asyncpg.Connection, rows: Sequence[NewRow]) -> None:
    """:func:`enqueue` by COPY, for rows known to be new: a row whose (topic, event_id)
    is already there raises ``UniqueViolationError`` instead of being skipped. The
    insert trigger notifies the relay at commit, as for :func:`enqueue`."""
    if rows:
        await conn.copy_records_to_table(
            "outbox", records=[(r.topic, r.key, r.event_id, r.event_type, r.payload) for r in rows],
            columns=_COPY_COLUMNS,
        )  # fmt: skip


_FETCH = """
SELECT id, topic, message_key, event_id, event_type, payload::text AS payload,
       extract(epoch FROM clock_timestamp() - created_at)::float8 AS age
FROM outbox_pending($1)
ORDER BY id
"""


async def fetch_pending(conn: asyncpg.Connection, limit: int) -> list[PendingRow]:
    """The oldest committed unpublished rows, in id order."""
    records = await conn.fetch(_FETCH, limit)
    return [
        PendingRow(
            id=r["id"],
            topic=r["topic"],
            key=r["message_key"],
            event_id=r["event_id"],
            event_type=r["event_type"],
            payload=r["payload"].encode(),
            age=r["age"],
        )
        for r in records
    ]


async def mark_published(conn: asyncpg.Connection, ids: Sequence[int]) -> None:
    await conn.execute(
        "UPDATE outbox SET published_at = clock_timestamp() WHERE id = ANY($1::bigint[])",
        list(ids),
    )


async def mark_rejected(conn: asyncpg.Connection, row_id: int, error: str) -> None:
    """Set aside a row the broker refuses for good: stamped, with the broker's error."""
    await conn.execute(
        "UPDATE outbox SET published_at = clock_timestamp(), publish_error = $2 WHERE id = $1",
        row_id, error,
    )  # fmt: skip


async def prune(conn: asyncpg.Connection, retention: float, limit: int) -> int:
    """Delete up to ``limit`` rows published more than ``retention`` seconds ago."""
    status = await conn.execute(
        """
        DELETE FROM outbox WHERE id IN (
            SELECT id FROM outbox
            WHERE published_at < clock_timestamp() - make_interval(secs => $1)
            LIMIT $2)
        """,
        retention,
        limit,
    )
    return int(status.rsplit(" ", 1)[-1])


async def backlog(conn: asyncpg.Connection) -> Backlog:
    row = await conn.fetchrow(
        """
        SELECT count(*) AS n,
               coalesce(extract(epoch FROM clock_timestamp() - min(created_at)), 0)::float8 AS age
        FROM outbox WHERE published_at IS NULL
        """
    )
    assert row is not None
    return Backlog(unpublished=row["n"], oldest_age=max(0.0, row["age"]))


async def try_lock(conn: asyncpg.Connection, key: int) -> bool:
    """Take the session-level advisory lock ``key`` if free (never waits)."""
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1)", key))
