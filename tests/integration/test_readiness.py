"""Readiness means "this instance can serve HTTP traffic" (issue 10, finding 8).

Black box: the whole service in-process. With the broker unreachable, or hung
mid-run (SIGSTOP), ``/readyz`` stays 200 with the consumer ``degraded``;
reads and ``POST /v1/events`` (the outbox, in PostgreSQL) still answer 2xx;
``/readyz?strict=1`` is 503.
"""

from __future__ import annotations

import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import attrs
import pytest
from reco_dev.devstack.broker import EmbeddedBroker
from reco_dev.devstack.ports import free_port

from reco.consumer.component import CHECK as CONSUMER_CHECK
from reco.settings import Settings
from tests.integration.consumer_harness import event
from tests.integration.outbox_support import wait_for
from tests.support.api import Api, put_items, running_api

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

BOUND = 30.0


def with_broker(settings: Settings, bootstrap: str) -> Settings:
    # A request timeout under Tansu's ~3 s group join would never let the consumer rejoin.
    return attrs.evolve(
        settings, kafka_bootstrap=bootstrap, consumer_enabled=True, relay_enabled=True,
        kafka_request_timeout=5.0, consumer_lag_interval=0.2, relay_leader_retry=0.1,
    )  # fmt: skip


@pytest.fixture
async def own_broker(tmp_path: Path) -> AsyncIterator[EmbeddedBroker]:
    broker = EmbeddedBroker(tmp_path / "broker")
    await anyio.to_thread.run_sync(broker.start)
    try:
        yield broker
    finally:
        await anyio.to_thread.run_sync(broker.stop)


async def assert_serves_without_the_broker(api: Api) -> None:
    """Degraded but ready: /readyz 200, strict 503, reads and event ingestion 2xx."""
    relaxed = await api.client.get("/readyz")
    assert relaxed.status_code == 200, relaxed.text
    body = relaxed.json()
    assert body["status"] == "degraded"
    assert body["checks"][CONSUMER_CHECK]["status"] == "degraded"
    assert body["checks"]["database"]["status"] == "ok"
    assert (await api.client.get("/readyz?strict=1")).status_code == 503
    await put_items(api, [{"item_id": "i1", "title": "One", "genres": ["Drama"]}])
    for path in ("/v1/users/u1/recommendations", "/v1/items/popular", "/v1/items/i1"):
        response = await api.client.get(path)
        assert response.status_code == 200, (path, response.text)
    posted = await api.client.post("/v1/events", json={"events": [event(1)]}, headers=api.auth)
    assert posted.status_code == 202, posted.text


async def strictly_ready(api: Api) -> bool:
    return (await api.client.get("/readyz?strict=1")).status_code == 200


async def consumer_degraded(api: Api) -> bool:
    response = await api.client.get("/readyz")
    assert response.status_code == 200, "a broker outage must never fail /readyz"
    return bool(response.json()["checks"].get(CONSUMER_CHECK, {}).get("status") == "degraded")


class TestBrokerOutage:
    async def test_unreachable_broker_degrades_but_serves(self, settings: Settings) -> None:
        """Broker on a closed port from the start: ready (degraded), serving, strict 503."""
        async with running_api(with_broker(settings, f"127.0.0.1:{free_port()}")) as api:
            with anyio.fail_after(BOUND):
                await assert_serves_without_the_broker(api)

    async def test_hung_broker_degrades_but_serves(
        self, settings: Settings, own_broker: EmbeddedBroker
    ) -> None:
        """Broker frozen mid-run (SIGSTOP): /readyz stays 200 while the consumer degrades."""
        async with running_api(with_broker(settings, own_broker.bootstrap)) as api:
            await wait_for(lambda: strictly_ready(api), deadline=BOUND)
            os.kill(own_broker.pid, signal.SIGSTOP)
            try:
                await wait_for(lambda: consumer_degraded(api), deadline=BOUND)
                with anyio.fail_after(BOUND):
                    await assert_serves_without_the_broker(api)
            finally:
                os.kill(own_broker.pid, signal.SIGCONT)
