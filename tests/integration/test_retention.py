"""Retention by partition (sql/0006, sql/0007, reco/maintenance/) on a real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import anyio
import asyncpg
import attrs
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from reco.db.pool import Database
from reco.db.queries import watch_events
from reco.events import WatchEvent
from reco.maintenance import queries
from reco.maintenance.component import Maintainer
from reco.observability import metrics
from reco.settings import Settings

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

DAY = 24 * 3600.0


def maintainer(settings: Settings, database: Database, **changes: Any) -> Maintainer:
    return Maintainer(attrs.evolve(settings.maintenance, **changes), database)


async def db_today(conn: asyncpg.Connection) -> dt.date:
    day: dt.date = await conn.fetchval("SELECT (now() AT TIME ZONE 'UTC')::date")
    return day


async def insert_received(
    conn: asyncpg.Connection, event_id: str, day: dt.date, occurred: dt.datetime | None = None
) -> None:
    """A watch event as if received on ``day`` (partition created first, like maintenance)."""
    await conn.fetchval("SELECT reco_partition_create('watch_events', 'received_day', $1)", day)
    await conn.execute(
        "INSERT INTO watch_events (event_id, user_id, item_id, occurred_at, received_at, "
        "received_day) VALUES ($1, 'u', 'i', $2, $3::date::timestamp AT TIME ZONE 'UTC', $3)",
        event_id, occurred or dt.datetime(2026, 1, 1, tzinfo=dt.UTC), day,
    )  # fmt: skip


async def partition_names(conn: asyncpg.Connection, table: str) -> set[str]:
    return set(await queries.partitions(conn, table))


async def store(conn: asyncpg.Connection, events: list[WatchEvent]) -> list[str]:
    async with conn.transaction():
        return await watch_events.insert_new(conn, events)


def value(metric: Any, labels: dict[str, str] | None = None) -> float:
    try:
        return float(metric.get(labels or {}))
    except KeyError:  # never set yet
        return 0.0


def event(event_id: str, occurred: dt.datetime | None = None) -> WatchEvent:
    return WatchEvent(event_id, "u", "i", occurred or dt.datetime(2026, 1, 1, tzinfo=dt.UTC))


class TestRetention:
    async def test_partitions_older_than_the_window_are_dropped_newer_kept(
        self, settings: Settings, database: Database, conn: asyncpg.Connection
    ) -> None:
        """With a 30-day window, day -31 goes (all its rows older than 30 days), day -30 stays
        (its last rows are younger), and a dropped id is new again."""
        today = await db_today(conn)
        old, edge = today - dt.timedelta(days=31), today - dt.timedelta(days=30)
        await insert_received(conn, "old", old)
        await insert_received(conn, "edge", edge)
        done = await maintainer(settings, database, watch_event_retention=30 * DAY).pass_once()
        assert done.ran
        assert f"watch_events_p{old:%Y%m%d}" in done.dropped
        names = await partition_names(conn, "watch_events")
        assert f"watch_events_p{old:%Y%m%d}" not in names
        assert f"watch_events_p{edge:%Y%m%d}" in names
        assert await store(conn, [event("old"), event("edge")]) == ["old"]

    async def test_impressions_past_retention_are_dropped(
        self, settings: Settings, database: Database, conn: asyncpg.Connection
    ) -> None:
        today = await db_today(conn)
        stamps = {days: dt.datetime.combine(today, dt.time(12), dt.UTC) - dt.timedelta(days=days)
                  for days in (0, 13, 15)}  # fmt: skip
        for stamp in stamps.values():
            await conn.execute(
                "INSERT INTO impressions VALUES ($1, 'u', 'e', 'a', '[]', $2)", uuid.uuid4(), stamp
            )
        # days without a partition went to DEFAULT; the pass moves them, then drops day -15
        await maintainer(settings, database, impression_retention=14 * DAY).pass_once()
        kept = await conn.fetch("SELECT served_at FROM impressions ORDER BY 1")
        assert [r["served_at"] for r in kept] == [stamps[13], stamps[0]]
        assert await conn.fetchval("SELECT count(*) FROM impressions_default") == 0

    async def test_partitions_are_created_ahead(
        self, settings: Settings, database: Database, conn: asyncpg.Connection
    ) -> None:
        today = await db_today(conn)
        ahead = today + dt.timedelta(days=6)
        done = await maintainer(settings, database, partitions_ahead=6).pass_once()
        for table in ("watch_events", "impressions"):
            assert f"{table}_p{ahead:%Y%m%d}" in done.created
            assert f"{table}_p{ahead:%Y%m%d}" in await partition_names(conn, table)
        again = await maintainer(settings, database, partitions_ahead=6).pass_once()
        assert again.ran
        assert (again.created, again.dropped) == ((), ())

    async def test_default_rows_move_into_their_new_partition(
        self, conn: asyncpg.Connection
    ) -> None:
        far = dt.date(2100, 5, 5)
        await conn.execute(
            "INSERT INTO watch_events (event_id, user_id, item_id, occurred_at, received_day) "
            "VALUES ('later', 'u', 'i', now(), $1)", far,
        )  # fmt: skip
        assert await conn.fetchval("SELECT count(*) FROM watch_events_default") == 1
        assert await conn.fetchval(
            "SELECT reco_partition_create('watch_events', 'received_day', $1)", far
        )
        assert await conn.fetchval("SELECT count(*) FROM watch_events_default") == 0
        assert await conn.fetchval(f"SELECT event_id FROM watch_events_p{far:%Y%m%d}") == "later"
        assert not await conn.fetchval(
            "SELECT reco_partition_create('watch_events', 'received_day', $1)", far
        )

    async def test_expired_default_rows_are_deleted_and_get_no_partition(
        self, settings: Settings, database: Database, conn: asyncpg.Connection
    ) -> None:
        """DEFAULT rows of an expired day go by DELETE (in chunks); those within the window
        move into their new partition; no partition is made for an expired day."""
        today = await db_today(conn)
        old, recent = today - dt.timedelta(days=40), today - dt.timedelta(days=2)
        assert f"watch_events_p{recent:%Y%m%d}" not in await partition_names(conn, "watch_events")
        await conn.execute(
            "INSERT INTO watch_events (event_id, user_id, item_id, occurred_at, received_day) "
            "SELECT 'old-' || g, 'u', 'i', now(), $1::date FROM generate_series(1, 25) g "
            "UNION ALL SELECT 'recent', 'u', 'i', now(), $2::date",
            old, recent,
        )  # fmt: skip
        await conn.execute(
            "INSERT INTO impressions (recommendation_id, endpoint, algorithm, items, served_at) "
            "VALUES (gen_random_uuid(), 'e', 'a', '[]', now() - interval '30 days')"
        )
        before = value(metrics.maintenance_default_rows_deleted, {"table": "watch_events"})
        tables = maintainer(settings, database, watch_event_retention=7 * DAY).tables
        deleted = await queries.delete_expired_default(conn, tables[0], old, chunk=4)
        assert deleted == 0  # strictly before: the day itself is kept
        done = await maintainer(settings, database, watch_event_retention=7 * DAY).pass_once()
        assert done.deleted == 26  # 25 watch events, 1 impression
        names = await partition_names(conn, "watch_events")
        assert f"watch_events_p{old:%Y%m%d}" not in names
        assert f"watch_events_p{old:%Y%m%d}" not in done.created + done.dropped
        assert f"watch_events_p{recent:%Y%m%d}" in names
        assert await conn.fetchval("SELECT count(*) FROM watch_events_default") == 0
        assert await conn.fetchval("SELECT count(*) FROM impressions_default") == 0
        assert (
            await conn.fetchval(f"SELECT event_id FROM watch_events_p{recent:%Y%m%d}") == "recent"
        )
        after = value(metrics.maintenance_default_rows_deleted, {"table": "watch_events"})
        assert after - before == 25

    async def test_expired_default_rows_are_deleted_in_chunks(
        self, settings: Settings, conn: asyncpg.Connection, database: Database
    ) -> None:
        today = await db_today(conn)
        old = today - dt.timedelta(days=40)
        await conn.execute(
            "INSERT INTO watch_events (event_id, user_id, item_id, occurred_at, received_day) "
            "SELECT 'old-' || g, 'u', 'i', now(), $1::date FROM generate_series(1, 9) g",
            old,
        )
        part = maintainer(settings, database).tables[0]
        assert await queries.delete_expired_default(conn, part, today, chunk=4) == 9
        assert await queries.delete_expired_default(conn, part, today, chunk=3) == 0
        assert await conn.fetchval("SELECT count(*) FROM watch_events") == 0

    async def test_two_maintainers_at_once_are_safe(
        self, settings: Settings, database: Database, conn: asyncpg.Connection
    ) -> None:
        """While one pass holds the lock the other skips; a pass after it finds nothing to do."""
        one, two = maintainer(settings, database), maintainer(settings, database)
        async with conn.transaction():
            assert await queries.try_lock(conn)
            assert not (await two.pass_once()).ran
        results: list[str] = []

        async def run(m: Maintainer) -> None:
            results.append(await m.pass_guarded())

        async with anyio.create_task_group() as tg:
            tg.start_soon(run, one)
            tg.start_soon(run, two)
        assert "ok" in results
        assert set(results) <= {"ok", "skipped"}
        assert (await one.pass_once()).created == ()

    async def test_a_pass_blocked_by_a_lock_gives_up_and_the_next_one_catches_up(
        self, settings: Settings, database: Database, database_url: str
    ) -> None:
        """A session holding watch_events: the pass waits lock_timeout, rolls back, is
        counted transient (the process goes on); once the lock is gone the next pass
        creates what the first could not."""
        m = maintainer(settings, database, partitions_ahead=8, lock_timeout=0.2)
        before = value(metrics.maintenance_runs, {"outcome": "transient"})
        other = await asyncpg.connect(database_url)
        try:
            async with other.transaction():
                await other.execute("LOCK TABLE watch_events IN ACCESS SHARE MODE")
                with anyio.fail_after(10):
                    assert await m.pass_guarded() == "transient"
        finally:
            await other.close()
        assert value(metrics.maintenance_runs, {"outcome": "transient"}) == before + 1
        done = await m.pass_once()
        assert len([name for name in done.created if name.startswith("watch_events_")]) >= 5

    async def test_a_component_run_reports_sizes_and_success(
        self, settings: Settings, database: Database
    ) -> None:
        from tests.support.components import request_stop, start

        m = maintainer(settings, database, interval=0.05, table_size_interval=0.05)
        async with anyio.create_task_group() as tg:
            await start(tg, m)
            with anyio.fail_after(10):
                while not value(metrics.maintenance_last_success):  # noqa: ASYNC110 - a gauge
                    await anyio.sleep(0.02)
                while not value(metrics.table_bytes, {"table": "watch_events"}):  # noqa: ASYNC110
                    await anyio.sleep(0.02)
            request_stop(m)
        assert value(metrics.table_index_bytes, {"table": "watch_events"}) > 0
        assert value(metrics.maintenance_runs, {"outcome": "ok"}) >= 1


class TestDeduplication:
    async def test_a_redelivered_id_counts_once_across_a_partition_boundary(
        self, conn: asyncpg.Connection
    ) -> None:
        yesterday = await db_today(conn) - dt.timedelta(days=1)
        await insert_received(conn, "seen-yesterday", yesterday)
        assert await store(conn, [event("seen-yesterday"), event("fresh")]) == ["fresh"]
        assert await store(conn, [event("fresh"), event("seen-yesterday")]) == []
        assert await conn.fetchval("SELECT count(*) FROM watch_events") == 2

    async def test_concurrent_same_day_duplicates_meet_in_the_key(
        self, conn: asyncpg.Connection, database_url: str
    ) -> None:
        other = await asyncpg.connect(database_url)
        try:
            tx = other.transaction()
            await tx.start()
            assert await watch_events.insert_new(other, [event("x")]) == ["x"]
            result: list[list[str]] = []

            async def second() -> None:
                result.append(await store(conn, [event("x"), event("y")]))

            async with anyio.create_task_group() as tg:
                tg.start_soon(second)
                await anyio.sleep(0.3)
                assert result == []  # waits for the first transaction's row
                await tx.commit()
            assert result == [["y"]]
        finally:
            await other.close()

    async def test_a_transaction_of_the_previous_day_is_waited_for(
        self, conn: asyncpg.Connection, database_url: str
    ) -> None:
        """A transaction still storing under yesterday's day (its shared lock held) is waited
        for, so its ids are seen: the day change loses no duplicate."""
        yesterday = await db_today(conn) - dt.timedelta(days=1)
        await conn.fetchval(
            "SELECT reco_partition_create('watch_events', 'received_day', $1)", yesterday
        )
        other = await asyncpg.connect(database_url)
        try:
            tx = other.transaction()
            await tx.start()
            await other.execute(
                "SELECT pg_advisory_xact_lock_shared(726354, $1::date - DATE '1970-01-01')",
                yesterday,
            )
            await insert_received(other, "late", yesterday)
            result: list[list[str]] = []

            async def second() -> None:
                result.append(await store(conn, [event("late")]))

            async with anyio.create_task_group() as tg:
                tg.start_soon(second)
                await anyio.sleep(0.3)
                assert result == []
                await tx.commit()
            assert result == [[]]
        finally:
            await other.close()

    async def test_a_cancelled_barrier_leaves_no_lock_behind(
        self, conn: asyncpg.Connection, database_url: str
    ) -> None:
        """statement_timeout while waiting at the barrier: the error is transient (a lock
        wait cut short) and the session holds no lock afterwards."""
        yesterday = await db_today(conn) - dt.timedelta(days=1)
        other = await asyncpg.connect(database_url)
        try:
            tx = other.transaction()
            await tx.start()
            await other.execute(
                "SELECT pg_advisory_xact_lock_shared(726354, $1::date - DATE '1970-01-01')",
                yesterday,
            )
            await conn.execute("SET statement_timeout = 200")
            with pytest.raises(asyncpg.QueryCanceledError):
                await store(conn, [event("z")])
            await conn.execute("RESET statement_timeout")
            held = await conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                "AND pid = pg_backend_pid()"
            )
            assert held == 0
            await tx.commit()
            assert await store(conn, [event("z")]) == ["z"]
        finally:
            await other.close()

    @hsettings(max_examples=25, deadline=None,
               suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
    @given(
        occurred=st.datetimes(
            min_value=dt.datetime(1, 1, 2), max_value=dt.datetime(9999, 12, 30),
            timezones=st.just(dt.UTC),
        ) | st.sampled_from([
            dt.datetime(1, 1, 1, tzinfo=dt.UTC),
            dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC),
        ]),
        received_ago=st.integers(min_value=0, max_value=29),
    )  # fmt: skip
    async def test_any_occurred_at_is_stored_and_deduplicated(
        self, conn: asyncpg.Connection, occurred: dt.datetime, received_ago: int
    ) -> None:
        """Years 1 to 9999: the partition is the day received, whatever the event's instant."""
        event_id = f"e-{uuid.uuid4()}"
        assert await store(conn, [event(event_id, occurred)]) == [event_id]
        assert await store(conn, [event(event_id, occurred)]) == []
        before = await db_today(conn) - dt.timedelta(days=received_ago)
        earlier = f"e-{uuid.uuid4()}"
        await insert_received(conn, earlier, before, occurred)
        assert await store(conn, [event(earlier, occurred)]) == []
        assert await conn.fetchval("SELECT count(*) FROM watch_events_default") == 0


