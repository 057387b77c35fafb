"""apply_events and the Recommender against the real PostgreSQL."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import AsyncIterator

import anyio
import asyncpg
import pytest

from reco.db.pool import Database
from reco.engine import aggregates, queries
from reco.engine.ingest import apply_events
from reco.engine.recommender import Recommender
from reco.events import WatchEvent
from reco.folder import folding
from reco.observability.readiness import Readiness
from reco.settings import Settings, evolve

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def ev(n: int, user: str, item: str) -> WatchEvent:
    return WatchEvent(f"e{n}-{user}-{item}", user, item, T0 + dt.timedelta(minutes=n))


def watches(user: str, items: str, start: int = 0) -> list[WatchEvent]:
    return [ev(start + i, user, item) for i, item in enumerate(items)]


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    try:
        await connection.executemany(
            "INSERT INTO items (item_id, title, genres) VALUES ($1, $2, $3)",
            [(c, f"Title {c}", ["Comedy"] if c in "aeiou" else ["Drama"]) for c in "abcdefghij"],
        )
        yield connection
    finally:
        await connection.close()


async def apply(conn: asyncpg.Connection, events: list[WatchEvent]) -> None:
    """One consumer batch, then the fold that the service's folder would make."""
    async with conn.transaction():
        await apply_events(conn, events)
    async with conn.transaction():
        await folding.fold(conn, statement_timeout=30)


async def pairs(conn: asyncpg.Connection) -> dict[tuple[str, str], float]:
    rows = await conn.fetch("SELECT item_id, other_item_id, weight FROM item_cooccurrence")
    # To 1e-4: the events are minutes past PAIR_EPOCH, and their time decay (2e-6 of a
    # weight per minute, reco/engine/aggregates.py) is not what these tests are about.
    return {(r["item_id"], r["other_item_id"]): round(r["weight"], 4) for r in rows}


class TestApplyEvents:
    async def test_builds_history_popularity_and_pairs(self, conn: asyncpg.Connection) -> None:
        await apply(conn, watches("u1", "abc"))
        history = await conn.fetch("SELECT item_id FROM user_history WHERE user_id = 'u1' "
                                   "ORDER BY last_watched_at DESC")  # fmt: skip
        assert [r["item_id"] for r in history] == ["c", "b", "a"]
        assert (
            await conn.fetchval("SELECT user_count FROM item_popularity WHERE item_id = 'b'") == 1
        )
        assert await pairs(conn) == {("a", "b"): 1.0, ("a", "c"): 0.95, ("b", "c"): 1.0}

    async def test_split_batches_add_up_to_one_batch(self, conn: asyncpg.Connection,
                                                     database_url: str) -> None:  # fmt: skip
        """Incremental: three batches give the same aggregates as one."""
        events = watches("u1", "abcdef") + watches("u2", "fedcba", 10)
        events.sort(key=lambda e: e.occurred_at)
        for start in range(0, len(events), 4):
            await apply(conn, events[start : start + 4])
        incremental = await pairs(conn)
        await conn.execute("TRUNCATE user_history, item_popularity, item_cooccurrence")
        await apply(conn, events)
        assert await pairs(conn) == incremental

    async def test_rewatch_counts_a_watch_not_a_user(self, conn: asyncpg.Connection) -> None:
        await apply(conn, watches("u1", "ab"))
        before = await pairs(conn)
        await apply(conn, [ev(9, "u1", "a")])
        row = await conn.fetchrow(
            "SELECT watch_count, user_count FROM item_popularity WHERE item_id = 'a'"
        )
        assert row is not None
        assert (row["watch_count"], row["user_count"]) == (2, 1)
        assert await pairs(conn) == before

    async def test_empty_batch_is_a_no_op(self, conn: asyncpg.Connection) -> None:
        await apply(conn, [])
        assert await conn.fetchval("SELECT count(*) FROM user_history") == 0

    async def test_concurrent_batches_neither_deadlock_nor_lose_updates(
        self, conn: asyncpg.Connection, database_url: str
    ) -> None:
        """Two connections applying overlapping keys at once: every increment lands."""
        other = await asyncpg.connect(database_url)
        try:
            batches = [[e for k in range(8) for e in watches(f"u{k}{w}", "abcdefghij"[k:] + "abc")]
                       for w in range(2)]  # fmt: skip
            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(apply, conn, batches[0])
                    tg.start_soon(apply, other, batches[1])
        finally:
            await other.close()
        watched = sum(len(b) for b in batches)
        assert await conn.fetchval("SELECT sum(watch_count) FROM item_popularity") == watched
        assert await conn.fetchval("SELECT sum(watch_count) FROM user_history") == watched


