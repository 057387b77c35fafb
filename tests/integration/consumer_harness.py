"""Helpers for the consumer's integration tests: run it, produce to it, read what it stored."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import asyncpg
import attrs
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from reco.consumer.component import WatchEventConsumer
from reco.db.pool import Database
from reco.engine.ingest import Apply
from reco.observability.readiness import Readiness
from reco.settings import Settings
from tests.support.components import DEFAULT_BUDGET, request_stop, start
from tests.support.components import run as run_component

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def fast(settings: Settings, **changes: Any) -> Settings:
    """Tiny intervals so that tests wait on conditions, not on timers."""
    defaults: dict[str, Any] = {
        "consumer_batch_wait": 0.05, "consumer_lag_interval": 0.1,
        "consumer_heartbeat_interval": 0.1, "consumer_session_timeout": 6.0,
        "consumer_drain_timeout": 3.0, "consumer_batch_timeout": 2.0,
        "kafka_retry_initial": 0.02, "kafka_retry_max": 0.2,
    }  # fmt: skip
    return attrs.evolve(settings, **{**defaults, **changes})


def event(n: int, *, user: str | None = None, item: str | None = None) -> dict[str, Any]:
    return {
        "event_id": f"e{n}", "user_id": user or f"u{n % 7}", "item_id": item or f"i{n % 11}",
        "occurred_at": (T0 + dt.timedelta(seconds=n)).isoformat(), "watched_seconds": 1.5,
        "completed": n % 2 == 0,
    }  # fmt: skip


def encode(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode()


@asynccontextmanager
async def producer(bootstrap: str) -> AsyncIterator[AIOKafkaProducer]:
    client = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False)
    try:
        await client.start()
        yield client
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            await client.stop()


async def send(client: AIOKafkaProducer, topic: str, values: Sequence[bytes | dict[str, Any]],
               *, key: bytes | None = b"k") -> None:  # fmt: skip
    """Produce ``values`` (dicts are JSON-encoded and keyed by user) and wait for the acks."""
    futures = []
    for value in values:
        if isinstance(value, dict):
            futures.append(await client.send(topic, encode(value), key=value["user_id"].encode()))
        else:
            futures.append(await client.send(topic, value, key=key))
    for future in futures:
        await future


WAIT = 20.0  # seconds any one condition may take before the test fails


async def wait_until(check: Callable[[], Awaitable[bool]]) -> None:
    """Poll ``check`` until it is true, failing after :data:`WAIT` seconds."""
    with anyio.fail_after(WAIT):
        while not await check():  # noqa: ASYNC110 - the condition lives in another process
            await anyio.sleep(0.05)


@attrs.define
class Store:
    """Reads what the consumer stored, on its own connection."""

    url: str

    async def fetchval(self, sql: str) -> Any:
        conn = await asyncpg.connect(self.url)
        try:
            return await conn.fetchval(sql)
        finally:
            await conn.close()

    async def count(self) -> int:
        value: int = await self.fetchval("SELECT count(*) FROM watch_events")
        return value

    async def ids(self) -> list[str]:
        value: list[str] = await self.fetchval(
            "SELECT coalesce(array_agg(event_id ORDER BY event_id), '{}') FROM watch_events"
        )
        return value

    async def has(self, n: int) -> bool:
        return await self.count() >= n


@attrs.define
class Running:
    consumer: WatchEventConsumer
    readiness: Readiness
    database: Database


@asynccontextmanager
async def running_consumer(
    settings: Settings, *, stop_budget: float = DEFAULT_BUDGET, apply: Apply | None = None
) -> AsyncIterator[Running]:
    """The database and consumer components, stopped gracefully (consumer first) on exit."""
    readiness = Readiness()
    database = Database(settings, readiness)
    consumer = WatchEventConsumer(settings, readiness, database, apply=apply)
    done = anyio.Event()

    async def _consume(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        try:
            await run_component(consumer, task_status=task_status)
        finally:
            done.set()

    async with anyio.create_task_group() as tg:
        await start(tg, database)
        await tg.start(_consume)
        try:
            yield Running(consumer, readiness, database)
        finally:
            request_stop(consumer, stop_budget)
            with anyio.CancelScope(shield=True), anyio.move_on_after(15):
                await done.wait()
            request_stop(database)


async def read_topic(bootstrap: str, topic: str, count: int) -> list[Any]:
    """The first ``count`` records of ``topic`` (every partition, from the start)."""
    client = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=f"reader-{topic}",
        auto_offset_reset="earliest", enable_auto_commit=False,
    )  # fmt: skip
    await client.start()
    records: list[Any] = []
    try:
        with anyio.fail_after(WAIT):
            while len(records) < count:
                batch = await client.getmany(timeout_ms=100)
                for items in batch.values():
                    records.extend(items)
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            await client.stop()
    return records


async def applied(store: Store) -> int:
    """How many event applications the aggregates saw: the engine's apply_events adds one
    to ``item_popularity.watch_count`` per event, in the batch's transaction, so the sum
    equals the stored events exactly when every event was applied exactly once."""
    value: int = await store.fetchval("SELECT coalesce(sum(watch_count), 0) FROM item_popularity")
    return value
