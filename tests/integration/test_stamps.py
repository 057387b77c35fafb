"""The stamp watch (reco/engine/stamps.py): kept lists without a stamp read, exact across instances.

Two Recommenders on one PostgreSQL, each with its own watch, stand for two
instances: a watch committed through one instance's write path shows in the
other's next list, and a lost listener falls back to reading the stamp.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator

import anyio
import asyncpg
import pytest

from reco.db.pool import Database
from reco.engine.recommender import Recommender
from reco.engine.stamps import PING_DEAD, StampWatch
from reco.lifecycle import Stop
from reco.observability.readiness import Readiness
from reco.settings import Settings, evolve
from tests.integration.test_engine import age_model_stamps, apply, conn, ids, watches

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

__all__ = ["conn"]  # the fixture, shared with test_engine.py


@pytest.fixture
async def instances(
    settings: Settings, conn: asyncpg.Connection
) -> AsyncIterator[tuple[Recommender, Recommender]]:
    """Two instances' recommenders (model data synced once a minute), each with its watch."""
    settings = evolve(settings, recs_cache_ttl=60.0)
    database = Database(settings.database, Readiness(), migrate=settings.should_migrate_on_start)
    await database.open()
    stop = Stop()
    try:
        async with anyio.create_task_group() as tg:
            found = []
            for _ in range(2):
                recommender = Recommender(database, settings.engine)
                recommender.stamps = StampWatch(settings.database, recommender.lists.forget)
                await tg.start(functools.partial(recommender.stamps.run, stop=stop))
                found.append(recommender)
            await wait_current(*found)
            yield found[0], found[1]
            stop.request(1.0)
    finally:
        await database.aclose()


async def wait_current(*recommenders: Recommender) -> None:
    with anyio.fail_after(10):
        for r in recommenders:
            assert r.stamps is not None
            while not r.stamps.current(r.stamps.epoch):  # noqa: ASYNC110 - a poll of the watch's state
                await anyio.sleep(0.01)


async def shows_within_a_second(recommender: Recommender, user: str, item: str) -> None:
    with anyio.fail_after(1.0):
        while item in ids(await recommender.for_user(user, limit=5)):  # noqa: ASYNC110 - the read path
            await anyio.sleep(0.005)


class TestStampWatch:
    async def test_a_kept_list_is_served_without_a_stamp_read(
        self, instances: tuple[Recommender, Recommender], conn: asyncpg.Connection
    ) -> None:
        _, b = instances
        await apply(conn, watches("u1", "abcd") + watches("u2", "a", 10))
        await age_model_stamps(conn)
        first = await b.for_user("u2", limit=3)  # scored, the stamp read vouches
        for _ in range(3):
            assert await b.for_user("u2", limit=3) == first
        assert (b.lists.misses, b.lists.hits, b.lists.unread) == (1, 3, 3)

    async def test_a_watch_through_another_instance_shows_in_the_next_list(
        self, instances: tuple[Recommender, Recommender], conn: asyncpg.Connection
    ) -> None:
        a, b = instances
        await apply(conn, watches("u1", "abcd") + watches("u2", "a", 10))
        await age_model_stamps(conn)
        for r in (a, b):
            assert "b" in ids(await r.for_user("u2", limit=5))
            assert "b" in ids(await r.for_user("u2", limit=5))  # kept, unread
            assert r.lists.unread == 1
        await apply(conn, watches("u2", "b", 20))  # apply_events: the consumer's write path
        await shows_within_a_second(b, "u2", "b")
        await shows_within_a_second(a, "u2", "b")

    async def test_a_lost_listener_falls_back_to_the_stamp_read(
        self, instances: tuple[Recommender, Recommender], conn: asyncpg.Connection
    ) -> None:
        _, b = instances
        assert b.stamps is not None
        await apply(conn, watches("u1", "abcd") + watches("u2", "a", 10))
        await age_model_stamps(conn)
        await b.for_user("u2", limit=5)
        epoch = b.stamps.epoch
        await conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE application_name = 'reco-stamps'"
        )
        with anyio.fail_after(PING_DEAD + 1):
            while b.stamps.current(epoch):  # noqa: ASYNC110 - a poll of the watch's state
                await anyio.sleep(0.01)
        # A direct write, no notification: only the stamp read can see it.
        await conn.execute(
            "INSERT INTO user_history (user_id, item_id, first_watched_at, last_watched_at)"
            " VALUES ('u2', 'b', now(), now())"
        )
        assert "b" not in ids(await b.for_user("u2", limit=5))
        await wait_current(b)  # reconnected: a new epoch
        assert b.stamps.epoch > epoch
        assert "b" not in ids(await b.for_user("u2", limit=5))
