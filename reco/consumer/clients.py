"""The aiokafka clients of the consumer component, built from settings (not started)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener

from reco.settings import Settings


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


def make_consumer(settings: Settings) -> Any:
    """A group consumer (not subscribed yet): manual commits, earliest when no offset.

    Subscribe after ``start()``: with a subscription, ``start()`` would wait
    for the group assignment, which is the fetch loop's business.

    ``earliest``: a new group (or an offset the broker no longer has) starts
    from the oldest event rather than silently skipping what is there.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=settings.consumer_group,
        client_id=f"reco-consumer-{settings.consumer_group}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=settings.consumer_batch_max,
        request_timeout_ms=_ms(settings.kafka_request_timeout),
        retry_backoff_ms=_ms(settings.kafka_retry_initial),
        session_timeout_ms=_ms(settings.consumer_session_timeout),
        heartbeat_interval_ms=_ms(settings.consumer_heartbeat_interval),
        # Room for one record up to the broker's default limit plus framing;
        # oversized records are fetched and dead-lettered, never skipped.
        max_partition_fetch_bytes=max(1024 * 1024, settings.consumer_max_message_bytes * 2),
    )
    return consumer


class Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    """Forwards aiokafka's rebalance callbacks to the component."""

    def __init__(
        self,
        on_revoked: Callable[[Iterable[Any]], Awaitable[None]],
        on_assigned: Callable[[Iterable[Any]], None],
    ) -> None:
        self._on_revoked = on_revoked
        self._on_assigned = on_assigned

    async def on_partitions_revoked(self, revoked: Iterable[Any]) -> None:
        await self._on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: Iterable[Any]) -> None:
        self._on_assigned(assigned)
