"""The impression writer against a real PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import Any

import anyio
import attrs
import pytest

from reco.db.pool import Database
from reco.impressions.buffer import ImpressionBuffer
from reco.impressions.queries import insert_impressions
from reco.impressions.rows import outbox_rows
from reco.impressions.writer import ImpressionWriter
from reco.observability.readiness import Readiness
from reco.outbox import queries as outbox
from reco.settings import BackgroundMode, Settings
from tests.integration.outbox_support import dedicated, running_database, wait_for
from tests.support.components import request_stop, start
from tests.support.service import running_service
from tests.unit.test_impressions import impression

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


def writer_settings(settings: Settings, **changes: Any) -> Settings:
    return attrs.evolve(
        settings, max_background_tasks=64, writer_batch_max=10, writer_batch_wait=0.01,
        background_mode=BackgroundMode.DROP, **changes,
    )  # fmt: skip


async def count(settings: Settings, table: str) -> int:
    async with dedicated(settings) as conn:
        return int(await conn.fetchval(f"SELECT count(*) FROM {table}"))


class TestWriter:
    async def test_batches_write_impressions_and_their_outbox_rows(
        self, settings: Settings
    ) -> None:
        """Each impression lands in impressions and in the outbox, keyed by user or rec id."""
        cfg = writer_settings(settings)
        served = [impression(user) for _ in range(7) for user in ("u1", None, "u2")]
        async with running_database(cfg) as db, anyio.create_task_group() as tg:
            buffer = ImpressionBuffer(cfg)
            writer = ImpressionWriter(cfg, db, buffer)
            await start(tg, writer)
            for imp in served:
                await buffer.submit(imp)
            await wait_for(lambda: _equals(count(cfg, "outbox"), len(served)))
            request_stop(writer)
        assert await count(cfg, "impressions") == len(served)
        async with dedicated(cfg) as conn:
            rows = await conn.fetch("SELECT topic, message_key, event_id, payload FROM outbox")
        by_event = {r["event_id"]: r for r in rows}
        anonymous = served[1]
        row = by_event[str(anonymous.recommendation_id)]
        assert row["topic"] == cfg.impressions_topic
        assert row["message_key"] == str(anonymous.recommendation_id)
        assert by_event[str(served[0].recommendation_id)]["message_key"] == "u1"
        assert json.loads(row["payload"])["endpoint"] == "popular"

    async def test_a_batch_partly_stored_already_is_written_once(self, settings: Settings) -> None:
        """The retry of a batch whose commit succeeded unseen: COPY meets the stored rows,
        the idempotent insert writes the rest, nothing twice."""
        cfg = attrs.evolve(writer_settings(settings), writer_batch_wait=0.2)
        served = [impression(user) for user in ("u1", "u2", None, "u3")]
        async with running_database(cfg) as db, anyio.create_task_group() as tg:
            async with db.connection() as conn, conn.transaction():
                await insert_impressions(conn, served[:2])
                await outbox.enqueue(conn, outbox_rows(served[:2], cfg.impressions_topic))
            buffer = ImpressionBuffer(cfg)
            writer = ImpressionWriter(cfg, db, buffer)
            await start(tg, writer)
            for imp in served:
                await buffer.submit(imp)
            await wait_for(lambda: _equals(count(cfg, "outbox"), len(served)))
            request_stop(writer)
        assert await count(cfg, "impressions") == len(served)
        assert buffer.statistics().dropped == 0


class TestShutdown:
    async def test_stop_drains_the_buffer(self, settings: Settings) -> None:
        """What is buffered when the stop comes is written before the writer returns."""
        cfg = writer_settings(settings)
        async with running_database(cfg) as db:
            buffer = ImpressionBuffer(cfg)
            for _ in range(50):
                await buffer.submit(impression())
            writer = ImpressionWriter(cfg, db, buffer)
            async with anyio.create_task_group() as tg:
                await start(tg, writer)
                request_stop(writer)
        assert await count(cfg, "impressions") == 50
        assert buffer.statistics().dropped == 0

    async def test_what_cannot_be_written_in_time_is_counted(self, settings: Settings) -> None:
        """With the database away, the drain is bounded and leftovers count as dropped."""
        cfg = writer_settings(settings, writer_retry_timeout=30.0)
        unopened = Database(cfg, Readiness())  # every acquire fails: DatabaseUnavailable
        buffer = ImpressionBuffer(cfg)
        for _ in range(25):
            await buffer.submit(impression())
        writer = ImpressionWriter(cfg, unopened, buffer)
        with anyio.fail_after(3):
            async with anyio.create_task_group() as tg:
                await start(tg, writer)
                request_stop(writer, 0.3)  # the work in hand gets 0.225 s
        assert buffer.statistics().dropped == 25
        assert buffer.statistics().depth == 0


class TestCancellation:
    async def test_cancelled_writer_exits_promptly_counting_what_it_held(
        self, settings: Settings
    ) -> None:
        """Cancelled mid-run, the writer returns at once; every impression is written or counted."""
        cfg = writer_settings(settings)
        async with running_database(cfg) as db:
            buffer = ImpressionBuffer(cfg)
            writer = ImpressionWriter(cfg, db, buffer)
            async with anyio.create_task_group() as tg:
                await start(tg, writer)
                for _ in range(40):
                    await buffer.submit(impression())
                began = anyio.current_time()
                tg.cancel_scope.cancel()
            assert anyio.current_time() - began < 1.0
        written = await count(cfg, "impressions")
        assert written + buffer.statistics().dropped == 40
        assert await count(cfg, "outbox") == written  # never half a batch


async def _equals(value: Awaitable[int], expected: int) -> bool:
    return await value == expected


class TestInService:
    async def test_service_stop_writes_every_buffered_impression(self, settings: Settings) -> None:
        """Impressions submitted to the running service are all written when it stops."""
        cfg = attrs.evolve(settings, max_background_tasks=500, writer_batch_wait=0.5)
        async with running_service(cfg) as svc:
            for _ in range(300):
                await svc.state.impressions.submit(impression())
        assert svc.exit_status == 0
        assert await count(cfg, "impressions") == 300
        assert await count(cfg, "outbox") == 300