@pytest.fixture
async def recommender(settings: Settings, conn: asyncpg.Connection) -> AsyncIterator[Recommender]:
    settings = evolve(settings, recs_cache_ttl=0.0)  # always re-sync: tests see writes
    database = Database(settings.database, Readiness(), migrate=settings.should_migrate_on_start)
    await database.open()
    try:
        yield Recommender(database, settings.engine)
    finally:
        await database.aclose()


def ids(found: object) -> list[str]:
    return [s.item_id for s in found.items]  # type: ignore[attr-defined]


class TestRecommender:
    async def test_cold_user_gets_trending_to_the_limit(
        self, recommender: Recommender, conn: asyncpg.Connection
    ) -> None:
        await apply(conn, watches("u1", "abc"))
        found = await recommender.for_user("nobody", limit=5)
        assert len(found.items) == 5
        assert {s.reason.type for s in found.items} == {"trending"}

    async def test_reflects_a_watch_at_once(
        self, recommender: Recommender, conn: asyncpg.Connection
    ) -> None:
        """Read-after-write: the next list drops the watched item and explains by it."""
        await apply(conn, watches("u1", "abcd") + watches("u2", "ef", 10))
        await recommender.for_user("u3", limit=3)  # warm the caches
        await apply(conn, [ev(20, "u3", "a")])
        found = await recommender.for_user("u3", limit=3)
        assert "a" not in ids(found)
        assert ids(found)[0] == "b"
        assert found.items[0].reason.type == "because_you_watched"
        assert found.items[0].reason.item_id == "a"

    async def test_never_watched_or_inactive_and_honours_filters(
        self, recommender: Recommender, conn: asyncpg.Connection
    ) -> None:
        await apply(conn, watches("u1", "abcdefghij") + watches("u2", "ab", 20))
        await recommender.for_user("u2", limit=3)  # warm the caches
        await conn.execute("UPDATE items SET active = false WHERE item_id = 'c'")
        found = await recommender.for_user("u2", limit=20, exclude=frozenset({"d"}))
        assert set(ids(found)) == set("efghij")
        comedies = await recommender.for_user("u2", limit=20, genres=["Comedy"])
        assert ids(comedies) == ["e", "i"]

    async def test_deterministic_for_the_same_state(
        self, recommender: Recommender, conn: asyncpg.Connection
    ) -> None:
        await apply(conn, watches("u1", "abcdef") + watches("u2", "fbd", 10))
        first = await recommender.for_user("u2", limit=10)
        assert await recommender.for_user("u2", limit=10) == first

    async def test_similar_and_popular(
        self, recommender: Recommender, conn: asyncpg.Connection
    ) -> None:
        await apply(conn, watches("u1", "abc") + watches("u2", "ab", 10))
        similar = await recommender.similar("a", limit=5)
        assert similar is not None
        assert ids(similar) == ["b", "c"]
        assert await recommender.similar("nope", limit=5) is None
        popular = await recommender.popular(limit=2)
        assert ids(popular) == ["a", "b"]


