"""The watch-event consumer against the real broker and PostgreSQL."""

from __future__ import annotations

import pytest

from reco.settings import Settings
from tests.conftest import Topics
from tests.integration.consumer_harness import (
    Store, event, fast, producer, running_consumer, send, wait_until,
)  # fmt: skip

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


class TestDelivery:
    async def test_events_land_once(self, kafka_settings: Settings, topics: Topics) -> None:
        """Every produced event is stored exactly once."""
        settings = fast(kafka_settings)
        store = Store(settings.database_url)
        async with producer(settings.kafka_bootstrap) as client, running_consumer(settings):
            await send(client, topics.watch_events, [event(n) for n in range(200)])
            await wait_until(lambda: store.has(200))
        assert await store.ids() == sorted(f"e{n}" for n in range(200))
