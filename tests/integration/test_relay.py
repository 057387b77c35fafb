"""The outbox relay against the real broker and PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest
from reco_dev.devstack.broker import EmbeddedBroker

from reco.kafka import clients
from reco.observability import metrics
from reco.observability.readiness import Readiness
from reco.outbox import queries
from reco.outbox.publish import MAX_BATCH_BYTES
from reco.outbox.relay import LOCK_KEY, OutboxRelay
from reco.settings import Settings, evolve
from tests.conftest import Topics
from tests.integration.outbox_support import (
    assert_per_key_order,
    dedicated,
    enqueue,
    read_topic,
    relay_settings,
    rows_for,
    running_database,
    unpublished,
    wait_for,
)
from tests.support.components import request_stop, start

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

KEYS = ["u1", "u2", "u3", "u4", "u5"]


async def _start(tg: Any, relay: OutboxRelay) -> OutboxRelay:
    await start(tg, relay)
    return relay


class TestDelivery:
    async def test_every_committed_row_is_published_in_key_order(
        self, settings: Settings, broker: EmbeddedBroker, topics: Topics
    ) -> None:
        """Rows from several transactions all reach the topic, in per-key order, with headers."""
        cfg = relay_settings(settings, broker.bootstrap)
        batches = [rows_for(topics.impressions, KEYS, 40, prefix=f"b{i}") for i in range(3)]
        async with running_database(cfg) as db, anyio.create_task_group() as tg:
            relay = await _start(tg, OutboxRelay(cfg.relay, cfg.kafka, db, Readiness()))
            for rows in batches:
                await enqueue(cfg, rows)
            await wait_for(lambda: _none_left(cfg))
            request_stop(relay)
        messages = await read_topic(broker.bootstrap, topics.impressions, 600)
        assert {m[1] for m in messages} == {r.event_id for rows in batches for r in rows}
        assert_per_key_order(messages)
        assert messages[0][2]["event_type"] == b"test"

    async def test_late_committing_transaction_is_not_skipped(
        self, settings: Settings, broker: EmbeddedBroker, topics: Topics
    ) -> None:
        """A row whose transaction commits after a later row's is published, and first."""
        cfg = relay_settings(settings, broker.bootstrap)
        early = queries.NewRow(topics.impressions, "k", "e-1", "test", "{}")
        late = queries.NewRow(topics.impressions, "k", "e-2", "test", "{}")
        async with (
            running_database(cfg) as db,
            dedicated(cfg) as slow,
            anyio.create_task_group() as tg,
        ):
            tx = slow.transaction()
            await tx.start()
            await queries.enqueue(slow, [early])  # smaller id and txid, not committed
            await enqueue(cfg, [late])
            relay = await _start(tg, OutboxRelay(cfg.relay, cfg.kafka, db, Readiness()))
            await wait_for(lambda: _true(relay.statistics().claims >= 3))
            assert relay.statistics().batches == 0, (
                "the later row must wait for the earlier transaction"
            )
            await tx.commit()
            await wait_for(lambda: _none_left(cfg))
            request_stop(relay)
        messages = await read_topic(broker.bootstrap, topics.impressions, 2)
        assert [m[1] for m in messages] == ["e-1", "e-2"]


@attrs.define
class _DiesAfterSecondSend:
    """The relay's producer seam: its second batch is delivered, and then the relay dies
    (``killer`` is cancelled) while it waits for the acks, so before it marks the rows."""

    real: Any
    killer: anyio.CancelScope
    publishes: int = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)

    async def partitions_for(self, topic: str) -> Any:
        self.publishes += 1  # once per topic per batch: this test uses one topic
        return await self.real.partitions_for(topic)

    async def send_batch(self, builder: Any, topic: str, *, partition: int) -> Any:
        sent = await self.real.send_batch(builder, topic, partition=partition)
        if self.publishes != 2:
            return sent
        sent.add_done_callback(lambda _: self.killer.cancel())
        return asyncio.get_running_loop().create_future()  # an ack that never comes


