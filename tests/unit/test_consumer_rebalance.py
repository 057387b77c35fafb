"""Rebalance handling: the batch in hand finishes first, or its revoked partitions are never committed."""

from __future__ import annotations

import anyio
import attrs
import pytest
from aiokafka.structs import TopicPartition

from reco.consumer.component import WatchEventConsumer
from reco.db.pool import Database
from reco.observability.readiness import Readiness
from reco.settings import Settings

pytestmark = pytest.mark.anyio

TP = TopicPartition("watch", 0)


@attrs.frozen
class Offset:
    offset: int


def make(drain: float) -> WatchEventConsumer:
    settings = Settings(consumer_drain_timeout=drain)
    readiness = Readiness()
    return WatchEventConsumer(settings, readiness, Database(settings, readiness))


class TestOnRevoked:
    async def test_waits_for_the_batch_in_hand(self) -> None:
        """Revocation waits for the batch in hand; its partitions stay committable."""
        consumer = make(drain=5)
        consumer.in_hand.hold()  # a batch is in hand
        consumer.in_hand.ledger.fetched({TP: [Offset(7)]})
        with anyio.fail_after(2):
            async with anyio.create_task_group() as tg:
                tg.start_soon(consumer._on_revoked, [TP])
                await anyio.wait_all_tasks_blocked()  # it is waiting now
                assert consumer.statistics().positions == {TP: 7}
                consumer.in_hand.release()  # the batch was stored and committed
        assert TP not in consumer.statistics().abandoned
        assert TP not in consumer.statistics().positions

    async def test_abandons_after_the_drain_bound(self) -> None:
        """A batch that does not finish within the bound loses the commit of revoked partitions."""
        consumer = make(drain=0.05)
        consumer.in_hand.hold()  # a batch is in hand, and stays so
        with anyio.fail_after(2):
            await consumer._on_revoked([TP])
        assert TP in consumer.statistics().abandoned

    async def test_idle_revocation_is_immediate(self) -> None:
        """With no batch in hand, revocation returns at once and abandons nothing."""
        consumer = make(drain=5)
        with anyio.fail_after(0.5):
            await consumer._on_revoked([TP])
        assert not consumer.statistics().abandoned
