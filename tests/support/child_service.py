"""``reco serve`` as a child process on the session's PostgreSQL and broker, for sync tests.

The child runs in an anyio blocking portal (its own event loop in a thread),
so that synchronous test code (schemathesis calls the API with ``requests``)
can use it while its output is read, and kept, in the background.
"""

from __future__ import annotations

import signal
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager

import anyio
import attrs
from anyio.from_thread import start_blocking_portal
from reco_dev.devstack.broker import EmbeddedBroker
from reco_dev.devstack.postgres import EmbeddedPostgres
from reco_dev.devstack.topics import create_topics

from reco.settings import Settings
from tests.support.process import Child, spawn
from tests.support.servers import fresh_database, unique_suffix

START = 30.0
STOP = 30.0
TOKEN = "fuzz-token-0123456789abcdefghijklmnop"


@attrs.frozen
class ChildService:
    base_url: str
    token: str
    child: Child
    settings: Settings  # what the child was configured with (topics, database)


def child_settings(postgres: EmbeddedPostgres, broker: EmbeddedBroker) -> Settings:
    suffix = unique_suffix()
    return Settings(
        database_url=postgres.url(fresh_database(postgres)), kafka_bootstrap=broker.bootstrap,
        watch_events_topic=f"t.watch-events.{suffix}",
        dead_letter_topic=f"t.watch-events.dlq.{suffix}",
        impressions_topic=f"t.impressions.{suffix}", consumer_group=f"g-{suffix}",
    )  # fmt: skip


def child_env(settings: Settings, extra: Mapping[str, str]) -> dict[str, str]:
    return {
        "APP_ENV": "test", "RECO_DATABASE_URL": settings.database_url,
        "RECO_HTTP_BIND": "127.0.0.1:0", "RECO_API_TOKENS": TOKEN,
        "RECO_MIGRATE_ON_START": "false", "RECO_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "RECO_WATCH_EVENTS_TOPIC": settings.watch_events_topic,
        "RECO_DEAD_LETTER_TOPIC": settings.dead_letter_topic,
        "RECO_IMPRESSIONS_TOPIC": settings.impressions_topic,
        "RECO_CONSUMER_GROUP": settings.consumer_group,
        "RECO_KAFKA_RETRY_INITIAL": "0.05", "RECO_KAFKA_RETRY_MAX": "0.5",
        "RECO_RELAY_POLL_INTERVAL": "0.1", "RECO_CONSUMER_LAG_INTERVAL": "0.2",
        "RECO_OUTBOX_CHECK_INTERVAL": "0.2", "RECO_SHUTDOWN_TIMEOUT": "10", **extra,
    }  # fmt: skip


@asynccontextmanager
async def _serving(settings: Settings, env: dict[str, str]) -> AsyncIterator[ChildService]:
    await create_topics(settings)
    async with spawn(["-m", "reco", "serve"], env) as child:
        with anyio.fail_after(START):
            listening = await child.wait_event("http listening")
            await child.wait_event("started")
        async with anyio.create_task_group() as tg:
            tg.start_soon(child.wait_exit)  # keeps reading, so the pipe never fills
            yield ChildService(str(listening["address"]), TOKEN, child, settings)
            child.signal(signal.SIGTERM)
            with anyio.fail_after(STOP):
                await child.process.wait()


@contextmanager
def child_service(
    postgres: EmbeddedPostgres, broker: EmbeddedBroker, extra_env: Mapping[str, str] | None = None
) -> Iterator[ChildService]:
    """A running ``reco serve`` with consumer and relay on; SIGTERM and wait on the way out."""
    settings = child_settings(postgres, broker)
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(
            _serving(settings, child_env(settings, extra_env or {}))
        ) as svc,
    ):
        yield svc
