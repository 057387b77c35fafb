"""What the database refuses, and ids re-used for another watch, never stop a partition.

The poison is real: a CHECK constraint added to the test's own database makes
PostgreSQL refuse one item id (SQLSTATE 23514), as it would refuse any value
our validation did not foresee. The real engine writes the aggregates.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import asyncpg
import pytest

from reco.engine.ingest import store_batch
from reco.events import WatchEvent
from reco.observability import metrics
from reco.settings import Settings
from tests.conftest import Topics
from tests.integration.consumer_harness import (
    Store,
    event,
    fast,
    producer,
    read_topic,
    running_consumer,
    send,
    wait_until,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

POISON = "poison-item"


async def _refuse(url: str, item_id: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            f"ALTER TABLE watch_events ADD CONSTRAINT refuse_item CHECK (item_id <> '{item_id}')"
        )
    finally:
        await conn.close()


def _outcome(name: str) -> float:
    value: float = metrics.consumer_messages.values.get({"outcome": name}, 0.0)
    return value


def _headers(record: Any) -> dict[str, str]:
    return {k: v.decode() for k, v in record.headers}


def _watch(n: int, item: str) -> WatchEvent:
    at = dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=n)
    return WatchEvent(f"e{n}", f"u{n % 5}", item, at)


class TestStoreBatch:
    async def test_isolates_refused_events(self, database_url: str) -> None:
        """Three poison events among 200: the 197 others are stored, the three named."""
        await _refuse(database_url, POISON)
        events = [_watch(n, POISON if n in (3, 100, 199) else f"i{n % 13}") for n in range(200)]
        conn = await asyncpg.connect(database_url)
        try:
            async with conn.transaction():
                stored = await store_batch(conn, events)
            count = await conn.fetchval("SELECT count(*) FROM watch_events")
            watched = await conn.fetchval("SELECT sum(watch_count) FROM item_popularity")
        finally:
            await conn.close()
        assert sorted(e.event_id for e, _ in stored.unprocessable) == ["e100", "e199", "e3"]
        assert {error.sqlstate for _, error in stored.unprocessable} == {"23514"}
        assert len(stored.new_ids) == count == watched == 197

    async def test_reports_conflicting_repeats(self, database_url: str) -> None:
        """A stored id sent again for another item is a conflict; the stored row stays."""
        conn = await asyncpg.connect(database_url)
        try:
            async with conn.transaction():
                await store_batch(conn, [_watch(1, "a"), _watch(2, "b")])
            async with conn.transaction():
                stored = await store_batch(conn, [_watch(1, "a"), _watch(2, "other")])
            item = await conn.fetchval("SELECT item_id FROM watch_events WHERE event_id = 'e2'")
        finally:
            await conn.close()
        assert stored.new_ids == ()
        assert [(e.event_id, first[1]) for e, first in stored.conflicts] == [("e2", "b")]
        assert item == "b"


class TestConsumer:
    async def test_poison_is_dead_lettered_and_the_rest_stored(
        self, kafka_settings: Settings, topics: Topics
    ) -> None:
        settings = fast(kafka_settings)
        await _refuse(settings.database.url, POISON)
        store = Store(settings.database.url)
        before = _outcome("unprocessable")
        values = [event(n) for n in range(50)]
        values[20] = event(20, item=POISON)
        async with producer(settings.kafka.bootstrap) as client, running_consumer(settings):
            await send(client, topics.watch_events, values)
            await wait_until(lambda: store.has(49))
            await send(client, topics.watch_events, [event(1000)])  # the partition moves on
            await wait_until(lambda: store.has(50))
            dead = await read_topic(settings.kafka.bootstrap, topics.dead_letter, 1)
        assert "e20" not in await store.ids()
        headers = _headers(dead[0])
        assert headers["reco.dlq.reason"] == "unprocessable"
        assert "23514" in headers["reco.dlq.detail"]
        assert _outcome("unprocessable") - before >= 1  # at least once: a rebalance redelivers

    async def test_conflicting_duplicate(self, kafka_settings: Settings, topics: Topics) -> None:
        """Same event_id, another item: counted as a conflict, dead-lettered, first kept."""
        settings = fast(kafka_settings)
        store = Store(settings.database.url)
        before = _outcome("conflict")
        async with producer(settings.kafka.bootstrap) as client, running_consumer(settings):
            await send(client, topics.watch_events, [event(1, item="first")])
            await wait_until(lambda: store.has(1))
            await send(client, topics.watch_events, [event(1, item="second"), event(2)])
            await wait_until(lambda: store.has(2))
            dead = await read_topic(settings.kafka.bootstrap, topics.dead_letter, 1)
        kept = await store.fetchval("SELECT item_id FROM watch_events WHERE event_id = 'e1'")
        assert kept == "first"
        assert _headers(dead[0])["reco.dlq.reason"] == "conflicting_duplicate"
        assert _outcome("conflict") - before >= 1  # at least once: a rebalance redelivers
