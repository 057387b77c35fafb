"""Impression SQL: plain async functions taking the connection first."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from reco.impressions.model import Impression
from reco.impressions.rows import impression_columns

_INSERT = """
INSERT INTO impressions (recommendation_id, user_id, endpoint, algorithm, items, served_at)
SELECT r, u, e, a, i::jsonb, s
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[])
    AS t(r, u, e, a, i, s)
ON CONFLICT (recommendation_id, served_at) DO NOTHING
"""


_COLUMNS = ("recommendation_id", "user_id", "endpoint", "algorithm", "items", "served_at")


async def insert_impressions(conn: asyncpg.Connection, impressions: Sequence[Impression]) -> None:
    """Idempotent: an impression already stored (same recommendation id and instant) is skipped
    (the primary key contains the partition key, sql/0007; a retried batch resends both)."""
    await conn.execute(_INSERT, *impression_columns(impressions))


async def copy_impressions(conn: asyncpg.Connection, impressions: Sequence[Impression]) -> None:
    """COPY: no array parameters (asyncpg checks each element against two ABCs), a
    faster load on the server; an impression already stored raises
    ``UniqueViolationError`` (use :func:`insert_impressions` then)."""
    await conn.copy_records_to_table(
        "impressions", records=zip(*impression_columns(impressions), strict=True),
        columns=_COLUMNS,
    )  # fmt: skip
