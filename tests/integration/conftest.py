"""Fixtures the integration tests share: a plain connection and an open Database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from reco.db.pool import Database
from reco.observability.readiness import Readiness
from reco.settings import Settings


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection of its own to the test's fresh database (not the service's pool)."""
    connection = await asyncpg.connect(database_url)
    try:
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[Database]:
    """The service's Database on the test's settings, opened (migrated) and closed."""
    db = Database(settings.database, Readiness(), migrate=settings.should_migrate_on_start)
    await db.open()
    try:
        yield db
    finally:
        await db.aclose()
