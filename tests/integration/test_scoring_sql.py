"""The popularity upsert's log-add in the real PostgreSQL, over hypothesis-drawn exponents.

Issue 10, finding 1: ``log_score`` adds in log space in SQL
(reco/engine/ingest.py, ``_POPULARITY``); PostgreSQL's ``exp()`` raises
``value out of range: underflow`` where the C library would return 0, so a
large gap between the stored score and a new watch's exponent (a 1997
history, then a watch dated today) failed the whole batch. The statement
under test is the real one, through ``ingest._upsert_popularity`` and
through ``apply_events``; each example runs in a transaction rolled back
after it.
"""

from __future__ import annotations

import datetime as dt
import math

import asyncpg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from reco.engine import aggregates, ingest
from reco.events import WatchEvent

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

FIRST = dt.datetime(1, 1, 1, tzinfo=dt.UTC)
LAST = dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC)
# the exponents of every instant in years 1-9999
LOW, HIGH = aggregates.trending_exponent(FIRST), aggregates.trending_exponent(LAST)
EXPONENTS = st.floats(min_value=LOW, max_value=HIGH, allow_nan=False)
INSTANTS = st.datetimes(
    min_value=FIRST.replace(tzinfo=None), max_value=LAST.replace(tzinfo=None)
).map(lambda at: at.replace(tzinfo=dt.UTC))
SQL = settings(
    max_examples=150, derandomize=True, database=None, deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)  # fmt: skip


def _row(log_score: float, at: dt.datetime) -> aggregates.PopularityRow:
    return aggregates.PopularityRow("item", 1, 1, log_score, at)


async def _score(conn: asyncpg.Connection) -> float:
    value: float = await conn.fetchval(
        "SELECT log_score FROM item_popularity WHERE item_id = 'item'"
    )
    return value


class TestPopularityUpsert:
    @SQL
    @given(stored=EXPONENTS, new=EXPONENTS)
    @example(
        stored=aggregates.trending_exponent(dt.datetime(1997, 9, 20, tzinfo=dt.UTC)),
        new=aggregates.trending_exponent(dt.datetime(2026, 1, 5, tzinfo=dt.UTC)),
    )
    @example(stored=LOW, new=HIGH)
    async def test_log_add_of_any_two_exponents(
        self, conn: asyncpg.Connection, stored: float, new: float
    ) -> None:
        """Adding any exponent to any stored score raises nothing and stays finite."""
        at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        tx = conn.transaction()
        await tx.start()
        try:
            await ingest._upsert_popularity(conn, [_row(stored, at)])  # the INSERT
            await ingest._upsert_popularity(conn, [_row(new, at)])  # the ON CONFLICT log-add
            score = await _score(conn)
        finally:
            await tx.rollback()
        assert math.isfinite(score)
        top = max(stored, new)  # log(e^a + e^b) lies in [max, max + log 2]
        assert top - 1e-9 * abs(top) <= score <= top + math.log(2) + 1e-9 * abs(top)


class TestApplyEvents:
    @SQL
    @given(first=INSTANTS, second=INSTANTS)
    @example(first=FIRST, second=LAST)
    @example(
        first=dt.datetime(1997, 9, 20, tzinfo=dt.UTC), second=dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
    )
    async def test_two_watches_any_years_apart(
        self, conn: asyncpg.Connection, first: dt.datetime, second: dt.datetime
    ) -> None:
        """Two batches, one watch each of one item, in any two instants of years 1-9999: stored."""
        tx = conn.transaction()
        await tx.start()
        try:
            await ingest.apply_events(conn, [WatchEvent("e1", "u1", "item", first)])
            await ingest.apply_events(conn, [WatchEvent("e2", "u2", "item", second)])
            score = await _score(conn)
        finally:
            await tx.rollback()
        assert math.isfinite(score)