class TestRecovery:
    async def test_relay_killed_mid_batch_loses_nothing(
        self, settings: Settings, broker: EmbeddedBroker, topics: Topics
    ) -> None:
        """Rows sent but not marked are sent again by the next relay: duplicates, no loss."""
        cfg = relay_settings(settings, broker.bootstrap)
        cfg = evolve(cfg, relay_batch_max=100)
        rows = rows_for(topics.impressions, KEYS, 80)
        async with running_database(cfg) as db:
            await enqueue(cfg, rows)
            with anyio.CancelScope() as killer:
                producer = _DiesAfterSecondSend(
                    clients.relay_producer(cfg.kafka, cfg.relay, max_batch_size=MAX_BATCH_BYTES),
                    killer,
                )
                victim = OutboxRelay(
                    cfg.relay, cfg.kafka, db, Readiness(), producer=lambda: producer
                )
                async with anyio.create_task_group() as tg:
                    await start(tg, victim)
            assert await unpublished(cfg) == 300
            async with anyio.create_task_group() as tg:
                relay = await _start(tg, OutboxRelay(cfg.relay, cfg.kafka, db, Readiness()))
                await wait_for(lambda: _none_left(cfg))
                request_stop(relay)
        messages = await read_topic(broker.bootstrap, topics.impressions, 500)
        ids = [m[1] for m in messages]
        assert set(ids) == {r.event_id for r in rows}
        assert len(ids) - len(set(ids)) == 100  # exactly the unmarked second batch
        assert_per_key_order(messages)

    async def test_standby_takes_over_when_the_leader_connection_dies(
        self, settings: Settings, broker: EmbeddedBroker, topics: Topics
    ) -> None:
        """Two relays: one leads; killing its lock connection hands over to the other."""
        cfg = relay_settings(settings, broker.bootstrap)
        async with running_database(cfg) as db, anyio.create_task_group() as tg:
            first = await _start(tg, OutboxRelay(cfg.relay, cfg.kafka, db, Readiness()))
            await wait_for(lambda: _true(first.leading))
            second = await _start(tg, OutboxRelay(cfg.relay, cfg.kafka, db, Readiness()))
            await wait_for(lambda: _true(first.statistics().claims >= 5))
            assert first.leading
            assert not second.leading
            async with dedicated(cfg) as admin:
                killed = await admin.fetchval(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_locks"
                    " WHERE locktype = 'advisory' AND granted"
                )
            assert killed == 1
            await wait_for(lambda: _true(second.leading and not first.leading))
            rows = rows_for(topics.impressions, KEYS, 4)
            await enqueue(cfg, rows)
            await wait_for(lambda: _none_left(cfg))
            request_stop(first)
            request_stop(second)
        messages = await read_topic(broker.bootstrap, topics.impressions, len(rows))
        assert {m[1] for m in messages} == {r.event_id for r in rows}


class TestBrokerDown:
    async def test_backlog_grows_then_drains_when_the_broker_returns(
        self, settings: Settings, topics: Topics, tmp_path: Path
    ) -> None:
        """Broker down at start-up: readiness fails past the threshold; all published later."""
        down = EmbeddedBroker(tmp_path / "broker")
        cfg = relay_settings(settings, down.bootstrap)
        cfg = evolve(cfg, outbox_max_age=0.3)
        readiness = Readiness()
        rows = rows_for(topics.impressions, KEYS, 10)
        try:
            async with running_database(cfg) as db, anyio.create_task_group() as tg:
                relay = await _start(tg, OutboxRelay(cfg.relay, cfg.kafka, db, readiness))
                await enqueue(cfg, rows)
                await wait_for(lambda: _check_failing(readiness))
                state = readiness.snapshot()["checks"]["outbox"]
                assert state["unpublished"] == 50
                assert state["leader"] is True
                await anyio.to_thread.run_sync(down.start)
                await wait_for(lambda: _none_left(cfg), deadline=30)
                await wait_for(lambda: _true(readiness.strict_ready))
                request_stop(relay)
            messages = await read_topic(down.bootstrap, topics.impressions, 50)
            assert {m[1] for m in messages} == {r.event_id for r in rows}
        finally:
            await anyio.to_thread.run_sync(down.stop)


class TestWakeUp:
    async def test_notify_wakes_the_relay_and_a_lost_listener_is_replaced(
        self, settings: Settings, broker: EmbeddedBroker, topics: Topics
    ) -> None:
        """With polling all but off, commits are still published, before and after the
        LISTEN connection is killed."""
        cfg = evolve(relay_settings(settings, broker.bootstrap), relay_poll_interval=60.0)
        async with running_database(cfg) as db, anyio.create_task_group() as tg:
            relay = await _start(tg, OutboxRelay(cfg.relay, cfg.kafka, db, Readiness()))
            await wait_for(lambda: _listening(cfg))
            await enqueue(cfg, rows_for(topics.impressions, ["k"], 1, prefix="a"))
            await wait_for(lambda: _none_left(cfg), deadline=5)
            async with dedicated(cfg) as admin:
                await admin.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name = 'reco-relay-listen'"
                )
            await wait_for(lambda: _listening(cfg))
            await enqueue(cfg, rows_for(topics.impressions, ["k"], 1, prefix="b"))
            await wait_for(lambda: _none_left(cfg), deadline=5)
            request_stop(relay)


