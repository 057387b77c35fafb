"""The watch-event consumer against the real broker and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from reco.consumer import component
from reco.db.pool import Database
from reco.engine import ingest
from reco.observability import metrics
from reco.observability.readiness import Readiness
from reco.settings import Settings
from tests.conftest import Topics
from tests.integration.consumer_harness import (
    Store,
    applied,
    encode,
    event,
    fast,
    producer,
    read_topic,
    running_consumer,
    send,
    wait_until,
)
from tests.support.components import request_stop, start
from tests.support.service import running_service

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.integration,
]


async def _owns_every_partition() -> bool:
    """The one consumer owns all 4 partitions the broker creates, and says so."""
    owned = metrics.consumer_assigned_partitions.values.get({}, 0)
    return bool(owned == metrics.consumer_topic_partitions.values.get({}, -1) == 4)


class TestDelivery:
    async def test_events_land_once(self, kafka_settings: Settings, topics: Topics) -> None:
        """Every produced event is stored and applied exactly once."""
        settings = fast(kafka_settings)
        store = Store(settings.database_url)
        async with producer(settings.kafka_bootstrap) as client, running_consumer(settings) as run:
            await send(client, topics.watch_events, [event(n) for n in range(200)])
            await wait_until(lambda: store.has(200))
            await wait_until(_ready(run.readiness))
            await wait_until(_owns_every_partition)
        assert await store.ids() == sorted(f"e{n}" for n in range(200))
        assert await applied(store) == 200

    async def test_repeats_count_once(self, kafka_settings: Settings, topics: Topics) -> None:
        """The same event three times in one batch, then again in later batches, counts once."""
        settings = fast(kafka_settings)
        store = Store(settings.database_url)
        async with producer(settings.kafka_bootstrap) as client, running_consumer(settings):
            await send(client, topics.watch_events, [event(1)] * 3)
            await wait_until(lambda: store.has(1))
            await send(client, topics.watch_events, [event(1), event(2)])
            await send(client, topics.watch_events, [event(1), event(3)])
            await wait_until(lambda: store.has(3))
        assert await store.ids() == ["e1", "e2", "e3"]
        assert await applied(store) == 3

    async def test_restart_mid_stream(self, kafka_settings: Settings, topics: Topics) -> None:
        """Stopping and restarting the consumer while events flow loses and doubles nothing."""
        settings = fast(kafka_settings, consumer_batch_max=20)
        store = Store(settings.database_url)
        async with producer(settings.kafka_bootstrap) as client:
            async with anyio.create_task_group() as tg:
                tg.start_soon(_trickle, client, topics.watch_events, 300)
                async with running_consumer(settings):
                    await wait_until(lambda: store.has(100))
            async with running_consumer(settings):
                await wait_until(lambda: store.has(300))
        assert await store.count() == 300
        assert await applied(store) == 300


class TestDeadLetters:
    async def test_each_malformed_kind(self, kafka_settings: Settings, topics: Topics) -> None:
        """Each kind of malformed record reaches the DLQ with its reason; good ones are stored."""
        settings = fast(kafka_settings, consumer_max_message_bytes=2048)
        store = Store(settings.database_url)
        bad = {
            "not_utf8": b'{"event_id": "\xff\xfe"}', "not_json": b'{"event_id": ',
            "oversized": json.dumps({**event(90), "pad": "x" * 4096}).encode(),
            "invalid_event": json.dumps({**event(91), "watched_seconds": "long"}).encode(),
        }  # fmt: skip
        missing = json.dumps({k: v for k, v in event(92).items() if k != "user_id"}).encode()
        values = [encode(event(1)), *bad.values(), encode(event(2)), missing, encode(event(3))]
        async with producer(settings.kafka_bootstrap) as client, running_consumer(settings):
            await send(client, topics.watch_events, values, key=b"same-partition")
            await wait_until(lambda: store.has(3))
            records = await read_topic(settings.kafka_bootstrap, topics.dead_letter, 5)
        assert await store.ids() == ["e1", "e2", "e3"]
        by_reason = {_header(r, "reason"): r for r in records}
        assert set(by_reason) == {*bad, "invalid_event"}
        for reason, value in bad.items():
            record = by_reason[reason] if reason != "invalid_event" else None
            if record is not None:
                assert (record.key, record.value) == (b"same-partition", value)
                assert _header(record, "topic") == topics.watch_events
        details = sorted(
            _header(r, "detail") for r in records if _header(r, "reason") == "invalid_event"
        )
        assert any("user_id" in d for d in details)
        assert any("watched_seconds" in d for d in details)
        offsets = sorted(int(_header(r, "offset")) for r in records)
        assert offsets == [1, 2, 3, 4, 6]


class TestGroup:
    async def test_two_consumers_share(self, kafka_settings: Settings, topics: Topics) -> None:
        """A second consumer joining mid-stream takes partitions over; the totals are exact."""
        settings = fast(kafka_settings, consumer_batch_max=50)
        store = Store(settings.database_url)
        async with (
            producer(settings.kafka_bootstrap) as client,
            running_consumer(settings) as one,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(_trickle, client, topics.watch_events, 800, "u")
            await wait_until(lambda: store.has(100))
            assert len(_assigned(one.consumer)) == 4
            async with running_consumer(settings) as two:
                await wait_until(lambda: _both_assigned(one.consumer, two.consumer))
                await wait_until(lambda: store.has(800))
                parts = [_assigned(one.consumer), _assigned(two.consumer)]
        assert parts[0]
        assert parts[1]
        assert not parts[0] & parts[1]
        assert await store.count() == 800
        assert await applied(store) == 800


class TestReadiness:
    async def test_stuck_consumer_fails_readiness(
        self, kafka_settings: Settings, topics: Topics
    ) -> None:
        """Lag above zero with no progress beyond consumer_stuck_after fails kafka_consumer."""
        settings = fast(kafka_settings, consumer_stuck_after=0.3, consumer_drain_timeout=0.5)
        release = anyio.Event()

        async def stall(conn: Any, events: Any) -> None:
            await release.wait()
            await ingest.apply_events(conn, events)

        async with (
            producer(settings.kafka_bootstrap) as client,
            running_consumer(settings, apply=stall) as run,
        ):
            await wait_until(_ready(run.readiness))
            await send(client, topics.watch_events, [event(n) for n in range(10)])
            await wait_until(_not_ready(run.readiness))
            state = run.readiness.get(component.CHECK)
            release.set()
            await wait_until(_ready(run.readiness))
        assert state is not None
        assert "no progress" in state.detail
        assert state.data["lag"] > 0


class TestService:
    async def test_wired_into_the_service(self, kafka_settings: Settings, topics: Topics) -> None:
        """The service runs the consumer: events land and /readyz lists kafka_consumer as ok."""
        settings = fast(kafka_settings)
        store = Store(settings.database_url)
        async with (
            producer(settings.kafka_bootstrap) as client,
            running_service(settings) as svc,
            httpx.AsyncClient(base_url=svc.base_url) as http,
        ):
            await send(client, topics.watch_events, [event(n) for n in range(20)])
            await wait_until(lambda: store.has(20))
            await wait_until(_ready(svc.state.readiness))
            response = await http.get("/readyz")
        assert response.json()["checks"][component.CHECK]["status"] == "ok"
        assert await applied(store) == 20


class TestCancellation:
    async def test_cancel_mid_batch(self, kafka_settings: Settings, topics: Topics) -> None:
        """Cancelled inside a batch's transaction, it exits promptly; nothing stored or committed."""
        settings = fast(kafka_settings)
        store = Store(settings.database_url)
        entered = anyio.Event()

        async def hang(conn: Any, events: Any) -> None:
            await ingest.apply_events(conn, events)
            entered.set()
            await anyio.sleep_forever()

        readiness = Readiness()
        database = Database(settings, readiness)
        async with producer(settings.kafka_bootstrap) as client, anyio.create_task_group() as outer:
            await start(outer, database)
            await send(client, topics.watch_events, [event(n) for n in range(20)])
            async with anyio.create_task_group() as tg:
                await start(
                    tg, component.WatchEventConsumer(settings, readiness, database, apply=hang)
                )
                with anyio.fail_after(20):
                    await entered.wait()
                began = anyio.current_time()
                tg.cancel_scope.cancel()
            elapsed = anyio.current_time() - began
            request_stop(database)
        assert elapsed < 5
        assert await store.count() == 0
        assert await applied(store) == 0
        assert await _committed(settings) == {}


