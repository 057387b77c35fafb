"""The impression writer: drains the buffer into PostgreSQL in batches.

Each batch is one transaction inserting the impressions and their outbox rows
(topic ``impressions_topic``, key = user id, or the recommendation id for an
anonymous user); the insert trigger wakes the relay at commit. Both go in by
COPY (a third of the client CPU of the ``unnest`` inserts); COPY cannot skip
a row already stored, so when an attempt meets one (the retry of a batch
whose commit succeeded unseen), the batch is written again with the
idempotent ``INSERT ... ON CONFLICT DO NOTHING`` forms.

Each write attempt is one transaction, so a batch is either committed or not,
never half-written; it runs under the stop's work scope and its own bound.
Transient database errors are retried (stamina, with the database retry
backoff) up to ``writer_retry_timeout``; a batch that still cannot be written
is logged and counted as dropped.

Stop (reco/lifecycle.py): the buffer is closed (handlers now get 503 / drop;
HTTP has stopped before the writer anyway) and the writer writes what is left
within the work part of its share. Whatever is still buffered after that is
logged and counted in ``reco_background_dropped_total``: never silently lost.
"""

from __future__ import annotations

import time

import anyio
import anyio.abc
import asyncpg

from reco.db.classify import is_transient
from reco.db.pool import Database
from reco.errors import TransientError, UnprocessableData
from reco.impressions.buffer import ImpressionBuffer
from reco.impressions.model import Impression
from reco.impressions.queries import copy_impressions, insert_impressions
from reco.impressions.rows import outbox_rows
from reco.lifecycle import Stop
from reco.observability import metrics
from reco.observability.logs import get_logger
from reco.outbox import queries as outbox
from reco.retry import retrying
from reco.settings import ImpressionSettings

log = get_logger("reco.impressions.writer")


def _retryable(exc: Exception) -> bool:
    return isinstance(exc, TransientError) or is_transient(exc)


class ImpressionWriter:
    name = "impression-writer"

    def __init__(
        self, settings: ImpressionSettings, database: Database, buffer: ImpressionBuffer, *,
        topic: str,
    ) -> None:  # fmt: skip
        """``topic``: where the outbox sends the impressions (``RECO_IMPRESSIONS_TOPIC``)."""
        self.settings = settings
        self.topic = topic
        self.database = database
        self.buffer = buffer
        self._batch: list[Impression] = []
        self._drained = False

    async def run(self, *, task_status: anyio.abc.TaskStatus[None], stop: Stop) -> None:
        task_status.started()
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._close_on_stop, stop)
                with stop.work() as work, work.in_hand():
                    while await self._next_batch():
                        await self._write()
                    self._drained = True
                tg.cancel_scope.cancel()
        finally:
            self._account_leftovers()

    async def _close_on_stop(self, stop: Stop) -> None:
        """Phase one: no more impressions; the loop writes what is left, then ends."""
        await stop.wait()
        self.buffer.close()

    async def _next_batch(self) -> bool:
        """Collect up to ``writer_batch_max`` impressions; False once closed and empty."""
        receive, limit = self.buffer.receive, self.settings.batch_max
        try:
            self._batch.append(await receive.receive())
        except anyio.EndOfStream:
            return False
        with anyio.move_on_after(self.settings.batch_wait):
            while len(self._batch) < limit:
                try:
                    self._batch.append(await receive.receive())
                except anyio.EndOfStream:
                    break
        metrics.background_queue_depth.set({}, self.buffer.statistics().depth)
        return True

    async def _write(self) -> None:
        batch, began = self._batch, time.perf_counter()
        size, retry = len(batch), self.database.settings
        try:
            async for attempt in retrying(
                _retryable, timeout=self.settings.retry_timeout,
                initial=retry.retry_initial, maximum=retry.retry_max,
            ):  # fmt: skip
                with attempt:
                    await self._write_once(batch)
        except Exception as exc:  # noqa: BLE001 - counted and logged; the writer goes on
            metrics.background_errors.inc({})
            log.warning("impression batch not written", size=size, error=repr(exc))
            self.buffer.count_dropped(len(batch), "write failed")
            batch.clear()
            return
        metrics.background_written.add({}, size)
        metrics.background_batch_duration.observe({}, time.perf_counter() - began)

    async def _write_once(self, batch: list[Impression]) -> None:
        """One bounded transaction; clears ``batch`` once committed."""
        rows = outbox_rows(batch, self.topic)
        with anyio.fail_after(self._attempt_timeout):
            try:
                async with self.database.connection(background=True) as conn, conn.transaction():
                    await copy_impressions(conn, batch)
                    await outbox.copy_rows(conn, rows)
            except UnprocessableData as exc:
                if not isinstance(exc.__cause__, asyncpg.UniqueViolationError):
                    raise
                async with self.database.connection(background=True) as conn, conn.transaction():
                    await insert_impressions(conn, batch)
                    await outbox.enqueue(conn, rows)
            batch.clear()

    @property
    def _attempt_timeout(self) -> float:
        cfg = self.database.settings
        return cfg.acquire_timeout + 2 * cfg.statement_timeout

    def _account_leftovers(self) -> None:
        self.buffer.close()  # nobody will read any more: later submits are refused, counted
        lost = len(self._batch)
        self._batch.clear()
        while True:
            try:
                self.buffer.receive.receive_nowait()
            except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
                break
            lost += 1
        self.buffer.receive.close()
        metrics.background_queue_depth.set({}, 0)
        if lost:
            log.error("impressions not written before stop", lost=lost)
            self.buffer.count_dropped(lost, "shutdown")
        elif self._drained:
            log.info("impression buffer drained")
