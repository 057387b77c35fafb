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

from reco.consumer.batch import Rejected
from reco.kafka import errors as kafka_errors
from reco.observability import metrics
from reco.observability.logs import get_logger

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


async def send_all(producer: Any, rejected: Sequence[Rejected], *, topic: str, group: str) -> None:
    """Send every rejected record to ``topic`` and wait for the broker's acknowledgements.

    Sends are pipelined (all queued, then every acknowledgement awaited). A
    record the broker (or this producer) refuses for good is sent again
    without its value, the evidence kept in the headers; refused again, it is
    logged and counted (``reco_consumer_dead_letter_dropped_total``) and the
    partition moves on: a permanent refusal is never retried. Transient
    errors propagate, and the caller retries the whole batch (a record may
    then reach the topic twice).
    """
    pending = [
        (item, await _queue(producer, topic, group, item, keep_value=True)) for item in rejected
    ]
    for item, future in pending:
        if future is None or await _refused(future):
            await _send_without_value(producer, topic, group, item)


async def _queue(producer: Any, topic: str, group: str, item: Rejected, *, keep_value: bool) -> Any:
    """Queue one record; its delivery future, or None when the client refuses it at once."""
    headers = dead_letter_headers(item, group)
    value = item.record.value
    if not keep_value:
        headers.append((HEADER_PREFIX + "value_dropped_bytes", str(len(value or b"")).encode()))
        value = None
    try:
        return await producer.send(topic, value=value, key=item.record.key, headers=headers)
    except Exception as exc:
        if kafka_errors.rejected(exc):
            return None
        raise


async def _refused(future: Any) -> bool:
    """Await one delivery: True when the broker refused the record for good."""
    try:
        await future
    except Exception as exc:
        if kafka_errors.rejected(exc):
            return True
        raise
    return False


async def _send_without_value(producer: Any, topic: str, group: str, item: Rejected) -> None:
    size = len(item.record.value or b"")
    log.warning("dead-letter record refused; sending it without its value", size=size)
    future = await _queue(producer, topic, group, item, keep_value=False)
    if future is None or await _refused(future):
        metrics.consumer_dead_letter_dropped.inc({})
        log.error(
            "dead-letter record refused even without its value; dropped",
            reason=item.error.code.value, topic=item.record.topic,
            partition=item.record.partition, offset=item.record.offset,
        )  # fmt: skip
