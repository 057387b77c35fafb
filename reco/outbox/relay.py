"""The outbox relay: publishes committed outbox rows to Kafka, in order, at least once.

Leadership: every instance runs a relay, exactly one publishes. It holds the
session advisory lock ``LOCK_KEY`` on a dedicated (never pooled) connection;
a standby retries ``pg_try_advisory_lock`` every ``relay_leader_retry``.
When the leader's connection dies the server releases the lock and a
standby takes over. The leader pings its lock connection every
``relay_leader_retry`` within ``db_health_timeout`` (and reacts at once when
asyncpg reports it closed); when a ping fails it stops publishing and drops
the connection.

A leader whose network silently drops (no FIN, no RST) cannot release the
lock itself. The server ends the lock session after ``relay_failover_timeout``
without a query (``idle_session_timeout`` on that connection only: the pings
keep a live leader's session busy), which releases the lock; TCP keepalives
(reco.db.pool) do the same for a dead peer host within ``db_tcp_dead_after``.
The old leader has stopped sending by then: settings insist that
``relay_failover_timeout`` exceeds ping interval + ping timeout +
``relay_stop_timeout`` (the last sends' flush), so two relays do not publish at
once; a standby leads within ``relay_failover_timeout + relay_leader_retry``.

Loop (leader): claim up to ``relay_batch_max`` rows below the snapshot xmin
in id order, send them, mark the acknowledged prefix published. Any failure
restarts from the oldest unpublished row with a fresh producer, under stamina
backoff (which also covers a broker that is down at start-up). Wakes on
``LISTEN reco_outbox`` (dedicated connection) or every ``relay_poll_interval``.
Prunes published rows older than ``outbox_retention``.

Every instance reports the ``outbox`` readiness check (backlog, oldest age,
leader); it fails when the oldest unpublished row is older than
``outbox_max_age``.

Stop (reco/lifecycle.py): a standby stops at once; the leader finishes the
batch in hand within the work part of its share; rows not marked are
published again later. ``relay_stop_timeout`` bounds the last sends' flush
(the producer's close) and so the step-down.
"""

from __future__ import annotations

import functools
import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import asyncpg
import attrs
from aiokafka import AIOKafkaProducer

from reco.db.pool import Database, connect
from reco.errors import BrokerUnavailable
from reco.kafka import clients
from reco.kafka import errors as kafka_errors
from reco.lifecycle import Stop, Work
from reco.observability import metrics
from reco.observability.logs import get_logger
from reco.observability.readiness import Readiness
from reco.outbox import queries
from reco.outbox.publish import MAX_BATCH_BYTES, BatchOutcome, send_batch
from reco.retry import retrying
from reco.settings import DatabaseSettings, KafkaSettings, RelaySettings

log = get_logger("reco.outbox.relay")

CHECK = "outbox"
LOCK_KEY = int.from_bytes(b"reco.rly", "big", signed=True)  # any fixed bigint would do
PRUNE_CHUNK = 10_000


class PublishFailed(BrokerUnavailable):
    """A batch was not fully acknowledged; retry from the oldest unpublished row."""


class LeadershipLost(Exception):
    """The lock connection is gone; another relay may lead now."""


@attrs.frozen
class RelayStatistics:
    leading: bool = False
    claims: int = 0  # claim queries run while leading
    batches: int = 0  # batches sent while leading


