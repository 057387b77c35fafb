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
ON CONFLICT (recommendation_id) DO NOTHING
"""


async def insert_impressions(conn: asyncpg.Connection, impressions: Sequence[Impression]) -> None:
    await conn.execute(_INSERT, *impression_columns(impressions))
