"""SIGTERM while the consumer, the impression writer and the relay all hold work.

`reco serve` (a child process, consumer and relay on) takes Kafka events, serves
lists (each one an impression: writer, outbox, relay) and takes events over HTTP
(outbox, relay) at once; SIGTERM arrives in the middle. It must exit 0 within
RECO_SHUTDOWN_TIMEOUT, log every component's stop with its duration, and lose
nothing it accepted: every list served has its impression, every accepted HTTP
event its outbox row, and a restarted service stores every Kafka event and
publishes every outbox row.
"""

from __future__ import annotations

import datetime as dt
import itertools
import signal
from typing import Any

import anyio
import asyncpg
import httpx
import pytest
from reco_dev.devstack.broker import EmbeddedBroker
from reco_dev.devstack.postgres import EmbeddedPostgres
from reco_dev.devstack.topics import create_topics

from reco.service import SHUTDOWN_SHARES
from reco.supervisor import EXIT_OK
from tests.integration.consumer_harness import producer, send
from tests.support.child_service import TOKEN, child_env, child_settings
from tests.support.process import Child, spawn

pytestmark = [pytest.mark.anyio, pytest.mark.integration, pytest.mark.timeout(240)]

SHUTDOWN_TIMEOUT = 8.0
LOAD_BEFORE_SIGTERM = 3.0
T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def watch(n: int, prefix: str) -> dict[str, Any]:
    return {
        "event_id": f"{prefix}{n}", "user_id": f"u{n % 13}", "item_id": f"i{n % 17}",
        "occurred_at": (T0 + dt.timedelta(seconds=n)).isoformat(), "watched_seconds": 30.0,
        "completed": False,
    }  # fmt: skip


class Load:
    """Three kinds of traffic until the service stops answering."""

    def __init__(self, base_url: str, kafka: Any, topic: str) -> None:
        self.base_url, self.kafka, self.topic = base_url, kafka, topic
        self.produced = 0
        self.served = 0  # lists answered 200 (each must have its impression)
        self.accepted: list[str] = []  # event ids POST /v1/events answered 202 for
        self.running = True

    async def produce(self) -> None:
        counter = itertools.count()
        while self.running:
            batch = [watch(next(counter), "k") for _ in range(50)]
            await send(self.kafka, self.topic, batch)
            self.produced += len(batch)
            await anyio.sleep(0.02)

    async def read(self) -> None:
        async with httpx.AsyncClient(base_url=self.base_url, timeout=5) as client:
            while self.running:
                try:
                    response = await client.get("/v1/items/popular?limit=5")
                except httpx.HTTPError:
                    return  # the listener is closed: the stop has begun
                if response.status_code == 200:
                    self.served += 1

    async def post(self) -> None:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=self.base_url, timeout=5, headers=headers) as client:
            for n in itertools.count():
                if not self.running:
                    return
                events = [watch(n * 5 + i, "h") for i in range(5)]
                try:
                    response = await client.post("/v1/events", json={"events": events})
                except httpx.HTTPError:
                    return
                if response.status_code == 202:
                    self.accepted += [e["event_id"] for e in events]


async def started(child: Child) -> str:
    with anyio.fail_after(30):
        listening = await child.wait_event("http listening")
        await child.wait_event("started")
    return str(listening["address"])


async def fetchval(url: str, query: str) -> Any:
    conn = await asyncpg.connect(url)
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


async def test_sigterm_under_load_exits_0_in_time_and_loses_nothing(
    postgres: EmbeddedPostgres, broker: EmbeddedBroker
) -> None:
    settings = child_settings(postgres, broker)
    env = child_env(settings, {"RECO_SHUTDOWN_TIMEOUT": str(SHUTDOWN_TIMEOUT)})
    await create_topics(settings)
    async with producer(settings.kafka_bootstrap) as kafka:
        async with spawn(["-m", "reco", "serve"], env) as child:
            load = Load(await started(child), kafka, settings.watch_events_topic)
            async with anyio.create_task_group() as tg:
                tg.start_soon(child.wait_exit)  # keeps reading its output
                tg.start_soon(load.produce)
                for _ in range(4):
                    tg.start_soon(load.read)
                tg.start_soon(load.post)
                await anyio.sleep(LOAD_BEFORE_SIGTERM)
                began = anyio.current_time()
                child.signal(signal.SIGTERM)
                with anyio.fail_after(SHUTDOWN_TIMEOUT + 5):
                    status = await child.process.wait()
                elapsed = anyio.current_time() - began
                load.running = False

        assert status == EXIT_OK
        assert elapsed < SHUTDOWN_TIMEOUT
        assert load.served > 0
        assert load.accepted
        assert load.produced > 0
        stopping = [line for line in child.lines if line.get("event") == "component stopping"]
        stopped = [line for line in child.lines if line.get("event") == "component stopped"]
        assert [line["component"] for line in stopping] == list(SHUTDOWN_SHARES)
        assert [line["component"] for line in stopped] == list(SHUTDOWN_SHARES)
        assert all(isinstance(line["duration"], float) for line in stopped)
        assert all(line["budget"] > 0 for line in stopping)

        # Nothing accepted is lost: impressions and HTTP events are in PostgreSQL already.
        url = settings.database_url
        assert await fetchval(url, "SELECT count(*) FROM impressions") == load.served
        ids = await fetchval(url, "SELECT array_agg(event_id) FROM outbox WHERE event_id LIKE 'h%'")
        assert sorted(load.accepted) == sorted(ids or [])

        # A restarted service stores every Kafka event (uncommitted ones are redelivered)
        # and publishes every outbox row.
        async with spawn(["-m", "reco", "serve"], env) as again:
            await started(again)
            async with anyio.create_task_group() as tg:
                tg.start_soon(again.wait_exit)
                with anyio.fail_after(60):
                    while True:
                        stored = await fetchval(
                            url, "SELECT count(*) FROM watch_events WHERE event_id LIKE 'k%'"
                        )
                        pending = await fetchval(
                            url, "SELECT count(*) FROM outbox WHERE published_at IS NULL"
                        )
                        if stored == load.produced and pending == 0:
                            break
                        await anyio.sleep(0.2)
                again.signal(signal.SIGTERM)
                with anyio.fail_after(SHUTDOWN_TIMEOUT + 5):
                    assert await again.process.wait() == EXIT_OK
