"""POST /v1/events through the running service, into the outbox and on to the broker."""

from __future__ import annotations

import attrs
import httpx
import pytest
from reco_dev.devstack.broker import EmbeddedBroker

from reco.settings import Settings
from tests.conftest import Topics
from tests.integration.outbox_support import dedicated, read_topic, relay_settings, wait_for
from tests.support.service import running_service
from tests.unit.test_outbox_ingest import event

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


def auth(settings: Settings) -> dict[str, str]:
    return {"Authorization": f"Bearer {settings.api_tokens[0]}"}


async def outbox_event_ids(settings: Settings) -> list[str]:
    async with dedicated(settings) as conn:
        rows = await conn.fetch("SELECT event_id FROM outbox ORDER BY id")
    return [r["event_id"] for r in rows]


class TestAuth:
    async def test_without_token_is_401_and_with_a_wrong_one_403(self, settings: Settings) -> None:
        """No token: 401 with a challenge; an unknown token: 403; both problem+json."""
        body = {"events": [event()]}
        async with running_service(settings) as svc, httpx.AsyncClient(base_url=svc.base_url) as c:
            missing = await c.post("/v1/events", json=body)
            wrong = await c.post("/v1/events", json=body, headers={"Authorization": "Bearer x"})
        assert missing.status_code == 401
        assert "Bearer" in missing.headers["www-authenticate"]
        assert wrong.status_code == 403
        assert wrong.headers["content-type"] == "application/problem+json"
        assert await outbox_event_ids(settings) == []


class TestIngest:
    async def test_valid_batch_is_accepted_into_the_outbox(self, settings: Settings) -> None:
        """A valid batch answers 202 with the count; one outbox row per event."""
        body = {"events": [event(n) for n in range(5)]}
        async with running_service(settings) as svc, httpx.AsyncClient(base_url=svc.base_url) as c:
            response = await c.post("/v1/events", json=body, headers=auth(settings))
        assert response.status_code == 202
        assert response.json()["accepted"] == 5
        assert await outbox_event_ids(settings) == [f"e{n}" for n in range(5)]

    async def test_one_bad_event_stores_nothing(self, settings: Settings) -> None:
        """A batch with one invalid event answers 422 with its index and stores nothing."""
        body = {"events": [event(1), event(2, occurred_at="yesterday"), event(3)]}
        async with running_service(settings) as svc, httpx.AsyncClient(base_url=svc.base_url) as c:
            response = await c.post("/v1/events", json=body, headers=auth(settings))
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        assert [p["pointer"] for p in response.json()["errors"]] == ["/events/1"]
        assert await outbox_event_ids(settings) == []

    async def test_malformed_and_oversized_bodies(self, settings: Settings) -> None:
        """Non-JSON answers 400 and a body over the limit 413, both as problems."""
        cfg = attrs.evolve(settings, max_body_bytes=2048)
        async with running_service(cfg) as svc, httpx.AsyncClient(base_url=svc.base_url) as c:
            garbage = await c.post("/v1/events", content=b"{", headers=auth(cfg))
            huge = await c.post(
                "/v1/events", json={"events": [event(n) for n in range(40)]}, headers=auth(cfg)
            )
        assert garbage.status_code == 400
        assert huge.status_code == 413
        assert huge.headers["content-type"] == "application/problem+json"

    async def test_resending_the_same_events_is_harmless(self, settings: Settings) -> None:
        """A re-sent batch is accepted again but not enqueued twice."""
        body = {"events": [event(1), event(2)]}
        async with running_service(settings) as svc, httpx.AsyncClient(base_url=svc.base_url) as c:
            await c.post("/v1/events", json=body, headers=auth(settings))
            again = await c.post("/v1/events", json=body, headers=auth(settings))
        assert again.status_code == 202
        assert again.json() == {"accepted": 2, "duplicates": 2}
        assert await outbox_event_ids(settings) == ["e1", "e2"]


class TestEndToEnd:
    async def test_events_reach_the_watch_events_topic(
        self, settings: Settings, broker: EmbeddedBroker, topics: Topics
    ) -> None:
        """Accepted events are published by the relay to the watch-events topic, keyed by user."""
        cfg = relay_settings(settings, broker.bootstrap)
        body = {"events": [event(n, user_id=f"u{n % 3}") for n in range(9)]}
        async with running_service(cfg) as svc, httpx.AsyncClient(base_url=svc.base_url) as c:
            response = await c.post("/v1/events", json=body, headers=auth(cfg))
            assert response.status_code == 202
            await wait_for(lambda: _all_published(cfg))
            ready = await c.get("/readyz")
        assert ready.json()["checks"]["outbox"]["leader"] is True
        messages = await read_topic(broker.bootstrap, topics.watch_events, 9)
        assert {(key, event_id) for key, event_id, _ in messages} == {
            (f"u{n % 3}", f"e{n}") for n in range(9)
        }


async def _all_published(settings: Settings) -> bool:
    async with dedicated(settings) as conn:
        waiting = await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
        total = await conn.fetchval("SELECT count(*) FROM outbox")
    return bool(total) and waiting == 0
