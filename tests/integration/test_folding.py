"""Co-occurrence folding (reco/folder/folding.py) and its component, on a real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import math
import time
from typing import Any

import anyio
import asyncpg
import pytest

from reco.db.pool import Database
from reco.engine import aggregates
from reco.engine.ingest import store_events
from reco.events import WatchEvent
from reco.folder import folding
from reco.folder.component import CooccurrenceFolder
from reco.observability import metrics
from reco.settings import Settings, evolve
from tests.support.components import request_stop, start

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def watches(user: str, items: str, start: int = 0) -> list[WatchEvent]:
    return [
        WatchEvent(f"{user}-{start + i}", user, item, T0 + dt.timedelta(minutes=start + i))
        for i, item in enumerate(items)
    ]


async def store(conn: asyncpg.Connection, events: list[WatchEvent]) -> None:
    async with conn.transaction():
        await store_events(conn, events)


async def pairs(conn: asyncpg.Connection) -> dict[tuple[str, str], float]:
    rows = await conn.fetch("SELECT item_id, other_item_id, weight FROM item_cooccurrence")
    # To 1e-4: the events are minutes past PAIR_EPOCH, and their time decay (2e-6 of a
    # weight per minute, reco/engine/aggregates.py) is not what these tests are about.
    return {(r["item_id"], r["other_item_id"]): round(r["weight"], 4) for r in rows}


def expected(users: dict[str, list[WatchEvent]]) -> dict[tuple[str, str], float]:
    """The pair weights of every user's events (first watches only), summed: the pure model."""
    total: dict[tuple[str, str], float] = {}
    for events in users.values():
        new = frozenset((e.user_id, e.item_id) for e in events)
        for pair, w in aggregates.cooccurrence_pairs(events, {}, new).items():
            total[pair] = total.get(pair, 0.0) + w
    return {k: round(v, 4) for k, v in total.items()}


async def fold(conn: asyncpg.Connection, **kwargs: Any) -> int | None:
    """One fold in its own transaction (the caller owns it, as the folder does)."""
    kwargs.setdefault("statement_timeout", 30)
    async with conn.transaction():
        return await folding.fold(conn, **kwargs)


class TestFold:
    async def test_batches_reach_item_cooccurrence_only_when_folded(
        self, conn: asyncpg.Connection
    ) -> None:
        await store(conn, watches("u1", "abc"))
        await store(conn, watches("u2", "ab", 10))
        assert await pairs(conn) == {}
        assert await folding.pending(conn)
        assert await fold(conn) == 4  # u1: ab, ac, bc; u2: ab (each batch sums its own)
        assert await pairs(conn) == {("a", "b"): 2.0, ("a", "c"): 0.95, ("b", "c"): 1.0}
        assert not await folding.pending(conn)
        assert await fold(conn) == 0
        stamped = await conn.fetch("SELECT item_id FROM item_neighbour_changes ORDER BY 1")
        assert [r["item_id"] for r in stamped] == ["a", "b", "c"]

    async def test_an_open_transactions_increments_wait_for_the_next_fold(
        self, conn: asyncpg.Connection, database_url: str
    ) -> None:
        """Not visible to the fold's delete, so neither folded nor lost."""
        other = await asyncpg.connect(database_url)
        try:
            async with other.transaction():
                await store_events(other, watches("u1", "ab"))
                assert await fold(conn) == 0
            assert await fold(conn) == 1
        finally:
            await other.close()
        assert await pairs(conn) == {("a", "b"): 1.0}

    async def test_parts_split_the_pairs_and_add_up_to_the_whole(
        self, conn: asyncpg.Connection
    ) -> None:
        await store(conn, watches("u1", "abcdef"))
        whole = expected({"u1": watches("u1", "abcdef")})
        first = await fold(conn, part=0, parts=2)
        assert first is not None
        assert 0 < first < len(whole)  # six items: both parts have pairs
        assert await folding.pending(conn)
        assert await fold(conn, part=1, parts=2) == len(whole) - first
        assert await pairs(conn) == whole

    async def test_one_folder_at_a_time(self, conn: asyncpg.Connection, database_url: str) -> None:
        """While another holds the lock, a fold skips its turn and leaves the increments."""
        await store(conn, watches("u1", "ab"))
        other = await asyncpg.connect(database_url)
        try:
            async with other.transaction():
                await other.execute("SELECT pg_advisory_xact_lock($1)", folding.LOCK_KEY)
                assert await fold(conn) is None
                assert await folding.pending(conn)
        finally:
            await other.close()
        assert await fold(conn) == 1

    async def test_a_fold_that_fails_rolls_back_whole(
        self, conn: asyncpg.Connection, database_url: str
    ) -> None:
        await store(conn, watches("u1", "abc"))
        other = await asyncpg.connect(database_url)
        try:
            async with other.transaction():
                await other.execute("LOCK TABLE item_cooccurrence IN ACCESS EXCLUSIVE MODE")
                with pytest.raises(asyncpg.QueryCanceledError):
                    await fold(conn, statement_timeout=0.2)
        finally:
            await other.close()
        assert await pairs(conn) == {}
        assert await fold(conn) == 3
        assert await pairs(conn) == {("a", "b"): 1.0, ("a", "c"): 0.95, ("b", "c"): 1.0}


