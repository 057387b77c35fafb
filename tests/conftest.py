"""Fixtures: one embedded PostgreSQL and one broker per session, isolation per test.

Each test that asks for ``database_url`` gets a fresh database copied from a
migrated template; each that asks for ``topics`` gets fresh topic names.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import attrs
import pytest
from reco_dev.devstack.broker import EmbeddedBroker
from reco_dev.devstack.postgres import EmbeddedPostgres

from reco.db.migrations import default_dir
from reco.settings import AppEnv, Settings
from tests.support.servers import fresh_database, make_template, unique_suffix


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def workdir() -> Path:
    """The session's server data, removed when the process exits.

    Not at the session fixture's teardown: that runs inside the last test's teardown,
    under its pytest-timeout, and removing the data directory took more than its 120 s
    once on a loaded machine (a teardown error in whichever test ran last)."""
    path = Path(tempfile.mkdtemp(prefix="reco-tests-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


@pytest.fixture(scope="session")
def postgres(workdir: Path) -> Iterator[EmbeddedPostgres]:
    server = EmbeddedPostgres(workdir / "postgres", durable=False)
    server.start()
    try:
        make_template(server, default_dir())
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def broker(workdir: Path) -> Iterator[EmbeddedBroker]:
    server = EmbeddedBroker(workdir / "broker")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def database_url(postgres: EmbeddedPostgres) -> Iterator[str]:
    """A fresh database, dropped after the test (so the session's data directory, and its
    removal at the end, stay small however many tests run)."""
    name = fresh_database(postgres)
    yield postgres.url(name)
    postgres.psql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@attrs.frozen
class Topics:
    watch_events: str
    dead_letter: str
    impressions: str
    group: str


@pytest.fixture
def topics() -> Topics:
    suffix = unique_suffix()
    return Topics(
        watch_events=f"t.watch-events.{suffix}", dead_letter=f"t.watch-events.dlq.{suffix}",
        impressions=f"t.impressions.{suffix}", group=f"g-{suffix}",
    )  # fmt: skip


@pytest.fixture
def settings(database_url: str, topics: Topics) -> Settings:
    """Settings for an in-process service on a fresh database, with small timeouts.

    No broker: components that need one are switched off here and on by the
    tests that want them (see ``kafka_settings``).
    """
    return Settings(
        app_env=AppEnv.TEST,
        database_url=database_url, http_bind="127.0.0.1:0",
        api_tokens=("test-token-0123456789abcdefghijklmnop",),
        shutdown_timeout=5.0, startup_timeout=20.0, db_health_interval=0.2,
        watch_events_topic=topics.watch_events, dead_letter_topic=topics.dead_letter,
        impressions_topic=topics.impressions, consumer_group=topics.group,
        consumer_enabled=False, relay_enabled=False,
        kafka_retry_initial=0.05, kafka_retry_max=0.5, relay_poll_interval=0.1,
    )  # fmt: skip


@pytest.fixture
def kafka_settings(settings: Settings, broker: EmbeddedBroker) -> Settings:
    return attrs.evolve(
        settings, kafka_bootstrap=broker.bootstrap, consumer_enabled=True, relay_enabled=True
    )
