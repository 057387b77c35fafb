"""``reco check-aggregates`` on a real PostgreSQL: equal after ingestion, a tampered row shown."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import asyncpg
import pytest

from reco import audit
from reco.engine import aggregates
from reco.engine.audit import Diff
from reco.engine.ingest import store_events
from reco.events import WatchEvent
from reco.folder import folding

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
TAU = dt.timedelta(seconds=aggregates.PAIR_TAU_SECONDS)


def watches(user: str, items: str, start: int = 0) -> list[WatchEvent]:
    return [
        WatchEvent(f"{user}-{start + i}", user, item, T0 + dt.timedelta(minutes=start + i))
        for i, item in enumerate(items)
    ]


async def ingest(conn: asyncpg.Connection) -> None:
    """Several batches, re-sends and re-watches, some increments folded and some pending."""
    batches = [
        watches("u1", "abcabdefghijklm") + watches("u2", "bcd"),
        watches("u1", "nacb", start=15) + watches("u2", "bcd"),  # u2's batch re-sent
        watches("u2", "eab", start=3) + watches("u3", "a"),
    ]
    for index, batch in enumerate(batches):
        async with conn.transaction():
            await store_events(conn, batch)
        if index == 1:
            await folding.fold_all(conn, statement_timeout=30)


async def check(conn: asyncpg.Connection) -> Diff:
    diff, _ = await audit.check(conn, statement_timeout=30)
    return diff


class TestCheckAggregates:
    async def test_equal_after_ingestion_with_pending_increments(
        self, conn: asyncpg.Connection
    ) -> None:
        """Folded and pending increments together match the replay."""
        await ingest(conn)
        assert await folding.pending(conn)
        diff = await check(conn)
        assert diff.equal, diff.lines

    async def test_a_tampered_popularity_count_is_reported(self, conn: asyncpg.Connection) -> None:
        await ingest(conn)
        await conn.execute("UPDATE item_popularity SET watch_count = watch_count + 1 "
                           "WHERE item_id = 'a'")  # fmt: skip
        diff = await check(conn)
        assert diff.lines == ("item_popularity a: watch_count stored 6, recomputed 5",)

    async def test_a_lost_event_shows_in_every_table(self, conn: asyncpg.Connection) -> None:
        await ingest(conn)
        await conn.execute("DELETE FROM watch_events WHERE event_id = 'u3-0'")
        diff = await check(conn)
        assert diff.counts == {"user_history": 1, "item_popularity": 3, "item_cooccurrence": 0}
        assert "user_history u3/a: stored" in diff.lines[0]

    async def test_a_drifted_pair_weight_is_reported(self, conn: asyncpg.Connection) -> None:
        await ingest(conn)
        await folding.fold_all(conn, statement_timeout=30)
        await conn.execute("UPDATE item_cooccurrence SET weight = weight * 1.001 "
                           "WHERE (item_id, other_item_id) = ('a', 'b')")  # fmt: skip
        diff = await check(conn)
        assert diff.counts["item_cooccurrence"] == 1
        assert diff.lines[0].startswith("item_cooccurrence a/b: weight stored")


class TestPruned:
    async def test_a_pruned_pair_is_excused_by_the_floor_and_only_by_it(
        self, conn: asyncpg.Connection
    ) -> None:
        """Pruned, then fed again: short of the replay by the pruned part (below the floor),
        which check-aggregates excuses with the folder's floor, and reports without one."""
        now = dt.datetime.now(dt.UTC)
        old = [
            WatchEvent("o1", "u1", "a", now - 3 * TAU),
            WatchEvent("o2", "u1", "b", now - 3 * TAU + dt.timedelta(seconds=1)),
        ]
        new = [WatchEvent("n1", "u2", "a", now), WatchEvent("n2", "u2", "b", now),
               WatchEvent("n3", "u2", "c", now)]  # fmt: skip
        async with conn.transaction():
            await store_events(conn, old)
        await folding.fold_all(conn, statement_timeout=30)
        async with conn.transaction():
            below = folding.prune_below(0.1, now)
            assert await folding.prune(conn, below=below, statement_timeout=30) == 1
            await store_events(conn, new)
        assert (await check(conn)).counts["item_cooccurrence"] == 1  # exact: reported
        diff, _ = await audit.check(conn, statement_timeout=30, weight_floor=0.1)
        assert diff.equal, diff.lines
        # more than the floor missing is still a fault
        await conn.execute("UPDATE item_cooccurrence_deltas SET weight = weight / 2 "
                           "WHERE (item_id, other_item_id) = ('a', 'c')")  # fmt: skip
        diff, _ = await audit.check(conn, statement_timeout=30, weight_floor=0.1)
        assert diff.lines[0].startswith("item_cooccurrence a/c: weight stored")