def counter(metric: Any, labels: dict[str, str] | None = None) -> float:
    try:
        return float(metric.get(labels or {}))
    except KeyError:  # never incremented yet
        return 0.0


class TestFolderComponent:
    async def test_concurrent_batches_and_two_folders_add_up_exactly(
        self, settings: Settings, database: Database, conn: asyncpg.Connection
    ) -> None:
        """Four writers and two folders at once: every increment is folded exactly once."""
        settings = evolve(settings, cooccurrence_fold_interval=0.01)
        users = {f"u{n}": watches(f"u{n}", "abcdefghijkl"[n % 3 :][:8], 100 * n) for n in range(8)}
        folders = [CooccurrenceFolder(settings.folder, database) for _ in range(2)]
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for folder in folders:
                    await start(tg, folder)

                async def write(names: list[str]) -> None:
                    for name in names:
                        for start in range(0, 8, 3):  # several batches per user
                            async with database.connection() as own:
                                await store(own, users[name][start : start + 3])

                async with anyio.create_task_group() as writers:
                    for lane in range(4):
                        writers.start_soon(write, [f"u{lane}", f"u{lane + 4}"])
                while await folding.pending(conn):  # noqa: ASYNC110 - state in PostgreSQL
                    await anyio.sleep(0.02)
                for folder in folders:
                    request_stop(folder)
        assert await pairs(conn) == expected(users)

    async def test_folds_within_the_interval_and_stops_promptly(
        self, settings: Settings, database: Database, conn: asyncpg.Connection
    ) -> None:
        parts = range(settings.folder.parts)
        folds = [counter(metrics.cooccurrence_folds, {"part": str(p)}) for p in parts]
        rows = counter(metrics.cooccurrence_folded)
        quick = evolve(settings, cooccurrence_fold_interval=0.05)
        folder = CooccurrenceFolder(quick.folder, database)
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                await start(tg, folder)
                await store(conn, watches("u1", "abc"))
                while await folding.pending(conn):  # noqa: ASYNC110 - state in PostgreSQL
                    await anyio.sleep(0.01)
                began = time.monotonic()
                request_stop(folder)
        assert time.monotonic() - began < 1.0
        assert await pairs(conn) == {("a", "b"): 1.0, ("a", "c"): 0.95, ("b", "c"): 1.0}
        for part in parts:  # every fold loop ran
            assert counter(metrics.cooccurrence_folds, {"part": str(part)}) > folds[part]
        assert counter(metrics.cooccurrence_folded) == rows + 3

    async def test_backs_off_while_empty_and_a_wake_ends_the_backoff(
        self, settings: Settings, database: Database, conn: asyncpg.Connection
    ) -> None:
        """An empty table is passed over ever more rarely (up to IDLE_FACTOR intervals);
        wake() (a committed batch's notification) brings the next pass within an interval."""
        quick = evolve(settings, cooccurrence_fold_interval=0.05, cooccurrence_fold_parts=1)
        folds = counter(metrics.cooccurrence_folds, {"part": "0"})
        folder = CooccurrenceFolder(quick.folder, database)
        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                await start(tg, folder)
                await anyio.sleep(1.6)  # 32 intervals: passes at about 0, .1, .3, .7, 1.5
                passes = counter(metrics.cooccurrence_folds, {"part": "0"}) - folds
                await store(conn, watches("u1", "abc"))
                began = time.monotonic()
                folder.wake()
                while await folding.pending(conn):  # noqa: ASYNC110 - state in PostgreSQL
                    await anyio.sleep(0.01)
                woken_after = time.monotonic() - began
                request_stop(folder)
        assert 2 <= passes <= 8  # without the backoff: about 32
        assert woken_after < 0.5  # the backoff had reached 0.8 s
        assert await pairs(conn) == {("a", "b"): 1.0, ("a", "c"): 0.95, ("b", "c"): 1.0}

    async def test_a_failing_fold_is_retried_until_it_succeeds(
        self, settings: Settings, database: Database, conn: asyncpg.Connection, database_url: str
    ) -> None:
        errors = counter(metrics.cooccurrence_fold_errors)
        settings = evolve(
            settings, cooccurrence_fold_interval=0.05, cooccurrence_fold_timeout=0.2,
            kafka_retry_max=0.2,
        )  # fmt: skip
        folder = CooccurrenceFolder(settings.folder, database)
        await store(conn, watches("u1", "ab"))
        blocker = await asyncpg.connect(database_url)
        try:
            with anyio.fail_after(20):
                async with anyio.create_task_group() as tg:
                    tx = blocker.transaction()
                    await tx.start()
                    await blocker.execute("LOCK TABLE item_cooccurrence IN ACCESS EXCLUSIVE MODE")
                    await start(tg, folder)
                    while counter(metrics.cooccurrence_fold_errors) < errors + 2:  # noqa: ASYNC110
                        await anyio.sleep(0.05)
                    await tx.rollback()
                    while await folding.pending(conn):  # noqa: ASYNC110 - state in PostgreSQL
                        await anyio.sleep(0.02)
                    request_stop(folder)
        finally:
            await blocker.close()
        assert await pairs(conn) == {("a", "b"): 1.0}


