"""The impression buffer and the impression-to-row mapping, without I/O."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import anyio
import pytest
from quart import Blueprint, Quart

from reco.api.app import create_app
from reco.api.state import AppState, state
from reco.impressions.buffer import BufferFull, ImpressionBuffer
from reco.impressions.model import Impression, ServedItem
from reco.impressions.rows import impression_columns, message_key, outbox_rows
from reco.observability.readiness import Readiness
from reco.settings import BackgroundMode, Settings

pytestmark = pytest.mark.anyio


def impression(user_id: str | None = "u1") -> Impression:
    return Impression(
        recommendation_id=uuid.uuid4(), user_id=user_id, endpoint="popular",
        algorithm="popularity", items=(ServedItem("i1", 1, 0.9), ServedItem("i2", 2, 0.5)),
        served_at=dt.datetime.now(dt.UTC),  # inside the retention window (maintenance runs)
    )  # fmt: skip


@contextmanager
def buffer(mode: BackgroundMode, capacity: int = 2) -> Iterator[ImpressionBuffer]:
    buf = ImpressionBuffer(
        Settings.from_flat(max_background_tasks=capacity, background_mode=mode,
                           background_put_timeout=0.05).impressions
    )  # fmt: skip
    try:
        yield buf
    finally:
        buf.close()
        buf.receive.close()


class TestRows:
    def test_key_is_the_user_id(self) -> None:
        """An impression of a known user is keyed by the user id."""
        assert message_key(impression("u7")) == "u7"

    def test_key_falls_back_to_the_recommendation_id(self) -> None:
        """An anonymous impression is keyed by its recommendation id."""
        imp = impression(None)
        assert message_key(imp) == str(imp.recommendation_id)

    def test_outbox_row_carries_the_whole_impression(self) -> None:
        """The payload holds ids, endpoint, algorithm, items and the serving time."""
        imp = impression()
        (row,) = outbox_rows([imp], "topic")
        body = json.loads(row.payload)
        assert (row.topic, row.event_id, row.event_type) == (
            "topic", str(imp.recommendation_id), "impression",
        )  # fmt: skip
        assert body["items"] == [
            {"item_id": "i1", "position": 1, "score": 0.9},
            {"item_id": "i2", "position": 2, "score": 0.5},
        ]
        assert body["served_at"] == imp.served_at.isoformat()

    def test_columns_line_up(self) -> None:
        """Each column array has one entry per impression."""
        columns = impression_columns([impression(), impression(None)])
        assert all(len(column) == 2 for column in columns)


class TestDropMode:
    async def test_full_buffer_drops_and_counts_without_waiting(self) -> None:
        """In drop mode a full buffer drops at once and counts each drop."""
        with buffer(BackgroundMode.DROP, capacity=3) as buf:
            with anyio.fail_after(0.5):
                for _ in range(10):
                    await buf.submit(impression())
            stats = buf.statistics()
            assert (stats.depth, stats.capacity, stats.dropped) == (3, 3, 7)


class TestSyncMode:
    async def test_waits_for_room_then_succeeds(self) -> None:
        """In sync mode a submit waits while the writer makes room."""
        with buffer(BackgroundMode.SYNC, capacity=1) as buf:
            buf.put_timeout = 5.0
            await buf.submit(impression())
            async with anyio.create_task_group() as tg:
                tg.start_soon(buf.submit, impression())
                await anyio.wait_all_tasks_blocked()
                assert buf.statistics().depth == 1
                buf.receive.receive_nowait()
            assert buf.statistics().depth == 1
            assert buf.statistics().dropped == 0

    async def test_answers_503_after_the_bound(self) -> None:
        """In sync mode a submit that finds no room within the bound raises BufferFull (the
        API's 503: test_sync_mode_answers_503_problem_after_the_bound)."""
        with buffer(BackgroundMode.SYNC, capacity=1) as buf:
            await buf.submit(impression())
            with pytest.raises(BufferFull) as caught:
                await buf.submit(impression())
            assert caught.value.reason == "buffer full"
            assert buf.statistics().dropped == 1

    async def test_closed_buffer_refuses(self) -> None:
        """After close (shutdown), a submit is refused and counted, not lost silently."""
        with buffer(BackgroundMode.SYNC) as buf:
            buf.close()
            with pytest.raises(BufferFull) as caught:
                await buf.submit(impression())
            assert caught.value.reason == "shutting down"
            assert buf.statistics().closed
            assert buf.statistics().dropped == 1


def app_with(buf: ImpressionBuffer) -> Quart:
    """The real app factory plus one route that records an impression, as list endpoints do."""
    app = create_app(AppState(settings=Settings(), readiness=Readiness(), impressions=buf))
    extra = Blueprint("served", __name__)

    @extra.get("/served")
    async def served() -> dict[str, bool]:
        await state().impressions.submit(impression())
        return {"ok": True}

    app.register_blueprint(extra)
    return app


class TestOverHttp:
    async def test_drop_mode_answers_every_request_and_counts_drops(self) -> None:
        """Saturated in drop mode, every request still answers 200 at once; drops are counted."""
        with buffer(BackgroundMode.DROP, capacity=2) as buf:
            client = app_with(buf).test_client()
            with anyio.fail_after(2):
                statuses = [(await client.get("/served")).status_code for _ in range(10)]
            assert statuses == [200] * 10
            assert buf.statistics().dropped == 8

    async def test_sync_mode_answers_503_problem_after_the_bound(self) -> None:
        """Saturated in sync mode, a request waits the bound, then gets a 503 problem."""
        with buffer(BackgroundMode.SYNC, capacity=1) as buf:
            client = app_with(buf).test_client()
            assert (await client.get("/served")).status_code == 200
            response = await client.get("/served")
            assert response.status_code == 503
            assert response.content_type == "application/problem+json"
            assert response.headers["Retry-After"] == "1"
