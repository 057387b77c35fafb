"""The consumer keeps every event exactly once through broker and database outages.

Each test runs its own server (a broker on its own port, or a PostgreSQL it
can pause) so that the session-wide ones are never disturbed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import attrs
import pytest
from reco_dev.devstack.broker import EmbeddedBroker
from reco_dev.devstack.ports import free_port
from reco_dev.devstack.postgres import EmbeddedPostgres

from reco.consumer import component
from reco.db.migrations import default_dir
from reco.engine import ingest
from reco.observability import metrics
from reco.observability.readiness import Readiness
from reco.settings import Settings
from tests.conftest import Topics
from tests.integration.consumer_harness import (
    Store,
    applied,
    event,
    fast,
    producer,
    running_consumer,
    send,
    wait_until,
)
from tests.support.servers import fresh_database, make_template

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.integration,
]


@pytest.fixture
async def own_broker(tmp_path: Path) -> AsyncIterator[EmbeddedBroker]:
    broker = EmbeddedBroker(tmp_path / "broker")
    await anyio.to_thread.run_sync(broker.start)
    try:
        yield broker
    finally:
        await anyio.to_thread.run_sync(broker.stop)


@pytest.fixture
async def own_postgres(tmp_path: Path) -> AsyncIterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(tmp_path / "postgres", durable=False)
    try:
        await anyio.to_thread.run_sync(_start, server)
        await anyio.to_thread.run_sync(make_template, server, default_dir())
        yield server
    finally:
        await anyio.to_thread.run_sync(server.stop)


def _start(server: EmbeddedPostgres) -> None:
    """Start, tolerating EmbeddedPostgres's race: pg_isready can answer "starting up" (1).

    Runs in a worker thread, hence the blocking sleep.
    """
    try:
        server.start()
    except subprocess.CalledProcessError:
        deadline = time.monotonic() + 30
        while True:
            try:
                server._wait_accepting(5)
                return
            except subprocess.CalledProcessError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


def events(first: int, last: int) -> list[dict[str, Any]]:
    """Events with distinct users, so that they spread over every partition."""
    return [event(n, user=f"u{n}") for n in range(first, last)]


class TestBrokerDownAtStart:
    async def test_starts_degraded_then_connects(
        self, kafka_settings: Settings, topics: Topics, tmp_path: Path
    ) -> None:
        """With no broker, it starts at once with readiness failing; it connects when one comes."""
        broker = EmbeddedBroker(tmp_path / "late-broker", port=free_port())
        settings = fast(kafka_settings, kafka_bootstrap=broker.bootstrap)
        store = Store(settings.database_url)
        with anyio.fail_after(30):
            async with running_consumer(settings) as run:
                state = run.readiness.get(component.CHECK)
                assert state is not None
                assert not state.ok
                await anyio.to_thread.run_sync(broker.start)
                try:
                    async with producer(broker.bootstrap) as client:
                        await send(client, topics.watch_events, events(0, 10))
                        await wait_until(lambda: store.has(10))
                    state = run.readiness.get(component.CHECK)
                    assert state is not None
                    assert state.ok
                finally:
                    await anyio.to_thread.run_sync(broker.stop)


class TestBrokerRestart:
    async def test_restart_mid_stream(
        self, kafka_settings: Settings, topics: Topics, own_broker: EmbeddedBroker
    ) -> None:
        """Events produced before and after a broker restart are each stored exactly once."""
        settings = fast(kafka_settings, kafka_bootstrap=own_broker.bootstrap)
        store = Store(settings.database_url)
        async with running_consumer(settings) as run:
            async with producer(own_broker.bootstrap) as client:
                await send(client, topics.watch_events, events(0, 100))
                await wait_until(lambda: store.has(100))
            await anyio.to_thread.run_sync(own_broker.restart)
            # The restarted broker holds nothing: wait until the consumer re-joined and
            # reset to the new, empty logs before producing the rest to it.
            await wait_until(_positions_reset(run.consumer))
            async with producer(own_broker.bootstrap) as client:
                await send(client, topics.watch_events, events(100, 200))
                await wait_until(lambda: store.has(200))
        assert await store.ids() == sorted(f"e{n}" for n in range(200))
        assert await applied(store) == 200


class TestDatabasePause:
    async def test_paused_mid_batch(
        self, kafka_settings: Settings, topics: Topics, own_postgres: EmbeddedPostgres,
    ) -> None:  # fmt: skip
        """PostgreSQL frozen inside a batch's transaction: retried until every event is stored once."""
        url = own_postgres.url(await anyio.to_thread.run_sync(fresh_database, own_postgres))
        settings = fast(
            kafka_settings, database_url=url, consumer_batch_timeout=0.5,
            db_acquire_timeout=0.5, db_connect_timeout=0.5, db_health_timeout=0.3,
        )  # fmt: skip
        store = Store(url)
        pauser = _PauseOnce(own_postgres)
        async with (
            producer(settings.kafka_bootstrap) as client,
            running_consumer(settings, apply=pauser.apply),
        ):
            await send(client, topics.watch_events, events(0, 50))
            await wait_until(lambda: store.has(50))
            errors_before = _process_errors()
            pauser.armed = True
            await send(client, topics.watch_events, events(50, 100))
            await wait_until(_more_errors_than(errors_before + 1))
            pauser.resume()
            await wait_until(lambda: store.has(100))
        assert pauser.backend is not None
        assert await store.count() == 100
        assert await applied(store) == 100