async def add_deltas(conn: asyncpg.Connection, n: int) -> dict[tuple[str, str], float]:
    """``n`` pending increments over 50 pairs (every pair several times): the sums they make."""
    records = [(f"i{k % 10:02}", f"j{k % 5:02}", 0.5) for k in range(n)]
    await conn.copy_records_to_table(
        "item_cooccurrence_deltas", records=records,
        columns=("item_id", "other_item_id", "weight"),
    )  # fmt: skip
    total: dict[tuple[str, str], float] = {}
    for a, b, w in records:
        total[(a, b)] = total.get((a, b), 0.0) + w
    return {k: round(v, 4) for k, v in total.items()}


class TestChunkedFold:
    async def test_a_chunk_folds_only_its_pages(self, conn: asyncpg.Connection) -> None:
        """One fold of a one-page chunk takes one page's increments, not the whole backlog."""
        await add_deltas(conn, 3000)
        size = await folding.table_blocks(conn)
        assert size > 10
        folded = await fold(conn, first_block=0, blocks=1)
        assert folded is not None
        assert 0 < folded < 3000 / 10
        remaining = await conn.fetchval("SELECT count(*) FROM item_cooccurrence_deltas")
        assert remaining == 3000 - folded

    async def test_a_pass_drains_a_backlog_larger_than_one_chunk(
        self, conn: asyncpg.Connection
    ) -> None:
        """A pass in two-page chunks folds a backlog of many pages exactly once, chunk by chunk."""
        want = await add_deltas(conn, 5000)
        chunks = folding.chunks(await folding.table_blocks(conn), 2)
        assert len(chunks) > 5
        folded = await folding.fold_pass(conn, statement_timeout=30, chunk_blocks=2)
        assert folded == 5000
        assert not await folding.pending(conn)
        assert await pairs(conn) == want

    async def test_the_folder_drains_a_backlog_larger_than_one_chunk(
        self, settings: Settings, database: Database, conn: asyncpg.Connection
    ) -> None:
        """The component, with one-page chunks, drains a many-page backlog."""
        want = await add_deltas(conn, 4000)
        chunks_before = counter(metrics.cooccurrence_folds, {"part": "0"})
        settings = evolve(
            settings, cooccurrence_fold_interval=0.05, cooccurrence_fold_chunk_blocks=1,
            cooccurrence_fold_parts=1,
        )  # fmt: skip
        folder = CooccurrenceFolder(settings.folder, database)
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                await start(tg, folder)
                while await folding.pending(conn):  # noqa: ASYNC110 - state in PostgreSQL
                    await anyio.sleep(0.02)
                request_stop(folder)
        assert await pairs(conn) == want
        assert counter(metrics.cooccurrence_folds, {"part": "0"}) - chunks_before > 10

    async def test_a_backlog_built_during_an_outage_drains_exactly(
        self, settings: Settings, database: Database, conn: asyncpg.Connection, database_url: str
    ) -> None:
        """Batches keep committing while every fold fails (the pair table locked away): the
        backlog grows past many chunks; once the outage ends the folder drains it, one page
        per transaction, to exactly the pure model's pairs."""
        catalogue = [f"m{k:02}" for k in range(40)]
        users = {f"u{n}": [WatchEvent(f"u{n}-{k}", f"u{n}", item, T0 + dt.timedelta(minutes=k))
                           for k, item in enumerate(catalogue[n:] + catalogue[:n])]
                 for n in range(25)}  # fmt: skip
        errors = counter(metrics.cooccurrence_fold_errors)
        settings = evolve(
            settings, cooccurrence_fold_interval=0.02, cooccurrence_fold_timeout=0.2,
            cooccurrence_fold_chunk_blocks=1, kafka_retry_max=0.2,
        )  # fmt: skip
        folder = CooccurrenceFolder(settings.folder, database)
        blocker = await asyncpg.connect(database_url)
        try:
            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:
                    tx = blocker.transaction()
                    await tx.start()
                    await blocker.execute("LOCK TABLE item_cooccurrence IN ACCESS EXCLUSIVE MODE")
                    await start(tg, folder)
                    for events in users.values():  # the consumer goes on meanwhile
                        for begin in range(0, len(events), 10):
                            await store(conn, events[begin : begin + 10])
                    while counter(metrics.cooccurrence_fold_errors) < errors + 2:  # noqa: ASYNC110
                        await anyio.sleep(0.05)
                    assert await folding.table_blocks(conn) > 20  # the backlog: many chunks
                    await tx.rollback()  # the outage ends
                    while await folding.pending(conn):  # noqa: ASYNC110 - state in PostgreSQL
                        await anyio.sleep(0.02)
                    request_stop(folder)
        finally:
            await blocker.close()
        assert await pairs(conn) == expected(users)


