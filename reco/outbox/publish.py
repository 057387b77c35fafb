"""Publishing one batch of outbox rows with aiokafka, in order, bounded in time.

The producer runs without idempotence (Tansu does not support it) and with
``acks="all"``. aiokafka keeps at most one request in flight per broker and
mutes a partition while its batch is in flight, so one producer preserves
the order of ``send()`` calls per partition (hence per key).

A batch is sent as a sequence of ``send()`` calls whose futures are awaited in
order within ``relay_publish_timeout``. aiokafka's send futures cannot be
cancelled, so the wait is bounded and a row whose ack did not arrive is
*unknown*: it stays unpublished and is retried (a duplicate at worst). Only
the acknowledged prefix of the batch is marked published, so the next
attempt resumes at the oldest unacknowledged row.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import attrs
from aiokafka import AIOKafkaProducer

from reco.observability import metrics
from reco.outbox.queries import PendingRow
from reco.settings import Settings

# Per-partition batch size: large enough that a 1,000-row claim goes out in a
# few produce requests (one request in flight per broker at a time).
MAX_BATCH_BYTES = 512 * 1024


def make_producer(settings: Settings) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=settings.kafka_bootstrap,
        client_id="reco-relay",
        acks="all",
        enable_idempotence=False,
        linger_ms=int(settings.relay_linger * 1000),
        max_batch_size=MAX_BATCH_BYTES,
        request_timeout_ms=int(settings.kafka_request_timeout * 1000),
        retry_backoff_ms=int(settings.kafka_retry_initial * 1000),
    )


@attrs.define
class BatchOutcome:
    """How far a batch got: ``acked`` rows from the start were acknowledged."""

    acked: int
    error: str = ""


def headers(row: PendingRow) -> list[tuple[str, bytes]]:
    return [("event_id", row.event_id.encode()), ("event_type", row.event_type.encode())]


def _retrieve(fut: asyncio.Future[Any]) -> None:
    """Read a result nobody awaits, so asyncio does not warn about it."""
    if not fut.cancelled():
        fut.exception()


async def send_batch(
    producer: AIOKafkaProducer, rows: Sequence[PendingRow], outcome: BatchOutcome
) -> None:
    """Send ``rows`` in order and await their acks in order, counting them in ``outcome``.

    The caller bounds the time (``relay_publish_timeout``); on a timeout
    ``outcome`` says how many rows were acknowledged before it.
    """
    fetched_at = time.perf_counter()
    futures: list[asyncio.Future[Any]] = []
    outcome.error = "timeout"
    try:
        for row in rows:
            fut = await producer.send(
                row.topic, value=row.payload, key=row.key.encode(), headers=headers(row)
            )
            fut.add_done_callback(_retrieve)
            futures.append(fut)
        for row, fut in zip(rows, futures, strict=True):
            await asyncio.shield(fut)  # the send future itself must not be cancelled
            outcome.acked += 1
            _observe(row, fetched_at)
    except Exception as exc:  # noqa: BLE001 - any failure: the rest is retried
        outcome.error = repr(exc)
        return
    outcome.error = ""


def _observe(row: PendingRow, fetched_at: float) -> None:
    latency = row.age + (time.perf_counter() - fetched_at)
    metrics.outbox_publish_latency.observe({}, latency)
    metrics.outbox_published.inc({"topic": row.topic})
