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
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import anyio
import anyio.abc
import stamina
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from structlog.contextvars import bound_contextvars

from reco.consumer import dead_letter
from reco.consumer.batch import (
    BatchPlan,
    Progress,
    Rejected,
    committable,
    conflict,
    lag_of,
    merge,
    split_lanes,
)  # fmt: skip
from reco.consumer.batch import plan_batch as _plan
from reco.consumer.clients import Listener
from reco.consumer.decode import InvalidRecord, Reason
from reco.db.pool import Database
from reco.engine.ingest import Stored, store_batch
from reco.errors import DatabaseUnavailable, TransientError
from reco.events import WatchEvent
from reco.kafka import clients
from reco.kafka import errors as kafka_errors
from reco.observability import metrics
from reco.observability.logs import get_logger
from reco.observability.readiness import Readiness
from reco.settings import ConsumerSettings, KafkaSettings

log = get_logger("reco.consumer")

CHECK = "kafka_consumer"
T = TypeVar("T")


class WatchEventConsumer:
    """The component (see the module docstring); ``stop_nowait`` drains the batch in hand."""

    name = "consumer"

    def __init__(
        self, settings: ConsumerSettings, kafka: KafkaSettings, readiness: Readiness,
        database: Database,
    ) -> None:  # fmt: skip
        self.settings = settings
        self.kafka = kafka
        self.readiness = readiness
        self.database = database
        self._stop = anyio.Event()
        self._stop_scopes: set[anyio.CancelScope] = set()
        self._batch_scopes: set[anyio.CancelScope] = set()  # the batches being stored
        self._drain_at = math.inf  # when stopping: the deadline of every batch in hand
        self._idle = anyio.Event()  # set while no batch is in hand (fetched, queued or storing)
        self._idle.set()
        self._in_hand = 0
        # revoked while a batch of theirs was in hand, or abandoned at shutdown: never committed
        # again until assigned anew
        self._abandoned: set[Any] = set()
        self._positions: dict[Any, int] = {}  # per partition: the next offset not yet stored
        self._progress = Progress(settings.stuck_after, 0.0)
        self._consumer: Any = None
        self._producer: Any = None
        self._batches = 0  # a sequence number for the logs

    # ------------------------------------------------------------- lifecycle
    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
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

    def stop_nowait(self) -> None:
        """Stop fetching now; the batches in hand get ``consumer_drain_timeout`` to finish."""
        if not self._stop.is_set():
            self._drain_at = anyio.current_time() + self.settings.drain_timeout
        self._stop.set()
        for scope in self._stop_scopes:
            scope.cancel()
        for scope in self._batch_scopes:
            scope.deadline = min(scope.deadline, self._drain_at)

    @contextlib.contextmanager
    def _cancelled_on_stop(self) -> Iterator[anyio.CancelScope]:
        with anyio.CancelScope() as scope:
            self._stop_scopes.add(scope)
            if self._stop.is_set():
                scope.cancel()
            try:
                yield scope
            finally:
                self._stop_scopes.discard(scope)

    async def _connect(self) -> bool:
        """Start the clients, retrying with backoff; False when stopped first."""
        with self._cancelled_on_stop():
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
            await _stop_quietly((producer, consumer), self.kafka.request_timeout)
            raise
        self._consumer, self._producer = consumer, producer
        log.info("consumer connected", topic=self.kafka.watch_events_topic)

    async def _close(self) -> None:
        """Leave the group and close the producer (shielded, bounded)."""
        clients = (self._producer, self._consumer)  # the producer's stop cannot fail
        self._consumer = self._producer = None
        await _stop_quietly(clients, self.kafka.request_timeout)

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
                while not self._stop.is_set():
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
                self._hold()
                try:
                    await sends[lane].send(plan)
                except BaseException:
                    self._release()  # never queued
                    raise
        finally:
            self._release()  # the fetched batch itself (held since _fetch)

    async def _lane(self, plans: MemoryObjectReceiveStream[BatchPlan]) -> None:
        async with plans:
            async for plan in plans:
                try:
                    await self._handle(plan)
                finally:
                    self._release()

    def _hold(self) -> None:
        if self._in_hand == 0:
            self._idle = anyio.Event()
        self._in_hand += 1

    def _release(self) -> None:
        self._in_hand -= 1
        if self._in_hand == 0:
            self._idle.set()

    async def _fetch(self) -> dict[Any, list[Any]]:
        """One batch: wait for the first records, then gather more up to the bounds."""
        cfg = self.settings
        first: dict[Any, list[Any]] = {}
        with self._cancelled_on_stop():
            first = await self._retrying(
                "poll", lambda: self._getmany(cfg.batch_wait, cfg.batch_max)
            )
        if not first:
            return {}
        self._hold()  # a batch is in hand from here on; _dispatch releases it
        try:
            return await self._gather(first)
        except BaseException:
            self._release()
            raise

    async def _gather(self, records: dict[Any, list[Any]]) -> dict[Any, list[Any]]:
        cfg = self.settings
        deadline = anyio.current_time() + cfg.batch_wait
        count = sum(map(len, records.values()))
        while count < cfg.batch_max and not self._stop.is_set():
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
        for tp, batch in records.items():
            if batch:
                self._positions.setdefault(tp, batch[0].offset)
        return records

    async def _handle(self, plan: BatchPlan) -> None:
        self._batches += 1
        partitions = sorted(tp.partition for tp in plan.next_offsets)
        with (
            anyio.CancelScope(deadline=self._drain_at) as scope,
            bound_contextvars(component=self.name, batch=self._batches, partitions=partitions),
        ):
            self._batch_scopes.add(scope)
            try:
                await self._process(plan)
            finally:
                self._batch_scopes.discard(scope)
        if scope.cancelled_caught:
            # never commit a later batch of these partitions past this one
            self._abandoned |= set(plan.next_offsets)
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
        for tp, offset in plan.next_offsets.items():
            if tp not in self._abandoned:
                self._positions[tp] = offset
        await self._commit(plan.next_offsets)

    async def _dead_letter(self, rejected: Sequence[Rejected]) -> None:
        await dead_letter.send_all(
            self._producer, rejected, topic=self.kafka.dead_letter_topic, group=self.settings.group
        )

    async def _store(self, events: Sequence[WatchEvent]) -> Stored:
        """One transaction: insert the events, apply the new ones, isolate what is refused."""
        try:
            with anyio.fail_after(self.settings.batch_timeout):
                async with self.database.connection() as conn, conn.transaction():
                    return await store_batch(conn, events)
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
        offsets = committable(next_offsets, self._consumer.assignment(), self._abandoned)
        if not offsets:
            return
        try:
            async for attempt in stamina.retry_context(
                on=_retriable_commit, attempts=3, timeout=None,
                wait_initial=self.kafka.retry_initial, wait_max=self.kafka.retry_max,
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
        async for attempt in stamina.retry_context(
            on=TransientError, attempts=None, timeout=None,
            wait_initial=self.kafka.retry_initial, wait_max=self.kafka.retry_max,
        ):  # fmt: skip
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
        if not self._idle.is_set():
            with anyio.move_on_after(self.settings.drain_timeout):
                await self._idle.wait()
            if not self._idle.is_set():
                self._abandoned |= revoked
                log.warning("rebalance while storing a batch; no commit for revoked partitions")
        for tp in revoked:
            self._positions.pop(tp, None)
            metrics.consumer_lag.values.pop({"partition": str(tp.partition)}, None)

    def _on_assigned(self, assigned: Iterable[Any]) -> None:
        assigned = set(assigned)
        self._abandoned -= assigned  # ours again: batches fetched from now on commit
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
            position = self._positions.get(tp)
            if position is None:
                position = await self._position(tp)
            lag = lag_of(ends.get(tp), position)
            if lag is not None:
                metrics.consumer_lag.set({"partition": str(tp.partition)}, lag)
                total += lag
        self._report(total)

    async def _position(self, tp: Any) -> int | None:
        if not self._idle.is_set():
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


async def _stop_quietly(clients: Iterable[Any], bound: float) -> None:
    """Stop aiokafka clients, shielded, each within ``bound``; errors are logged.

    aiokafka's ``AIOKafkaConsumer.stop()`` can raise ``CancelledError`` (seen
    with 0.14: its fetcher cancels its own fetch tasks, then awaits them; cf.
    aio-libs/aiokafka issue 647). Under our shield that cannot be a
    cancellation aimed at us, so it is logged, not propagated (propagated, it
    would end ``run()`` as if the component had been cancelled).
    """
    with anyio.CancelScope(shield=True):
        for client in clients:
            if client is None:
                continue
            with anyio.move_on_after(bound):
                try:
                    await client.stop()
                except Exception as exc:  # noqa: BLE001 - closing is best effort
                    log.warning("kafka client did not stop cleanly", error=repr(exc))
                except asyncio.CancelledError:
                    log.warning("kafka client stop leaked a CancelledError; ignored")