NOW = dt.datetime.now(dt.UTC)
YEARS = dt.timedelta(seconds=aggregates.PAIR_TAU_SECONDS)  # "years" of decay: a tau each


def at(user: str, items: str | list[str], when: dt.datetime) -> list[WatchEvent]:
    """``items`` watched in order by ``user``, a second apart from ``when``."""
    return [WatchEvent(f"{user}-{i}", user, item, when + dt.timedelta(seconds=i))
            for i, item in enumerate(items)]  # fmt: skip


async def prune(conn: asyncpg.Connection, floor: float = 0.1, **kwargs: Any) -> int | None:
    """One prune in its own transaction, against the floor read at NOW."""
    kwargs.setdefault("statement_timeout", 30)
    async with conn.transaction():
        return await folding.prune(conn, below=folding.prune_below(floor, NOW), **kwargs)


async def today(conn: asyncpg.Connection) -> dict[tuple[str, str], float]:
    """The pairs in today's units (the neighbour query's division)."""
    scale = aggregates.pair_scale(NOW)
    rows = await conn.fetch("SELECT item_id, other_item_id, weight FROM item_cooccurrence")
    return {(r["item_id"], r["other_item_id"]): r["weight"] / scale for r in rows}


class TestPrune:
    async def test_pairs_below_the_floor_go_and_the_rest_stay(
        self, conn: asyncpg.Connection
    ) -> None:
        """Three years old (e**-3 of a count: 0.05) is below 0.1; a week old is not; the
        ends of the deleted pairs are stamped for the caches, the others are not."""
        await store(conn, at("old", "ab", NOW - 3 * YEARS))
        await store(conn, at("new", "cd", NOW - dt.timedelta(days=7)))
        await store(conn, at("both", "ef", NOW - 3 * YEARS) + at("both2", "ef", NOW))
        await folding.fold_all(conn, statement_timeout=30)
        await conn.execute("UPDATE item_neighbour_changes SET changed_at = '2000-01-01'")
        before = await today(conn)
        assert before[("a", "b")] == pytest.approx(math.exp(-3), rel=1e-3)
        assert await prune(conn) == 1
        after = await today(conn)
        assert set(after) == {("c", "d"), ("e", "f")}
        assert after == {pair: before[pair] for pair in after}  # untouched
        stamped = await conn.fetch(
            "SELECT item_id FROM item_neighbour_changes WHERE changed_at > '2000-01-01'"
        )
        assert sorted(r["item_id"] for r in stamped) == ["a", "b"]

    async def test_a_floor_of_zero_prunes_nothing(self, conn: asyncpg.Connection) -> None:
        await store(conn, at("old", "abc", NOW - 30 * YEARS))
        await folding.fold_all(conn, statement_timeout=30)
        assert await prune(conn, floor=0.0) == 0
        assert len(await today(conn)) == 3

    async def test_a_pruned_pair_fed_again_starts_afresh(self, conn: asyncpg.Connection) -> None:
        await store(conn, at("old", "ab", NOW - 5 * YEARS))
        await folding.fold_all(conn, statement_timeout=30)
        assert await prune(conn) == 1
        await store(conn, at("new", "ab", NOW))
        await folding.fold_all(conn, statement_timeout=30)
        assert await today(conn) == {("a", "b"): pytest.approx(1.0, rel=1e-6)}

    async def test_chunks_and_parts_prune_only_their_rows_and_add_up(
        self, conn: asyncpg.Connection
    ) -> None:
        """Many pages of old pairs: a one-page chunk prunes a page's worth; a pass of every
        part in two-page chunks prunes them all."""
        old = aggregates.pair_scale(NOW - 10 * YEARS)
        records = [(f"i{k:05}", f"j{k:05}", old) for k in range(4000)]
        await conn.copy_records_to_table(
            "item_cooccurrence", records=records, columns=("item_id", "other_item_id", "weight")
        )
        size = await folding.table_blocks(conn, "item_cooccurrence")
        assert size > 10
        first = await prune(conn, first_block=0, blocks=1)
        assert first is not None
        assert 0 < first < 4000 / 10
        total = first
        for part in range(3):
            for begin, blocks in folding.chunks(size, 2):
                pruned = await prune(conn, part=part, parts=3, first_block=begin, blocks=blocks)
                total += pruned or 0
        assert total == 4000
        assert await today(conn) == {}

    async def test_a_part_another_folder_holds_is_skipped(
        self, conn: asyncpg.Connection, database_url: str
    ) -> None:
        await store(conn, at("old", "ab", NOW - 5 * YEARS))
        await folding.fold_all(conn, statement_timeout=30)
        other = await asyncpg.connect(database_url)
        try:
            async with other.transaction():
                await other.fetchval("SELECT pg_advisory_xact_lock($1)", folding.LOCK_KEY)
                assert await prune(conn) is None
        finally:
            await other.close()
        assert await prune(conn) == 1

    async def test_extreme_instants_fold_and_prune(self, conn: asyncpg.Connection) -> None:
        """Years 1 and 9999 (valid instants): finite weights, no SQL error; the year-1 pair
        decayed to nothing and goes, the year-9999 one (clamped) stays."""
        first = dt.datetime(1, 1, 1, tzinfo=dt.UTC)
        last = dt.datetime(9999, 12, 31, 23, 59, tzinfo=dt.UTC)
        await store(conn, at("ancient", "ab", first) + at("future", "cd", last - YEARS))
        await folding.fold_all(conn, statement_timeout=30)
        weights = await conn.fetch("SELECT weight FROM item_cooccurrence")
        assert all(math.isfinite(r["weight"]) and r["weight"] > 0 for r in weights)
        assert await prune(conn) == 1
        assert set(await today(conn)) == {("c", "d")}


