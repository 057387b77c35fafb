"""The watch-event consumer component: Kafka in, PostgreSQL out, idempotent, never stuck silently.

A fetch loop and ``consumer_store_lanes`` store lanes. The fetch loop reads a
batch (bounded by ``consumer_batch_max`` and ``consumer_batch_wait``),
decodes and validates it, and hands each lane the records of its partitions
(partition ``p`` always goes to lane ``p % lanes``), then fetches the next
batch while the lanes store: decoding overlaps the database work, and lanes
store different partitions concurrently on separate connections. A lane
dead-letters the invalid records, stores the valid ones in one transaction
(new events only reach the aggregates) and only then commits its partitions'
offsets to Kafka. A crash anywhere before the commit means redelivery, and
redelivery has no second effect because ``event_id`` is unique. See
docs/design.md ("Consumer") for the invariants.

Start-up never blocks on the broker: the component reports started at once
and connects with backoff while readiness check ``kafka_consumer`` fails.

The offset bookkeeping (held batches, stored positions, abandoned partitions)
is the pure :class:`~reco.consumer.ledger.Ledger`. Stop (reco/lifecycle.py):
fetching ends at once; each batch in hand finishes within the work part of
the share, or is abandoned (never committed, so redelivered); then the
clients close within the rest of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import anyio
import anyio.abc
import attrs
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from structlog.contextvars import bound_contextvars

from reco.consumer import dead_letter
from reco.consumer.batch import (
    BatchPlan,
    Progress,
    Rejected,
    conflict,
    lag_of,
    merge,
    split_lanes,
)  # fmt: skip
from reco.consumer.batch import plan_batch as _plan
from reco.consumer.clients import Listener
from reco.consumer.decode import InvalidRecord, Reason
from reco.consumer.ledger import Ledger
from reco.db.pool import Database
from reco.engine.ingest import Apply, Stored, store_batch
from reco.errors import DatabaseUnavailable, TransientError
from reco.events import WatchEvent
from reco.kafka import clients
from reco.kafka import errors as kafka_errors
from reco.lifecycle import Stop
from reco.observability import metrics
from reco.observability.logs import get_logger
from reco.observability.readiness import Readiness
from reco.retry import retrying
from reco.settings import ConsumerSettings, KafkaSettings

log = get_logger("reco.consumer")

CHECK = "kafka_consumer"
T = TypeVar("T")


@attrs.frozen
class ConsumerStatistics:
    """A snapshot of the ledger (tests and diagnostics)."""

    in_hand: int
    positions: dict[Any, int]
    abandoned: frozenset[Any]


class InHand:
    """Batches in hand, counted by the ledger, with an event a rebalance can wait on."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._idle = anyio.Event()
        self._idle.set()

    def hold(self) -> None:
        if self.ledger.idle:
            self._idle = anyio.Event()
        self.ledger.hold()

    def release(self) -> None:
        self.ledger.release()
        if self.ledger.idle:
            self._idle.set()

    async def wait_idle(self, bound: float) -> bool:
        """Until no batch is in hand, at most ``bound`` seconds; whether it got there."""
        with anyio.move_on_after(bound):
            await self._idle.wait()
        return self.ledger.idle