class TestModelCache:
    async def test_lists_are_kept_until_their_item_changes(
        self, recommender: Recommender, conn: asyncpg.Connection
    ) -> None:
        """A cached neighbour list survives syncs until the item's changed_at moves.

        Both stamps count: item_popularity's (the consumer's) and
        item_neighbour_changes' (the folder's).
        """
        await apply(conn, watches("u1", "abc"))
        await apply(conn, [ev(10, "u2", "a")])
        # Age the stamps past the sync's overlap window (for late commits).
        for table in ("item_popularity", "item_neighbour_changes"):
            await conn.execute(f"UPDATE {table} SET changed_at = changed_at - interval '1h'")
        assert ids(await recommender.for_user("u2", limit=2)) == ["b", "c"]
        # Reverse the weights behind the cache's back: no changed_at stamp.
        await conn.execute("UPDATE item_cooccurrence SET weight = 10 - weight")
        assert ids(await recommender.for_user("u2", limit=2)) == ["b", "c"]
        await conn.execute("UPDATE item_neighbour_changes SET changed_at = clock_timestamp()")
        assert ids(await recommender.for_user("u2", limit=2)) == ["c", "b"]
        await conn.execute("UPDATE item_cooccurrence SET weight = 10 - weight")
        await conn.execute("UPDATE item_popularity SET changed_at = clock_timestamp()")
        assert ids(await recommender.for_user("u2", limit=2)) == ["b", "c"]


NOW = dt.datetime.now(dt.UTC)
YEAR = dt.timedelta(seconds=aggregates.PAIR_TAU_SECONDS)  # a "year" of decay: one tau


def pair_of(user: str, first: str, second: str, when: dt.datetime) -> list[WatchEvent]:
    return [WatchEvent(f"{user}-1", user, first, when),
            WatchEvent(f"{user}-2", user, second, when + dt.timedelta(seconds=1))]  # fmt: skip


class TestDecayAndPrune:
    async def test_an_old_pair_weighs_less_by_the_decay_factor(
        self, recommender: Recommender, conn: asyncpg.Connection
    ) -> None:
        """One watch pair each, a year apart: similar() reads today's units, and the older
        scores exp(-1) of the newer (both neighbours have one user, the seed two)."""
        await apply(conn, pair_of("u1", "a", "b", NOW - 2 * YEAR))
        await apply(conn, pair_of("u2", "a", "c", NOW - YEAR))
        similar = await recommender.similar("a", limit=5)
        assert similar is not None
        scores = {s.item_id: s.score for s in similar.items}
        assert scores["b"] / scores["c"] == pytest.approx(math.exp(-1), rel=1e-6)
        # rel 1e-3: NOW is the module's import, the test may run minutes later (2e-6 a minute)
        assert scores["c"] == pytest.approx(math.exp(-1) / math.sqrt(2), rel=1e-3)

    async def test_pruned_pairs_leave_the_cached_lists(
        self, recommender: Recommender, conn: asyncpg.Connection
    ) -> None:
        """The prune stamps both ends: the cache drops the list, the next one lacks the pair."""
        await apply(conn, pair_of("u1", "a", "b", NOW - 3 * YEAR))
        await apply(conn, pair_of("u2", "a", "c", NOW))
        await age_model_stamps(conn)
        before = await recommender.similar("a", limit=5)
        assert before is not None
        assert ids(before) == ["c", "b"]
        async with conn.transaction():
            below = folding.prune_below(0.1, await queries.prune_instant(conn))
            assert await folding.prune(conn, below=below, statement_timeout=30) == 1
        after = await recommender.similar("a", limit=5)
        assert after is not None
        assert ids(after) == ["c"]

    async def test_a_replay_of_old_watches_prunes_at_its_latest_watch(
        self, conn: asyncpg.Connection
    ) -> None:
        """1997's ratings replayed today: pruning reads "now" as the last watch, not the
        clock, so the replay keeps its pairs (and prunes as it would have then)."""
        then = dt.datetime(1997, 9, 20, tzinfo=dt.UTC)
        await apply(conn, pair_of("u1", "a", "b", then))
        async with conn.transaction():
            instant = await queries.prune_instant(conn)
            assert instant == then + dt.timedelta(seconds=1)
            below = folding.prune_below(0.1, instant)
            assert await folding.prune(conn, below=below, statement_timeout=30) == 0


