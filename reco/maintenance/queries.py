"""Maintenance SQL: daily partitions made ahead and dropped past retention, table sizes.

``watch_events`` (by ``received_day``) and ``impressions`` (by ``served_at``)
are partitioned by UTC day (sql/0006, sql/0007); partition ``<table>_pYYYYMMDD``
holds that day, ``<table>_default`` whatever arrived for a day without one.
Creating goes through ``reco_partition_create()`` (sql/0006), which also
moves the DEFAULT partition's rows of that day into the new partition. Rows
of an expired day in the DEFAULT partition are deleted there, in chunks
(``delete_expired_default``): no partition is made only to be dropped.
"""

from __future__ import annotations

import datetime as dt
import re

import asyncpg
import attrs


@attrs.frozen
class Partitioned:
    """A table partitioned by day, and how long its rows are kept."""

    table: str
    key: str  # the partition key column (date or timestamptz)
    retention: float  # seconds
    day_of: str  # SQL: the UTC day of a row (from ``key``)


_SUFFIX = re.compile(r"_p(\d{4})(\d{2})(\d{2})$")

# one lock for the whole pass: instances skip a pass another one is running
LOCK_KEY = (726354, 1)


async def try_lock(conn: asyncpg.Connection) -> bool:
    """This transaction's maintenance lock, unless another session holds it."""
    got: bool = await conn.fetchval("SELECT pg_try_advisory_xact_lock($1, $2)", *LOCK_KEY)
    return got


async def today(conn: asyncpg.Connection) -> tuple[dt.datetime, dt.date]:
    """The database's clock (the one partition keys are stamped with) and its UTC day."""
    row = await conn.fetchrow("SELECT now() AS now, (now() AT TIME ZONE 'UTC')::date AS day")
    assert row is not None
    return row["now"], row["day"]


async def default_days(conn: asyncpg.Connection, part: Partitioned) -> list[dt.date]:
    """The days of the rows waiting in the DEFAULT partition (normally none)."""
    rows = await conn.fetch(
        f"SELECT DISTINCT {part.day_of} AS day FROM {part.table}_default ORDER BY 1"
    )
    return [r["day"] for r in rows]


async def create(conn: asyncpg.Connection, part: Partitioned, day: dt.date) -> bool:
    """Create ``day``'s partition unless it exists; True when created."""
    created: bool = await conn.fetchval(
        "SELECT reco_partition_create($1, $2, $3)", part.table, part.key, day
    )
    return created


async def partitions(conn: asyncpg.Connection, table: str) -> dict[str, dt.date]:
    """The daily partitions of ``table`` by name, with their day (DEFAULT left out)."""
    rows = await conn.fetch(
        """
        SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = $1::regclass
        """,
        table,
    )
    days = {}
    for r in rows:
        match = _SUFFIX.search(r["relname"])
        if match and r["relname"] == f"{table}_p{''.join(match.groups())}":
            days[r["relname"]] = dt.date(*(int(g) for g in match.groups()))
    return days


def cutoff_day(now: dt.datetime, retention: float) -> dt.date:
    """The first day kept: the UTC day of ``now - retention`` (earlier days are expired)."""
    return (now.astimezone(dt.UTC) - dt.timedelta(seconds=retention)).date()


def expired(day: dt.date, now: dt.datetime, retention: float) -> bool:
    """Every row of ``day`` (received before the next UTC midnight) is older than retention.

    Rows of day d were stamped before d+1 00:00 UTC; that is at or before the
    cutoff ``now - retention`` exactly when d is before the cutoff's UTC day.
    """
    return day < cutoff_day(now, retention)


# rows per DELETE of expired DEFAULT rows: each statement's work and WAL stay bounded
DEFAULT_DELETE_CHUNK = 10_000


async def delete_expired_default(
    conn: asyncpg.Connection, part: Partitioned, before: dt.date, chunk: int = DEFAULT_DELETE_CHUNK
) -> int:
    """Delete the DEFAULT partition's rows of days before ``before``; how many.

    ``chunk`` rows per statement (by ``ctid``: the DEFAULT partition has no index
    on the day), until a statement deletes fewer.
    """
    total = 0
    while True:
        status = await conn.execute(
            f"DELETE FROM {part.table}_default WHERE ctid = ANY(ARRAY("
            f"SELECT ctid FROM {part.table}_default WHERE {part.day_of} < $1 LIMIT $2))",
            before, chunk,
        )  # fmt: skip
        deleted = int(status.split()[-1])
        total += deleted
        if deleted < chunk:
            return total


async def drop(conn: asyncpg.Connection, partition: str) -> None:
    await conn.execute(f'DROP TABLE "{partition}"')


_SIZES = """
SELECT c.relname AS table,
       (SELECT coalesce(sum(pg_total_relation_size(t.relid)), 0) FROM pg_partition_tree(c.oid) t)
           AS total,
       (SELECT coalesce(sum(pg_indexes_size(t.relid)), 0) FROM pg_partition_tree(c.oid) t)
           AS indexes
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND NOT c.relispartition
ORDER BY 1
"""


async def table_sizes(conn: asyncpg.Connection) -> dict[str, tuple[int, int]]:
    """Bytes of every table of the schema (partitions summed): (total, indexes)."""
    return {r["table"]: (int(r["total"]), int(r["indexes"])) for r in await conn.fetch(_SIZES)}
