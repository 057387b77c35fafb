"""Every aiokafka client reco builds, from the ``kafka`` settings section (none started).

One place maps settings onto client options: the bootstrap servers, the
request timeout and the retry backoff come from :class:`KafkaSettings`; what a
component tunes for itself (its group, batch size, linger) comes as an
argument. Every producer waits for all in-sync replicas (``acks="all"``) and
asks no idempotence (the Tansu broker of the tests does not support it), so a
record may reach a topic more than once, never zero times. Consumers commit
by hand and start from the earliest offset when the group has none (a new
group, or an offset the broker no longer has, reads what is there rather
than silently skipping it).

The tools (tests, benchmarks, ``reco dev``) build their clients here too,
from a :class:`KafkaSettings` naming their broker.
"""

from __future__ import annotations

import math
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from reco.settings import ConsumerSettings, KafkaSettings, RelaySettings


def ms(seconds: float) -> int:
    """Whole milliseconds, rounded up (so a positive duration never becomes 0)."""
    return math.ceil(round(seconds * 1000, 6))


def _common(kafka: KafkaSettings, client_id: str) -> dict[str, Any]:
    return {
        "bootstrap_servers": kafka.bootstrap,
        "client_id": client_id,
        "request_timeout_ms": ms(kafka.request_timeout),
        "retry_backoff_ms": ms(kafka.retry_initial),
    }


def producer(
    kafka: KafkaSettings, *, client_id: str = "reco", linger: float = 0.0, **options: Any
) -> AIOKafkaProducer:
    """A producer: all replicas acknowledge, no idempotence; ``options`` are aiokafka's."""
    return AIOKafkaProducer(
        **_common(kafka, client_id), acks="all", enable_idempotence=False,
        linger_ms=ms(linger), **options,
    )  # fmt: skip


def consumer(
    kafka: KafkaSettings, *topics: str, group: str | None = None, client_id: str = "reco",
    **options: Any,
) -> AIOKafkaConsumer:  # fmt: skip
    """A consumer: manual commits, earliest when the group has no offset."""
    return AIOKafkaConsumer(
        *topics, **_common(kafka, client_id), group_id=group, enable_auto_commit=False,
        auto_offset_reset="earliest", **options,
    )  # fmt: skip


def admin(kafka: KafkaSettings) -> AIOKafkaAdminClient:
    return AIOKafkaAdminClient(
        bootstrap_servers=kafka.bootstrap, request_timeout_ms=ms(kafka.request_timeout),
        retry_backoff_ms=ms(kafka.retry_initial),
    )  # fmt: skip


def event_consumer(kafka: KafkaSettings, settings: ConsumerSettings) -> AIOKafkaConsumer:
    """The watch-event consumer's group member (not subscribed yet).

    Subscribe after ``start()``: with a subscription, ``start()`` would wait
    for the group assignment, which is the fetch loop's business.
    """
    return consumer(
        kafka, group=settings.group, client_id=f"reco-consumer-{settings.group}",
        max_poll_records=settings.batch_max,
        session_timeout_ms=ms(settings.session_timeout),
        heartbeat_interval_ms=ms(settings.heartbeat_interval),
        # Room for one record up to the broker's default limit plus framing;
        # oversized records are fetched and dead-lettered, never skipped.
        max_partition_fetch_bytes=max(1024 * 1024, settings.max_message_bytes * 2),
    )  # fmt: skip


def dead_letter_producer(kafka: KafkaSettings, settings: ConsumerSettings) -> AIOKafkaProducer:
    """The consumer's producer for the dead-letter topic (no linger: a batch waits on it)."""
    return producer(
        kafka, client_id=f"reco-dlq-{settings.group}",
        max_request_size=settings.dlq_max_request_bytes,
    )  # fmt: skip


def relay_producer(
    kafka: KafkaSettings, settings: RelaySettings, *, max_batch_size: int
) -> AIOKafkaProducer:
    """The outbox relay's producer (one per leadership, see reco.outbox.publish)."""
    return producer(
        kafka, client_id="reco-relay", linger=settings.linger, max_batch_size=max_batch_size
    )