class OutboxRelay:
    name = "outbox-relay"

    def __init__(
        self, settings: RelaySettings, kafka: KafkaSettings, database: Database,
        readiness: Readiness, *, producer: Callable[[], AIOKafkaProducer] | None = None,
    ) -> None:  # fmt: skip
        """``producer`` is the fault-injection seam: it makes the producer of each publishing
        attempt (default :func:`reco.kafka.clients.relay_producer`)."""
        self.settings = settings
        self.kafka = kafka
        self._make_producer = producer or functools.partial(
            clients.relay_producer, kafka, settings, max_batch_size=MAX_BATCH_BYTES
        )
        self.database = database
        self.readiness = readiness
        self.leading = False
        self._stats = RelayStatistics()
        self._stop = Stop()  # replaced by the supervisor's in run()
        self._wake = anyio.Event()

    def statistics(self) -> RelayStatistics:
        """A snapshot: leadership, claims run and batches sent while leading."""
        return attrs.evolve(self._stats, leading=self.leading)

    # --- component ---------------------------------------------------------------
    async def run(self, *, task_status: anyio.abc.TaskStatus[None], stop: Stop) -> None:
        self._stop = stop
        self._set_leader(False)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._watch_backlog)
            task_status.started()
            await self._contend()
            tg.cancel_scope.cancel()

    # --- leadership --------------------------------------------------------------
    async def _contend(self) -> None:
        while not self._stop.requested:
            try:
                await self._stand_by_then_lead()
            except Exception as exc:  # noqa: BLE001 - logged; contend again after a pause
                log.warning("relay not leading", error=repr(exc))
            self._set_leader(False)
            with self._stop.idle():
                await anyio.sleep(self.settings.leader_retry)

    async def _stand_by_then_lead(self) -> None:
        silence = {"idle_session_timeout": str(int(self.settings.failover_timeout * 1000))}
        conn: asyncpg.Connection | None = None
        try:
            with self._stop.idle():  # a standby stops at once
                conn = await connect(
                    self.database.settings, "reco-relay-lock", extra_settings=silence
                )
                while not await queries.try_lock(conn, LOCK_KEY):  # noqa: ASYNC110 - a poll
                    await anyio.sleep(self.settings.leader_retry)
            if conn is not None and not self._stop.requested:
                await self._lead(conn)
        finally:
            if conn is not None:
                await _close(conn, self.database.settings, self._stop)

    async def _lead(self, lock_conn: asyncpg.Connection) -> None:
        self._set_leader(True)
        log.info("relay leads")
        lost = anyio.Event()
        lock_conn.add_termination_listener(lambda _conn: lost.set())
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._hold, lock_conn, lost)
                tg.start_soon(self._keep_listening)
                tg.start_soon(self._prune_loop)
                await self._publish_loop()
                tg.cancel_scope.cancel()
        finally:
            self._set_leader(False)

    async def _hold(self, lock_conn: asyncpg.Connection, lost: anyio.Event) -> None:
        """Raise :class:`LeadershipLost` as soon as the lock connection fails."""
        cfg = self.settings
        while True:
            with anyio.move_on_after(cfg.leader_retry):
                await lost.wait()
            try:
                with anyio.fail_after(self.database.settings.health_timeout):
                    await lock_conn.fetchval("SELECT 1")
            except Exception as exc:
                log.warning("relay lock connection lost; stepping down", error=repr(exc))
                self._set_leader(False)  # now: the publish loop is cancelled, claims nothing more
                lock_conn.terminate()  # its state is unknown; never wait on it again
                raise LeadershipLost from exc

    async def _keep_listening(self) -> None:
        """LISTEN on a dedicated connection; reopen it when it dies (polling covers the gap)."""
        conn: asyncpg.Connection | None = None
        try:
            while True:
                if conn is None or conn.is_closed():
                    conn = await self._listen()
                    self._wake.set()  # notifications may have been missed: claim now
                await anyio.sleep(self.settings.leader_retry)
        finally:
            if conn is not None:
                await _close(conn, self.database.settings, self._stop)

    async def _listen(self) -> asyncpg.Connection | None:
        try:
            conn = await connect(self.database.settings, "reco-relay-listen")
        except Exception as exc:  # noqa: BLE001 - polling still works
            log.warning("cannot LISTEN; polling only", error=repr(exc))
            return None
        try:
            await conn.add_listener(queries.NOTIFY_CHANNEL, self._on_notify)
        except BaseException as exc:  # cancelled (leadership lost) or failed: never leak it
            await _close(conn, self.database.settings, self._stop)
            if not isinstance(exc, Exception):
                raise
            log.warning("cannot LISTEN; polling only", error=repr(exc))
            return None
        return conn

    def _on_notify(self, *_args: Any) -> None:
        self._wake.set()

    def _set_leader(self, leading: bool) -> None:
        self.leading = leading
        metrics.outbox_leader.set({}, 1 if leading else 0)
        current = self.readiness.get(CHECK)
        if current is not None:  # readiness shows a change of leadership at once
            self.readiness.set(
                CHECK, current.ok, current.detail, **{**current.data, "leader": leading}
            )

    # --- publishing --------------------------------------------------------------
    async def _publish_loop(self) -> None:
        with self._stop.work() as work:  # on stop: ends after the batch in hand
            async for attempt in retrying(
                kafka_errors.is_transient, initial=self.kafka.retry_initial,
                maximum=self.kafka.retry_max,
            ):  # fmt: skip
                with attempt:
                    async with self._producer() as producer:
                        await self._pump(producer, work)

    @asynccontextmanager
    async def _producer(self) -> AsyncIterator[AIOKafkaProducer]:
        producer = self._make_producer()
        try:
            await producer.start()
            yield producer
        finally:
            with self._stop.cleanup(self.settings.stop_timeout):  # the last sends' flush
                await producer.stop()

    async def _pump(self, producer: AIOKafkaProducer, work: Work) -> None:
        cfg = self.settings
        while not self._stop.requested:
            self._wake = anyio.Event()  # before the claim: a NOTIFY during it is kept
            rows = await self._claim()
            if not rows:
                with self._stop.idle(), anyio.move_on_after(cfg.poll_interval):
                    await self._wake.wait()
                continue
            with work.in_hand():
                await self._publish(producer, rows)

    async def _claim(self) -> list[queries.PendingRow]:
        try:
            async with self.database.connection() as conn:
                rows = await queries.fetch_pending(conn, self.settings.batch_max)
        except Exception:
            metrics.outbox_errors.inc({"stage": "claim"})
            raise
        self._stats = attrs.evolve(self._stats, claims=self._stats.claims + 1)
        return rows

    async def _publish(self, producer: AIOKafkaProducer, rows: list[queries.PendingRow]) -> None:
        outcome = BatchOutcome(acked=0)
        with anyio.move_on_after(self.settings.publish_timeout):
            await send_batch(producer, rows, outcome)
        self._stats = attrs.evolve(self._stats, batches=self._stats.batches + 1)
        if outcome.acked:
            await self._mark([row.id for row in rows[: outcome.acked]])
        if outcome.acked < len(rows):
            metrics.outbox_errors.inc({"stage": "publish"})
            if outcome.rejected:
                await self._isolate(producer, rows[outcome.acked])
                return  # the rows behind it are claimed again, in order
            log.warning(
                "publish incomplete; retrying from the oldest unpublished row",
                acked=outcome.acked, batch=len(rows), error=outcome.error,
            )  # fmt: skip
            raise PublishFailed(outcome.error)

    async def _isolate(self, producer: AIOKafkaProducer, row: queries.PendingRow) -> None:
        """A batch was refused for good at ``row``: publish it alone; refused alone, set it aside.

        A permanent refusal is never retried: the row is stamped with the broker's
        error (``outbox.publish_error``), counted and logged, and the rows behind
        it move on. Anything else is retried from the oldest unpublished row.
        """
        alone = BatchOutcome(acked=0)
        with anyio.move_on_after(self.settings.publish_timeout):
            await send_batch(producer, [row], alone)
        if alone.acked:
            await self._mark([row.id])
            return
        if not alone.rejected:
            raise PublishFailed(alone.error)
        bound = self.database.settings.statement_timeout + 1
        with self._stop.cleanup(bound), anyio.fail_after(bound):
            async with self.database.connection() as conn:
                await queries.mark_rejected(conn, row.id, alone.error[:500])
        metrics.outbox_rejected.inc({"topic": row.topic})
        log.error("outbox row refused by the broker; set aside", row=row.id,
                  event_id=row.event_id, topic=row.topic, error=alone.error)  # fmt: skip

    async def _mark(self, ids: list[int]) -> None:
        try:
            # Marked even when cancelled (within the share): unmarked rows are sent again.
            bound = self.database.settings.statement_timeout + 1
            with self._stop.cleanup(bound), anyio.fail_after(bound):
                async with self.database.connection() as conn:
                    await queries.mark_published(conn, ids)
        except Exception:
            metrics.outbox_errors.inc({"stage": "mark"})
            raise

    # --- housekeeping ------------------------------------------------------------
    async def _prune_loop(self) -> None:
        while True:
            try:
                await self.prune_once()
            except Exception as exc:  # noqa: BLE001 - logged; tried again next interval
                log.warning("outbox prune failed", error=repr(exc))
            await anyio.sleep(self.settings.outbox_prune_interval)

    async def prune_once(self) -> int:
        """Delete published rows older than ``outbox_retention``, in chunks."""
        total = 0
        while True:
            async with self.database.connection() as conn:
                deleted = await queries.prune(conn, self.settings.outbox_retention, PRUNE_CHUNK)
            total += deleted
            if deleted < PRUNE_CHUNK:
                break
        if total:
            metrics.outbox_pruned.add({}, total)
            log.info("outbox pruned", deleted=total)
        return total

    async def _watch_backlog(self) -> None:
        while True:
            await self.check_backlog()
            await anyio.sleep(self.settings.outbox_check_interval)

    async def check_backlog(self) -> None:
        """Update the backlog gauges and the ``outbox`` readiness check."""
        try:
            async with self.database.connection() as conn:
                backlog = await queries.backlog(conn)
        except Exception as exc:  # noqa: BLE001 - reported as a failing check
            detail = f"backlog unknown: {type(exc).__name__}"
            self.readiness.set(CHECK, False, detail, leader=self.leading)
            return
        metrics.outbox_backlog.set({}, backlog.unpublished)
        metrics.outbox_oldest_age.set({}, backlog.oldest_age)
        ok = backlog.oldest_age <= self.settings.outbox_max_age
        detail = "" if ok else f"oldest unpublished row is {math.floor(backlog.oldest_age)} s old"
        self.readiness.set(
            CHECK, ok, detail, unpublished=backlog.unpublished,
            oldest_age_seconds=round(backlog.oldest_age, 3), leader=self.leading,
        )  # fmt: skip


async def _close(conn: asyncpg.Connection, settings: DatabaseSettings, stop: Stop) -> None:
    """Close a dedicated connection (releasing its locks), bounded and shielded."""
    bound = settings.connect_timeout
    with stop.cleanup(bound):
        try:
            await conn.close(timeout=bound)
        except Exception:  # noqa: BLE001 - a dead connection: just let it go
            conn.terminate()
            return
    if not conn.is_closed():
        conn.terminate()