@attrs.define
class _PauseOnce:
    """The consumer's ``apply`` seam: apply_events, then, once armed, freeze the server
    inside the transaction.

    PostgreSQL backends are process-group leaders of their own (setsid), so
    EmbeddedPostgres.pause() freezes only the postmaster (no new connections);
    the backend serving this transaction is stopped by pid as well.
    """

    server: EmbeddedPostgres
    armed: bool = False
    backend: int | None = None

    async def apply(self, conn: Any, batch: Any) -> None:
        await ingest.apply_events(conn, batch)
        if self.armed and self.backend is None:
            self.backend = conn.get_server_pid()
            self.server.pause()
            os.kill(self.backend, signal.SIGSTOP)  # the COMMIT that follows gets no answer

    def resume(self) -> None:
        if self.backend is not None:
            os.kill(self.backend, signal.SIGCONT)
        self.server.resume()


def _process_errors() -> float:
    try:
        value: Any = metrics.consumer_errors.get({"stage": "process"})
        return float(value)
    except KeyError:
        return 0.0


def _more_errors_than(count: float) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return _process_errors() > count

    return check


def _positions_reset(consumer: component.WatchEventConsumer) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        client = consumer._consumer  # the test looks inside: where will it read next?
        assigned = client.assignment() if client else set()
        if not assigned:
            return False
        with anyio.move_on_after(0.5):
            return all([await client.position(tp) == 0 for tp in assigned])
        return False

    return check


class TestBrokerLostMidRun:
    async def test_readiness_fails_while_the_broker_is_gone(
        self, kafka_settings: Settings, topics: Topics, own_broker: EmbeddedBroker
    ) -> None:
        """A broker lost after start-up turns the kafka_consumer check failing, and back."""
        # A request timeout under Tansu's ~3 s group join would never let it rejoin.
        settings = fast(kafka_settings, kafka_bootstrap=own_broker.bootstrap,
                        kafka_request_timeout=5.0)  # fmt: skip
        store = Store(settings.database_url)
        async with running_consumer(settings) as run:
            async with producer(own_broker.bootstrap) as client:
                await send(client, topics.watch_events, events(0, 10))
                await wait_until(lambda: store.has(10))
            await anyio.to_thread.run_sync(own_broker.stop)
            try:
                await wait_until(_check_is(run.readiness, ok=False))
            finally:
                await anyio.to_thread.run_sync(own_broker.start)
            await wait_until(_check_is(run.readiness, ok=True))


def _check_is(readiness: Readiness, *, ok: bool) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        state = readiness.get(component.CHECK)
        return state is not None and state.ok is ok

    return check
