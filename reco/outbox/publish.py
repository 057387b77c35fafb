"""Publishing one batch of outbox rows with aiokafka, in order, bounded in time.

The producer runs without idempotence (Tansu does not support it) and with
``acks="all"``. aiokafka keeps at most one request in flight per broker and
mutes a partition while its batch is in flight, so one producer preserves
the order of ``send()`` calls per partition (hence per key).

A claim is sent as one record batch per partition (rows in id order), and the
batches' futures are awaited in row order within ``relay_publish_timeout``. aiokafka's send futures cannot be
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
from aiokafka.partitioner import murmur2

from reco.errors import RecordRejected
from reco.kafka import errors as kafka_errors
from reco.observability import metrics
from reco.outbox.queries import PendingRow

# Per-partition batch size: large enough that a 1,000-row claim goes out in a
# few produce requests (one request in flight per broker at a time).
MAX_BATCH_BYTES = 512 * 1024
# Kafka's default max.message.bytes (1048588) less room for the batch header: a larger
# row would be refused by a default broker (and sent whole by send_batch, which skips the
# client's max_request_size check), so it is refused here, before the batch it would spoil.
MAX_RECORD_BYTES = 1_000_000


@attrs.define
class BatchOutcome:
    """How far a batch got: ``acked`` rows from the start were acknowledged."""

    acked: int
    error: str = ""
    rejected: bool = False  # the broker (or the client) refused a record for good


def headers(row: PendingRow) -> list[tuple[str, bytes]]:
    return [("event_id", row.event_id.encode()), ("event_type", row.event_type.encode())]


def partition_for(key: bytes, partitions: Sequence[int]) -> int:
    """The Java client's default partitioner: murmur2 of the key."""
    return partitions[(int(murmur2(key)) & 0x7FFFFFFF) % len(partitions)]


def _retrieve(fut: asyncio.Future[Any]) -> None:
    """Read a result nobody awaits, so asyncio does not warn about it."""
    if not fut.cancelled():
        fut.exception()


@attrs.define
class _Batches:
    """Record batches per partition; each row remembers the send future of its batch."""

    producer: AIOKafkaProducer
    open: dict[tuple[str, int], Any] = attrs.field(factory=dict)
    futures: list[asyncio.Future[Any]] = attrs.field(factory=list)
    pending: dict[tuple[str, int], list[int]] = attrs.field(factory=dict)
    batch_of: list[int] = attrs.field(factory=list)

    async def add(self, tp: tuple[str, int], row: PendingRow) -> None:
        size = len(row.payload) + len(row.key) + sum(len(k) + len(v) for k, v in headers(row))
        if size > MAX_RECORD_BYTES:
            raise RecordRejected(f"MessageSizeTooLarge: outbox row {row.id} is {size} bytes")
        builder = self.open.get(tp) or self.open.setdefault(tp, self.producer.create_batch())
        if self._append(builder, row) is None:  # full: send it, start the next one
            await self.flush(tp)
            builder = self.open.setdefault(tp, self.producer.create_batch())
            if self._append(builder, row) is None:
                raise RecordRejected(f"outbox row {row.id} does not fit in a record batch")
        self.pending.setdefault(tp, []).append(len(self.batch_of))
        self.batch_of.append(-1)

    @staticmethod
    def _append(builder: Any, row: PendingRow) -> Any:
        return builder.append(
            timestamp=None, key=row.key.encode(), value=row.payload, headers=headers(row)
        )

    async def flush(self, tp: tuple[str, int]) -> None:
        builder = self.open.pop(tp)
        fut = await self.producer.send_batch(builder, tp[0], partition=tp[1])
        fut.add_done_callback(_retrieve)
        for index in self.pending.pop(tp, []):
            self.batch_of[index] = len(self.futures)
        self.futures.append(fut)


async def send_batch(
    producer: AIOKafkaProducer, rows: Sequence[PendingRow], outcome: BatchOutcome
) -> None:
    """Send ``rows`` and await their acks in row order, counting them in ``outcome``.

    Rows go into one record batch per partition (in row order), which is far
    cheaper than one ``send()`` per row. The caller bounds the time
    (``relay_publish_timeout``); on a timeout ``outcome`` says how many rows
    were acknowledged before it.
    """
    fetched_at = time.perf_counter()
    outcome.error = "timeout"
    try:
        batches = _Batches(producer)
        partitions = {t: sorted(await producer.partitions_for(t)) for t in {r.topic for r in rows}}
        for row in rows:
            await batches.add(
                (row.topic, partition_for(row.key.encode(), partitions[row.topic])), row
            )
        for tp in list(batches.open):
            await batches.flush(tp)
        for index in batches.batch_of:
            fut = batches.futures[index]
            if not fut.done():
                await asyncio.shield(fut)  # the send future itself must not be cancelled
            fut.result()
            outcome.acked += 1
    except Exception as exc:  # noqa: BLE001 - any failure: the rest is retried or isolated
        outcome.error = repr(exc)
        outcome.rejected = kafka_errors.rejected(exc)
        return
    finally:
        _observe(rows[: outcome.acked], fetched_at)
    outcome.error = ""


def _observe(rows: Sequence[PendingRow], fetched_at: float) -> None:
    elapsed = time.perf_counter() - fetched_at
    per_topic: dict[str, int] = {}
    for row in rows:
        metrics.outbox_publish_latency.observe({}, row.age + elapsed)
        per_topic[row.topic] = per_topic.get(row.topic, 0) + 1
    for topic, n in per_topic.items():
        metrics.outbox_published.add({"topic": topic}, n)
