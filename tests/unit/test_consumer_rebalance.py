"""Rebalance handling: the batch in hand finishes first, or its revoked partitions are never committed."""

from __future__ import annotations

import anyio
import pytest
from aiokafka.structs import TopicPartition

from reco.consumer.component import WatchEventConsumer
from reco.db.pool import Database
from reco.observability.readiness import Readiness
from reco.settings import Settings

pytestmark = pytest.mark.anyio

TP = TopicPartition("watch", 0)


def make(drain: float) -> WatchEventConsumer:
    settings = Settings.from_flat(consumer_drain_timeout=drain)
    readiness = Readiness()
    return WatchEventConsumer(
        settings.consumer,
        settings.kafka,
        readiness,
        Database(settings.database, readiness, migrate=settings.should_migrate_on_start),
    )


class TestOnRevoked:
    async def test_waits_for_the_batch_in_hand(self) -> None:
        """Revocation waits for the batch in hand; its partitions stay committable."""
        consumer = make(drain=5)
        consumer._idle = anyio.Event()  # a batch is in hand
        consumer._positions[TP] = 7
        with anyio.fail_after(2):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consumer._on_revoked, [TP])
                await anyio.wait_all_tasks_blocked()  # it is waiting now
                consumer._idle.set()  # the batch was stored and committed
        assert TP not in consumer._abandoned
        assert TP not in consumer._positions

    async def test_abandons_after_the_drain_bound(self) -> None:
        """A batch that does not finish within the bound loses the commit of revoked partitions."""
        consumer = make(drain=0.05)
        consumer._idle = anyio.Event()  # a batch is in hand, and stays so
        with anyio.fail_after(2):
            await consumer._on_revoked([TP])
        assert TP in consumer._abandoned

    async def test_idle_revocation_is_immediate(self) -> None:
        """With no batch in hand, revocation returns at once and abandons nothing."""
        consumer = make(drain=5)
        with anyio.fail_after(0.5):
            await consumer._on_revoked([TP])
        assert not consumer._abandoned