class TestAfterRetention:
    """Events of an old day dropped (as maintenance does): the aggregates still count them."""

    async def drop_u1s_first_day(self, conn: asyncpg.Connection) -> None:
        await ingest(conn)
        old = await conn.fetchval("SELECT (now() AT TIME ZONE 'UTC')::date - 40")
        await conn.fetchval("SELECT reco_partition_create('watch_events', 'received_day', $1)", old)
        await conn.execute(
            "UPDATE watch_events SET received_day = $1 WHERE event_id IN ('u1-0', 'u1-1')", old
        )
        await conn.execute(f"DROP TABLE watch_events_p{old:%Y%m%d}")

    async def test_exact_reports_the_dropped_lower_bound_does_not(
        self, conn: asyncpg.Connection
    ) -> None:
        await self.drop_u1s_first_day(conn)
        exact, _ = await audit.check(conn, statement_timeout=30)
        assert not exact.equal
        lower, events = await audit.check(conn, statement_timeout=30, lower_bound=True)
        assert lower.equal, lower.lines
        assert events == 24

    async def test_stored_below_the_kept_events_is_still_reported(
        self, conn: asyncpg.Connection
    ) -> None:
        await self.drop_u1s_first_day(conn)
        await conn.execute("UPDATE item_popularity SET watch_count = 1 WHERE item_id = 'b'")
        await conn.execute("DELETE FROM user_history WHERE user_id = 'u2' AND item_id = 'e'")
        await conn.execute("UPDATE item_cooccurrence SET weight = weight / 2")
        await conn.execute("UPDATE item_cooccurrence_deltas SET weight = weight / 2")
        diff, _ = await audit.check(conn, statement_timeout=30, lower_bound=True)
        assert diff.counts["user_history"] == 1
        assert "item_popularity b: watch_count stored 1" in "\n".join(diff.lines)
        assert diff.counts["item_cooccurrence"] > 0

    async def test_the_mode_follows_the_database_age(self, conn: asyncpg.Connection) -> None:
        day = 24 * 3600.0
        assert not await audit.may_have_dropped(conn, 30 * day)
        await conn.execute("UPDATE schema_migrations SET applied_at = now() - interval '31 days'")
        assert await audit.may_have_dropped(conn, 30 * day)
        assert not await audit.may_have_dropped(conn, 33 * day)


class TestCommand:
    def run(self, database_url: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "reco", "check-aggregates"],
            env={"RECO_DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"},
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip

    async def test_exit_0_when_equal_and_1_with_the_diff(
        self, conn: asyncpg.Connection, database_url: str
    ) -> None:
        await ingest(conn)
        done = self.run(database_url)
        assert (done.returncode, done.stdout) == (
            0,
            (
                "mode: exact (watch_events holds the full history)\n"
                "aggregates match a recomputation from 26 watch events\n"
            ),
        )
        await conn.execute("DELETE FROM user_history WHERE user_id = 'u2' AND item_id = 'e'")
        done = self.run(database_url)
        assert done.returncode == 1
        assert done.stdout.splitlines() == [
            "mode: exact (watch_events holds the full history)",
            "aggregates differ from a recomputation from 26 watch events (user_history 1):",
            (
                "  user_history u2/e: missing (recomputed first_watched_at=2026-01-01T00:03:00"
                "+00:00, last_watched_at=2026-01-01T00:03:00+00:00, watch_count=1)"
            ),
        ]