class TestExpiredRule:
    @given(
        day=st.dates(min_value=dt.date(1, 1, 1), max_value=dt.date(9999, 12, 31)),
        now=st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(9000, 1, 1),
                         timezones=st.just(dt.UTC)),
        retention=st.floats(min_value=1.0, max_value=3650 * DAY),
    )  # fmt: skip
    def test_a_partition_is_expired_exactly_when_all_its_rows_are(
        self, day: dt.date, now: dt.datetime, retention: float
    ) -> None:
        cutoff = now - dt.timedelta(seconds=retention)
        if day == dt.date.max:
            assert not queries.expired(day, now, retention)
            return
        end = dt.datetime.combine(day + dt.timedelta(days=1), dt.time(), dt.UTC)
        assert queries.expired(day, now, retention) == (end <= cutoff)


class TestConversion:
    async def test_the_migrations_convert_tables_that_have_rows(
        self, postgres: Any, tmp_path: Any
    ) -> None:
        """Up to 0005, rows stored; 0006 and 0007 then keep every row, partitioned by day."""
        import shutil

        from reco.db import migrations
        from tests.support.servers import unique_suffix

        mdir = tmp_path / "sql"
        mdir.mkdir()
        shipped = sorted(migrations.default_dir().glob("*.sql"))
        for path in shipped:
            if path.name < "0006":
                shutil.copy(path, mdir)
        name = "conv_" + unique_suffix()
        postgres.psql(f"CREATE DATABASE {name}")
        conn = await asyncpg.connect(postgres.url(name))
        try:
            await migrations.migrate(conn, mdir)
            received = dt.datetime(2026, 3, 4, 5, 6, tzinfo=dt.UTC)
            await conn.execute(
                "INSERT INTO watch_events (event_id, user_id, item_id, occurred_at, received_at) "
                "VALUES ('a', 'u', 'i', '0001-01-01T00:00:00Z', $1), "
                "('b', 'u', 'i', '9999-12-31T23:59:59Z', now())", received,
            )  # fmt: skip
            await conn.execute(
                "INSERT INTO impressions VALUES ($1, 'u', 'e', 'a', '[]', $2)",
                uuid.uuid4(), received,
            )  # fmt: skip
            for path in shipped:
                if "0006" <= path.name < "0008":  # the conversions, not what follows
                    shutil.copy(path, mdir)
            applied = await migrations.migrate(conn, mdir)
            assert [m.label for m in applied] == [
                "0006_watch_events_partitioned", "0007_impressions_partitioned"
            ]  # fmt: skip
            rows = await conn.fetch(
                "SELECT event_id, tableoid::regclass::text AS part, received_day FROM watch_events "
                "ORDER BY 1"
            )
            assert rows[0]["part"] == "watch_events_p20260304"
            assert rows[0]["received_day"] == dt.date(2026, 3, 4)
            assert rows[1]["part"] != "watch_events_default"
            assert (
                await conn.fetchval("SELECT tableoid::regclass::text FROM impressions")
                == "impressions_p20260304"
            )
            assert await watch_events.insert_new(conn, [event("a"), event("b"), event("c")]) == [
                "c"
            ]
        finally:
            await conn.close()