async def age_model_stamps(conn: asyncpg.Connection) -> None:
    """Age the stamps past the model sync's overlap window (for late commits)."""
    for table in ("item_popularity", "item_neighbour_changes"):
        await conn.execute(f"UPDATE {table} SET changed_at = changed_at - interval '1h'")


class TestListCache:
    """Scored lists are served again only while nothing they rest on changed."""

    async def test_an_unchanged_user_gets_the_kept_list(
        self, recommender: Recommender, conn: asyncpg.Connection
    ) -> None:
        await apply(conn, watches("u1", "abcd") + watches("u2", "ab", 10))
        await age_model_stamps(conn)
        first = await recommender.for_user("u2", limit=3)
        assert await recommender.for_user("u2", limit=3) == first
        assert (recommender.lists.hits, recommender.lists.misses) == (1, 1)
        await recommender.for_user("u2", limit=2)  # another request shape: scored
        assert recommender.lists.misses == 2

    async def test_any_write_of_the_history_moves_the_stamp(
        self, recommender: Recommender, conn: asyncpg.Connection
    ) -> None:
        """Even a write that bypasses apply_events (the trigger stamps every statement)."""
        await apply(conn, watches("u1", "abcd") + watches("u2", "a", 10))
        assert "b" in ids(await recommender.for_user("u2", limit=3))
        await conn.execute(
            "INSERT INTO user_history (user_id, item_id, first_watched_at, last_watched_at)"
            " VALUES ('u2', 'b', now(), now())"
        )
        assert "b" not in ids(await recommender.for_user("u2", limit=3))
        await conn.execute("DELETE FROM user_history WHERE user_id = 'u2' AND item_id = 'b'")
        assert "b" in ids(await recommender.for_user("u2", limit=3))
        assert recommender.lists.hits == 0

    async def test_a_seed_change_or_a_deactivation_rescores(
        self, recommender: Recommender, conn: asyncpg.Connection
    ) -> None:
        await apply(conn, watches("u1", "abc"))
        await apply(conn, [ev(10, "u2", "a")])
        await age_model_stamps(conn)
        assert ids(await recommender.for_user("u2", limit=2)) == ["b", "c"]
        await conn.execute("UPDATE item_cooccurrence SET weight = 10 - weight")
        assert ids(await recommender.for_user("u2", limit=2)) == ["b", "c"]  # kept
        assert recommender.lists.hits == 1
        await conn.execute(
            "UPDATE item_neighbour_changes SET changed_at = clock_timestamp() WHERE item_id = 'a'"
        )
        assert ids(await recommender.for_user("u2", limit=2)) == ["c", "b"]  # the seed moved
        await conn.execute("UPDATE items SET active = false WHERE item_id = 'c'")
        assert "c" not in ids(await recommender.for_user("u2", limit=2))

    async def test_the_kept_lists_are_bounded(
        self, settings: Settings, conn: asyncpg.Connection
    ) -> None:
        await apply(conn, watches("u1", "abcd"))
        await age_model_stamps(conn)
        settings = evolve(settings, recs_list_cache_size=2)
        database = Database(
            settings.database, Readiness(), migrate=settings.should_migrate_on_start
        )
        await database.open()
        try:
            recommender = Recommender(database, settings.engine)
            for user in ("x", "y", "x", "z", "x", "y"):
                await recommender.for_user(user, limit=3)
        finally:
            await database.aclose()
        assert len(recommender.lists) == 2
        # x kept (used again before z came), y evicted by z, then z by y.
        assert (recommender.lists.hits, recommender.lists.misses) == (2, 4)