class TestGracefulStop:
    async def test_hung_batch_is_abandoned_at_the_drain_bound(
        self, kafka_settings: Settings, topics: Topics
    ) -> None:
        """A stop with a batch that cannot finish returns after the work part of the budget,
        and commits nothing."""
        settings = fast(kafka_settings)
        store = Store(settings.database_url)
        entered = anyio.Event()

        async def hang(conn: Any, events: Any) -> None:
            entered.set()
            await anyio.sleep_forever()

        async with producer(settings.kafka_bootstrap) as client:
            await send(client, topics.watch_events, [event(n) for n in range(20)])
            async with running_consumer(settings, stop_budget=0.6, apply=hang):
                with anyio.fail_after(20):
                    await entered.wait()
                began = anyio.current_time()
            elapsed = anyio.current_time() - began
        assert elapsed < 3
        assert await store.count() == 0
        assert await _committed(settings) == {}


async def _trickle(client: Any, topic: str, total: int, user: str | None = None) -> None:
    """Produce ``total`` events in small steps (distinct users when ``user`` is a prefix)."""
    for first in range(0, total, 10):
        chunk = range(first, first + 10)
        await send(client, topic, [event(n, user=f"{user}{n}" if user else None) for n in chunk])
        await anyio.sleep(0.02)


def _ready(readiness: Readiness) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        state = readiness.get(component.CHECK)
        return bool(state and state.ok)

    return check


def _not_ready(readiness: Readiness) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        state = readiness.get(component.CHECK)
        return bool(state and not state.ok)

    return check


def _header(record: Any, name: str) -> str:
    value: bytes = dict(record.headers)[f"reco.dlq.{name}"]
    return value.decode()


def _assigned(consumer: component.WatchEventConsumer) -> set[int]:
    client = consumer._consumer  # the test looks inside: which partitions does it own?
    return {tp.partition for tp in client.assignment()} if client else set()


async def _both_assigned(a: component.WatchEventConsumer, b: component.WatchEventConsumer) -> bool:
    return bool(_assigned(a)) and bool(_assigned(b))


async def _committed(settings: Settings) -> dict[int, int]:
    client = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=settings.consumer_group
    )
    await client.start()
    try:
        out = {}
        for p in range(4):
            offset = await client.committed(TopicPartition(settings.watch_events_topic, p))
            if offset is not None:
                out[p] = offset
        return out
    finally:
        await client.stop()
