"""The dead-letter producer: invalid records go to ``dead_letter_topic`` unchanged.

Key and value are the original bytes; headers say why (``reco.dlq.reason``,
``reco.dlq.detail``) and where the record came from (``reco.dlq.topic``,
``.partition``, ``.offset``, ``.group``), after the record's own headers.
The producer waits for every in-sync replica (``acks="all"``) and does not
ask for idempotence (the Tansu test broker does not support it); a record
may therefore reach the dead-letter topic more than once, never zero times.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError

from reco.consumer.batch import Rejected
from reco.observability.logs import get_logger
from reco.settings import Settings

log = get_logger("reco.consumer.dead_letter")

HEADER_PREFIX = "reco.dlq."


def dead_letter_headers(rejected: Rejected, group: str) -> list[tuple[str, bytes]]:
    """The record's own headers followed by ours (pure)."""
    record = rejected.record
    ours = {
        "reason": rejected.error.code.value,
        "detail": rejected.error.detail,
        "topic": record.topic,
        "partition": str(record.partition),
        "offset": str(record.offset),
        "group": group,
    }
    own = [(k, v) for k, v in record.headers or () if not k.startswith(HEADER_PREFIX)]
    return own + [(HEADER_PREFIX + name, value.encode()) for name, value in ours.items()]


def make_producer(settings: Settings) -> Any:
    """A producer for the dead-letter topic (not started)."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id=f"reco-dlq-{settings.consumer_group}",
        acks="all",
        enable_idempotence=False,
        request_timeout_ms=int(settings.kafka_request_timeout * 1000),
        retry_backoff_ms=int(settings.kafka_retry_initial * 1000),
        max_request_size=settings.consumer_dlq_max_request_bytes,
        linger_ms=0,
    )


async def send_all(producer: Any, settings: Settings, rejected: Sequence[Rejected]) -> None:
    """Send every rejected record and wait for the broker's acknowledgements."""
    futures = [await _send(producer, settings, item) for item in rejected]
    for future in futures:
        await future


async def _send(producer: Any, settings: Settings, item: Rejected) -> Any:
    headers = dead_letter_headers(item, settings.consumer_group)
    topic, key = settings.dead_letter_topic, item.record.key
    try:
        return await producer.send(topic, value=item.record.value, key=key, headers=headers)
    except MessageSizeTooLargeError:
        # Larger than this producer may send: keep the evidence, drop the body.
        size = len(item.record.value or b"")
        log.warning("dead-letter value too large; sent without it", size=size)
        headers.append((HEADER_PREFIX + "value_dropped_bytes", str(size).encode()))
        return await producer.send(topic, value=None, key=key, headers=headers)
