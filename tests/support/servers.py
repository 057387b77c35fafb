"""Session-wide embedded PostgreSQL and broker; per-test databases and topics."""

from __future__ import annotations

import uuid
from pathlib import Path

from reco_dev.devstack.postgres import EmbeddedPostgres

TEMPLATE = "reco_template"


def make_template(postgres: EmbeddedPostgres, migrations_dir: Path) -> None:
    """A database with every migration applied, copied for each test."""
    import anyio

    from reco.db import migrations
    from reco.db.pool import connect
    from reco.settings import Settings

    postgres.psql(f"CREATE DATABASE {TEMPLATE}")

    async def _migrate() -> None:
        conn = await connect(Settings(database_url=postgres.url(TEMPLATE)))
        try:
            await migrations.migrate(conn, migrations_dir)
        finally:
            await conn.close()

    anyio.run(_migrate)


def fresh_database(postgres: EmbeddedPostgres, *, template: str = TEMPLATE) -> str:
    name = "t_" + uuid.uuid4().hex[:12]
    postgres.psql(f"CREATE DATABASE {name} TEMPLATE {template}")
    return name


def unique_suffix() -> str:
    return uuid.uuid4().hex[:10]