class TestFolderPrunes:
    async def test_the_folder_prunes_every_interval_and_counts(
        self, settings: Settings, database: Database, conn: asyncpg.Connection
    ) -> None:
        """Old pairs already folded: the folder's first turn prunes them (in one-page
        chunks, both parts), the fresh ones stay; the counter has them."""
        for n in range(40):
            await store(conn, at(f"old{n}", [chr(65 + n % 26), f"n{n}"], NOW - 4 * YEARS))
        await store(conn, at("new", "xyz", NOW))
        await folding.fold_all(conn, statement_timeout=30)
        pruned = counter(metrics.cooccurrence_pruned)
        settings = evolve(
            settings, cooccurrence_fold_interval=0.02, cooccurrence_fold_chunk_blocks=1,
            cooccurrence_weight_floor=0.1, cooccurrence_prune_interval=3600,
        )  # fmt: skip
        folder = CooccurrenceFolder(settings.folder, database)
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                await start(tg, folder)
                while counter(metrics.cooccurrence_pruned) < pruned + 40:  # noqa: ASYNC110
                    await anyio.sleep(0.02)
                request_stop(folder)
        assert set(await today(conn)) == {("x", "y"), ("x", "z"), ("y", "z")}
        assert counter(metrics.cooccurrence_pruned) == pruned + 40