class TestHousekeeping:
    async def test_published_rows_are_pruned_after_retention(self, settings: Settings) -> None:
        """Rows published longer ago than the retention are deleted; the rest stay."""
        cfg = evolve(settings, outbox_retention=3600.0)
        await enqueue(cfg, rows_for("t", KEYS, 2))
        async with dedicated(cfg) as conn:
            await conn.execute(
                "UPDATE outbox SET published_at = now() - interval '2 hours' WHERE id % 2 = 0"
            )
        pruned: Any = metrics.outbox_pruned  # .get() is typed as any metric's value
        try:
            before = float(pruned.get({}))
        except KeyError:  # never counted yet
            before = 0.0
        async with running_database(cfg) as db:
            deleted = await OutboxRelay(cfg.relay, cfg.kafka, db, Readiness()).prune_once()
        assert deleted == 5
        assert float(pruned.get({})) == before + 5
        async with dedicated(cfg) as conn:
            assert await conn.fetchval("SELECT count(*) FROM outbox") == 5


class TestCancellation:
    async def test_cancelled_relay_exits_promptly_and_releases_the_lock(
        self, settings: Settings, broker: EmbeddedBroker, topics: Topics
    ) -> None:
        """Cancelling a leading relay ends it within a bound and frees leadership."""
        cfg = relay_settings(settings, broker.bootstrap)
        async with running_database(cfg) as db:
            relay = OutboxRelay(cfg.relay, cfg.kafka, db, Readiness())
            async with anyio.create_task_group() as tg:
                await start(tg, relay)
                await wait_for(lambda: _true(relay.leading))
                await enqueue(cfg, rows_for(topics.impressions, KEYS, 50))
                began = anyio.current_time()
                tg.cancel_scope.cancel()
            assert anyio.current_time() - began < 3.0
            assert not relay.leading
            async with dedicated(cfg) as conn:
                assert await queries.try_lock(conn, LOCK_KEY)


async def _true(value: bool) -> bool:
    return value


async def _none_left(settings: Settings) -> bool:
    return await unpublished(settings) == 0


async def _listening(settings: Settings) -> bool:
    async with dedicated(settings) as conn:
        n = await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'reco-relay-listen'"
        )
    return bool(n == 1)


async def _check_failing(readiness: Readiness) -> bool:
    check = readiness.get("outbox")
    return check is not None and not check.ok


class TestRefusedRows:
    async def test_a_row_the_broker_refuses_is_set_aside(
        self, settings: Settings, broker: EmbeddedBroker, topics: Topics
    ) -> None:
        """A row over the producer's request limit is never retried: set aside with the
        broker's error, counted, and the rows behind it (same key) are published in order."""
        cfg = relay_settings(settings, broker.bootstrap)
        big = '{"pad": "' + "x" * (2 * 1024 * 1024) + '"}'  # > max_request_size (1 MiB)
        rows = [
            queries.NewRow(topics.impressions, "k", "before", "test", "{}"),
            queries.NewRow(topics.impressions, "k", "huge", "test", big),
            queries.NewRow(topics.impressions, "k", "after", "test", "{}"),
        ]
        before = metrics.outbox_rejected.values.get({"topic": topics.impressions}, 0)
        async with running_database(cfg) as db, anyio.create_task_group() as tg:
            relay = await _start(tg, OutboxRelay(cfg.relay, cfg.kafka, db, Readiness()))
            await enqueue(cfg, rows)
            await wait_for(lambda: _none_left(cfg))
            request_stop(relay)
        messages = await read_topic(broker.bootstrap, topics.impressions, 2)
        assert [m[1] for m in messages] == ["before", "after"]
        async with dedicated(cfg) as conn:
            error = await conn.fetchval("SELECT publish_error FROM outbox WHERE event_id = 'huge'")
        assert "MessageSizeTooLarge" in error
        assert metrics.outbox_rejected.values.get({"topic": topics.impressions}, 0) == before + 1
