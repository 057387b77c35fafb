"""Helpers shared by the outbox, relay and impression tests (no fixtures here)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import asyncpg
import attrs
from aiokafka import AIOKafkaConsumer, TopicPartition

from reco.db.pool import Database, connect
from reco.observability.readiness import Readiness
from reco.outbox import queries
from reco.settings import Settings
from tests.support.components import request_stop, start


def relay_settings(settings: Settings, bootstrap: str) -> Settings:
    """Small intervals so that the tests never wait long."""
    return attrs.evolve(
        settings, kafka_bootstrap=bootstrap, relay_enabled=True, relay_poll_interval=0.05,
        relay_leader_retry=0.1, relay_publish_timeout=5.0, relay_stop_timeout=2.0,
        outbox_check_interval=0.05, kafka_retry_initial=0.05, kafka_retry_max=0.3,
        kafka_request_timeout=3.0, db_health_timeout=1.0,
    )  # fmt: skip


async def wait_for(predicate: Callable[[], Awaitable[bool]], deadline: float = 15.0) -> None:
    """Poll ``predicate`` until true, failing after ``deadline`` seconds."""
    with anyio.fail_after(deadline):
        while not await predicate():  # noqa: ASYNC110 - state lives in PostgreSQL; poll it
            await anyio.sleep(0.02)


@asynccontextmanager
async def running_database(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings, Readiness())
    async with anyio.create_task_group() as tg:
        await start(tg, database)
        try:
            yield database
        finally:
            request_stop(database)


@asynccontextmanager
async def dedicated(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    conn = await connect(settings, "reco-test")
    try:
        yield conn
    finally:
        await conn.close()


def rows_for(topic: str, keys: list[str], per_key: int, prefix: str = "e") -> list[queries.NewRow]:
    """Rows interleaved across keys; event ids say key and sequence number."""
    return [
        queries.NewRow(topic, key, f"{prefix}-{key}-{n:05d}", "test", f'{{"n": {n}}}')
        for n in range(per_key)
        for key in keys
    ]


async def enqueue(settings: Settings, rows: list[queries.NewRow]) -> None:
    async with dedicated(settings) as conn, conn.transaction():
        await queries.enqueue(conn, rows)


async def unpublished(settings: Settings) -> int:
    async with dedicated(settings) as conn:
        return int(await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL"))


async def read_topic(
    bootstrap: str, topic: str, expected: int, deadline: float = 15.0
) -> list[tuple[str, str, dict[str, bytes]]]:
    """(key, event_id header, headers) of the first ``expected`` messages (or more),
    read by a fresh consumer from the earliest offset, in partition order."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    out: list[tuple[str, str, dict[str, bytes]]] = []
    try:
        with anyio.fail_after(deadline):
            partitions = None
            while not partitions:
                await consumer.topics()  # refreshes the metadata
                partitions = consumer.partitions_for_topic(topic)
            consumer.assign([TopicPartition(topic, p) for p in partitions])
            await consumer.seek_to_beginning()
            while len(out) < expected:
                out += _decoded(await consumer.getmany(timeout_ms=200))
            out += _decoded(await consumer.getmany(timeout_ms=200))  # any duplicates after
    finally:
        await consumer.stop()
    return out


def _decoded(batch: dict[Any, list[Any]]) -> list[tuple[str, str, dict[str, bytes]]]:
    out = []
    for messages in batch.values():
        for m in messages:
            headers = dict(m.headers)
            out.append((m.key.decode(), headers["event_id"].decode(), headers))
    return out


def assert_per_key_order(messages: list[tuple[str, str, dict[str, bytes]]]) -> None:
    """Within each key, first deliveries come in event-id (= commit) order."""
    seen: dict[str, list[str]] = {}
    firsts: set[str] = set()
    for key, event_id, _ in messages:
        if event_id in firsts:
            continue
        firsts.add(event_id)
        seen.setdefault(key, []).append(event_id)
    for key, ids in seen.items():
        assert ids == sorted(ids), f"key {key} out of order"
