"""Watch events at the edges of the contract, through POST /v1/events (finding 2 of issue 10).

Any past date is accepted and flows through outbox, relay, broker and
consumer without wedging a partition; a date beyond RECO_EVENT_MAX_FUTURE is
a 422 and never reaches the outbox.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest

from reco.settings import Settings
from tests.integration.consumer_harness import Store, fast, wait_until
from tests.support.service import running_service

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


def watch(event_id: str, at: str, user: str = "u1") -> dict[str, Any]:
    return {"event_id": event_id, "user_id": user, "item_id": f"i-{event_id}", "occurred_at": at}


class TestDates:
    async def test_year_one_is_stored_and_the_far_future_refused(
        self, kafka_settings: Settings
    ) -> None:
        settings = fast(kafka_settings, relay_poll_interval=0.05)
        auth = {"Authorization": f"Bearer {settings.http.api_tokens[0]}"}
        now = dt.datetime.now(dt.UTC)
        store = Store(settings.database.url)
        async with (
            running_service(settings) as svc,
            httpx.AsyncClient(base_url=svc.base_url, headers=auth) as client,
        ):
            future = await client.post(
                "/v1/events", json={"events": [watch("late", "9999-12-31T23:59:59Z")]}
            )
            soon = (now + dt.timedelta(hours=1)).isoformat()
            ahead = await client.post("/v1/events", json={"events": [watch("ahead", soon)]})
            old = [watch("old", "0001-01-01T00:00:00Z"), watch("1997", "1997-09-20T03:05:10Z")]
            accepted = await client.post("/v1/events", json={"events": old})
            live = await client.post(
                "/v1/events", json={"events": [watch("live", now.isoformat())]}
            )
            await wait_until(lambda: store.has(3))
            ready = await client.get("/readyz")
        assert (future.status_code, ahead.status_code) == (422, 422)
        assert "future" in future.json()["detail"]
        assert (accepted.status_code, live.status_code) == (202, 202)
        assert await store.ids() == ["1997", "live", "old"]
        assert ready.status_code == 200