class WatchEventConsumer:
    """The component (see the module docstring)."""

    name = "consumer"

    def __init__(
        self, settings: ConsumerSettings, kafka: KafkaSettings, readiness: Readiness,
        database: Database, *, apply: Apply | None = None,
    ) -> None:  # fmt: skip
        """``apply`` is the fault-injection seam: the aggregates update of a batch's new
        events, inside its transaction (default :func:`reco.engine.ingest.apply_events`);
        tests stall or hang it there."""
        self.settings = settings
        self.kafka = kafka
        self.apply = apply
        self.readiness = readiness
        self.database = database
        self._stop = Stop()  # the supervisor's, from run()
        self._ledger = Ledger()
        self.in_hand = InHand(self._ledger)  # a seam for the rebalance tests
        self._progress = Progress(settings.stuck_after, 0.0)
        self._consumer: Any = None
        self._producer: Any = None
        self._batches = 0  # a sequence number for the logs

    def statistics(self) -> ConsumerStatistics:
        return ConsumerStatistics(
            in_hand=self._ledger.held, positions=dict(self._ledger.positions),
            abandoned=frozenset(self._ledger.abandoned),
        )  # fmt: skip

    # ------------------------------------------------------------- lifecycle
    async def run(self, *, task_status: anyio.abc.TaskStatus[None], stop: Stop) -> None:
        self._stop = stop
        self._progress.advanced(anyio.current_time())
        self.readiness.set(CHECK, False, "connecting to the broker")
        task_status.started()  # degraded until connected: readiness says so
        try:
            if not await self._connect():
                return
            self.readiness.set(CHECK, True)
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._watch_lag)
                await self._consume()
                tg.cancel_scope.cancel()
        finally:
            self.readiness.set(CHECK, False, "stopped")
            await self._close()

    async def _connect(self) -> bool:
        """Start the clients, retrying with backoff; False when stopped first."""
        with self._stop.idle():
            await self._retrying("connect", self._start_clients)
            return True
        return False

    async def _start_clients(self) -> None:
        consumer = clients.event_consumer(self.kafka, self.settings)
        listener = Listener(self._on_revoked, self._on_assigned)
        producer = clients.dead_letter_producer(self.kafka, self.settings)
        try:
            with anyio.fail_after(self.kafka.request_timeout):
                await consumer.start()  # bootstrap only: the group is joined while fetching
                await producer.start()
            consumer.subscribe([self.kafka.watch_events_topic], listener=listener)
        except BaseException:
            await _stop_quietly((producer, consumer), self.kafka.request_timeout, Stop())
            raise
        self._consumer, self._producer = consumer, producer
        log.info("consumer connected", topic=self.kafka.watch_events_topic)

    async def _close(self) -> None:
        """Leave the group and close the producer (shielded, bounded)."""
        clients = (self._producer, self._consumer)  # the producer's stop cannot fail
        self._consumer = self._producer = None
        await _stop_quietly(clients, self.kafka.request_timeout, self._stop)

    # ------------------------------------------------------------------ loop
    async def _consume(self) -> None:
        """Fetch and plan batches, hand them to the store lanes; return when stopped and drained."""
        lanes = self.settings.store_lanes
        streams = [anyio.create_memory_object_stream[BatchPlan](1) for _ in range(lanes)]
        async with anyio.create_task_group() as tg:
            for _, receive in streams:
                tg.start_soon(self._lane, receive)
            sends = [send for send, _ in streams]
            with contextlib.ExitStack() as closing:
                for send in sends:
                    closing.enter_context(send)  # closed on exit: the lanes drain and return
                while not self._stop.requested:
                    records = await self._fetch()
                    if records:
                        await self._dispatch(records, sends)

    async def _dispatch(
        self,
        records: Mapping[Any, Sequence[Any]],
        sends: Sequence[MemoryObjectSendStream[BatchPlan]],
    ) -> None:
        """Plan each lane's share (decoding here overlaps the lanes' storing) and queue it."""
        try:
            for lane, share in split_lanes(records, len(sends)).items():
                plan = _plan(
                    share, self.settings.max_message_bytes,
                    now=dt.datetime.now(dt.UTC), max_future=self.settings.event_max_future,
                )  # fmt: skip
                self.in_hand.hold()
                try:
                    await sends[lane].send(plan)
                except BaseException:
                    self.in_hand.release()  # never queued
                    raise
        finally:
            self.in_hand.release()  # the fetched batch itself (held since _fetch)

    async def _lane(self, plans: MemoryObjectReceiveStream[BatchPlan]) -> None:
        async with plans:
            async for plan in plans:
                try:
                    await self._handle(plan)
                finally:
                    self.in_hand.release()

    async def _fetch(self) -> dict[Any, list[Any]]:
        """One batch: wait for the first records, then gather more up to the bounds."""
        cfg = self.settings
        first: dict[Any, list[Any]] = {}
        with self._stop.idle():
            first = await self._retrying(
                "poll", lambda: self._getmany(cfg.batch_wait, cfg.batch_max)
            )
        if not first:
            return {}
        self.in_hand.hold()  # a batch is in hand from here on; _dispatch releases it
        try:
            return await self._gather(first)
        except BaseException:
            self.in_hand.release()
            raise

    async def _gather(self, records: dict[Any, list[Any]]) -> dict[Any, list[Any]]:
        cfg = self.settings
        deadline = anyio.current_time() + cfg.batch_wait
        count = sum(map(len, records.values()))
        while count < cfg.batch_max and not self._stop.requested:
            left = deadline - anyio.current_time()
            if left <= 0:
                break
            more = await self._getmany(left, cfg.batch_max - count)
            records = merge(records, more)
            count += sum(map(len, more.values()))
        return records

    async def _getmany(self, wait: float, most: int) -> dict[Any, list[Any]]:
        records: dict[Any, list[Any]] = await self._consumer.getmany(
            timeout_ms=int(wait * 1000), max_records=most
        )
        self._ledger.fetched(records)
        return records

    async def _handle(self, plan: BatchPlan) -> None:
        self._batches += 1
        partitions = sorted(tp.partition for tp in plan.next_offsets)
        with (
            self._stop.work() as work,
            work.in_hand(),
            bound_contextvars(component=self.name, batch=self._batches, partitions=partitions),
        ):
            await self._process(plan)
        if work.scope.cancelled_caught:
            # never commit a later batch of these partitions past this one
            self._ledger.abandon(plan.next_offsets)
            log.warning("batch abandoned at shutdown; it will be redelivered")

    async def _process(self, plan: BatchPlan) -> None:
        """Store, then dead-letter what was rejected, then commit: a crash anywhere redelivers.

        Redelivery stores nothing twice (``event_id`` is unique) and rejects the
        same records again, so the dead-letter topic gets each at least once.
        """
        began = time.perf_counter()
        stored = await self._retrying("process", lambda: self._store(plan.events))
        rejected = [*plan.rejected, *_rejected_at_store(plan, stored)]
        if rejected:
            await self._retrying("dead_letter", lambda: self._dead_letter(rejected))
            for item in rejected:
                log.warning("dead-lettered", reason=item.error.code.value, detail=item.error.detail,
                            partition=item.record.partition, offset=item.record.offset)  # fmt: skip
        self._count(plan, stored)
        metrics.consumer_batch_duration.observe({}, time.perf_counter() - began)
        self._progress.advanced(anyio.current_time())
        self._ledger.stored(plan.next_offsets)
        await self._commit(plan.next_offsets)

    async def _dead_letter(self, rejected: Sequence[Rejected]) -> None:
        await dead_letter.send_all(
            self._producer, rejected, topic=self.kafka.dead_letter_topic, group=self.settings.group
        )

    async def _store(self, events: Sequence[WatchEvent]) -> Stored:
        """One transaction: insert the events, apply the new ones, isolate what is refused."""
        try:
            with anyio.fail_after(self.settings.batch_timeout):
                async with self.database.connection(background=True) as conn, conn.transaction():
                    return await store_batch(conn, events, self.apply)
        except TimeoutError:
            raise DatabaseUnavailable(
                f"batch not stored within {self.settings.batch_timeout:g} s"
            ) from None

    def _count(self, plan: BatchPlan, stored: Stored) -> None:
        new, conflicts, refused = (
            len(stored.new_ids), len(stored.conflicts), len(stored.unprocessable)
        )  # fmt: skip
        invalid = sum(r.error.code is not Reason.CONFLICTING_DUPLICATE for r in plan.rejected)
        outcomes = {
            "processed": new,
            "duplicate": plan.duplicates + len(plan.events) - new - conflicts - refused,
            "invalid": invalid,
            "conflict": len(plan.rejected) - invalid + conflicts,
            "unprocessable": refused,
        }
        for outcome, n in outcomes.items():
            if n:
                metrics.consumer_messages.add({"outcome": outcome}, n)
        metrics.consumer_last_processed.set({}, time.time())
        log.debug("batch stored", size=plan.size, **outcomes)

    async def _commit(self, next_offsets: Mapping[Any, int]) -> None:
        """Commit after the transaction; a failure is logged, the next commit covers it."""
        offsets = self._ledger.committable(next_offsets, self._consumer.assignment())
        if not offsets:
            return
        try:
            async for attempt in retrying(
                _retriable_commit, attempts=3,
                initial=self.kafka.retry_initial, maximum=self.kafka.retry_max,
            ):  # fmt: skip
                with attempt, anyio.fail_after(self.kafka.request_timeout):
                    await self._consumer.commit(offsets)
        except Exception as exc:  # noqa: BLE001 - any failed commit is covered by the next one
            metrics.consumer_errors.inc({"stage": "commit"})
            log.warning("offset commit failed; redelivery is harmless", error=repr(exc))

    async def _retrying(self, stage: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn`` until it succeeds, retrying transient errors with backoff.

        Each failure is counted and logged, and lasts as long as the dependency
        is away (readiness says so). Anything else (a permanent error, a bug)
        is not retried: it propagates and stops the process, loudly.
        """
        async for attempt in retrying(
            TransientError, initial=self.kafka.retry_initial, maximum=self.kafka.retry_max
        ):
            with attempt:
                try:
                    return await fn()
                except Exception as exc:
                    error = kafka_errors.transient(exc)
                    if error is None:
                        raise
                    if stage != "connect":
                        metrics.consumer_errors.inc({"stage": stage})
                    log.warning("consumer error; retrying", stage=stage, error=repr(exc))
                    raise error from exc
        raise AssertionError("unreachable: retries are unbounded")

    # ------------------------------------------------------------- rebalance
    async def _on_revoked(self, revoked: Iterable[Any]) -> None:
        """Let the batch in hand finish (bounded); if it cannot, never commit it there."""
        revoked = set(revoked)
        if not await self.in_hand.wait_idle(self.settings.drain_timeout):
            self._ledger.abandon(revoked)
            log.warning("rebalance while storing a batch; no commit for revoked partitions")
        self._ledger.revoked(revoked)
        for tp in revoked:
            metrics.consumer_lag.values.pop({"partition": str(tp.partition)}, None)

    def _on_assigned(self, assigned: Iterable[Any]) -> None:
        assigned = set(assigned)
        self._ledger.assigned(assigned)
        self._progress.advanced(anyio.current_time())
        log.info("partitions assigned", partitions=sorted(tp.partition for tp in assigned))

    # ------------------------------------------------------------------- lag
    async def _watch_lag(self) -> None:
        while True:
            try:
                await self._update_lag()
            except Exception as exc:  # noqa: BLE001 - a missed measurement is not fatal
                log.info("lag not measured", error=repr(exc))
                # The broker is unreachable (or too slow): as at start-up, readiness says so.
                self.readiness.set(CHECK, False, f"lag not measured: {type(exc).__name__}")
            await anyio.sleep(self.settings.lag_interval)

    async def _update_lag(self) -> None:
        """Set the lag gauges and the readiness check from the broker's end offsets."""
        assigned = list(self._consumer.assignment())
        ends: dict[Any, int] = {}
        with anyio.fail_after(self.kafka.request_timeout):
            if assigned:
                ends = await self._consumer.end_offsets(assigned)
            else:  # not (yet) in the group: still prove the broker answers (a metadata request)
                await self._consumer.topics()
        metrics.consumer_assigned_partitions.set({}, len(assigned))
        known = self._consumer.partitions_for_topic(self.kafka.watch_events_topic)
        if known:  # what the fleet's assignments must cover (alert RecoConsumerPartitionsUnowned)
            metrics.consumer_topic_partitions.set({}, len(known))
        total = 0
        for tp in assigned:
            position = self._ledger.position(tp)
            if position is None:
                position = await self._position(tp)
            lag = lag_of(ends.get(tp), position)
            if lag is not None:
                metrics.consumer_lag.set({"partition": str(tp.partition)}, lag)
                total += lag
        self._report(total)

    async def _position(self, tp: Any) -> int | None:
        if not self._ledger.idle:
            return None  # the fetch position runs ahead of what is stored
        with anyio.move_on_after(self.kafka.request_timeout):
            position: int = await self._consumer.position(tp)
            return position
        return None

    def _report(self, total_lag: int) -> None:
        stuck = self._progress.observe(total_lag, anyio.current_time())
        if stuck:
            detail = f"no progress for over {self.settings.stuck_after:g} s with lag"
            self.readiness.set(CHECK, False, detail, lag=total_lag)
        else:
            self.readiness.set(CHECK, True, lag=total_lag)


def _rejected_at_store(plan: BatchPlan, stored: Stored) -> list[Rejected]:
    """Dead-letter entries for the events the store refused or found conflicting."""
    out = [plan.rejected_at_store(e, conflict(*first)) for e, first in stored.conflicts]
    out += [
        plan.rejected_at_store(e, InvalidRecord(Reason.UNPROCESSABLE, str(error)))
        for e, error in stored.unprocessable
    ]
    return out


def _retriable_commit(exc: Exception) -> bool:
    return isinstance(exc, TimeoutError) or bool(getattr(exc, "retriable", False))


async def _stop_quietly(clients: Iterable[Any], bound: float, stop: Stop) -> None:
    """Stop aiokafka clients, shielded, each within ``bound`` and the stop's share.

    aiokafka's ``AIOKafkaConsumer.stop()`` can raise ``CancelledError`` (seen
    with 0.14: its fetcher cancels its own fetch tasks, then awaits them; cf.
    aio-libs/aiokafka issue 647). Under our shield that is not a cancellation
    aimed at us unless our own bound ran out: then the scope absorbs it and it
    is logged as a timeout; otherwise it is logged as leaked and not propagated
    (propagated, it would end ``run()`` as if the component had been cancelled).
    """
    for client in clients:
        if client is None:
            continue
        with stop.cleanup(bound) as scope:
            try:
                await client.stop()
            except Exception as exc:  # noqa: BLE001 - closing is best effort
                log.warning("kafka client did not stop cleanly", error=repr(exc))
            except asyncio.CancelledError:
                if scope.cancel_called:
                    raise  # our own bound: the scope absorbs it (below)
                log.warning("kafka client stop leaked a CancelledError; ignored")
        if scope.cancelled_caught:
            log.warning("kafka client did not stop within its bound", bound=bound)
