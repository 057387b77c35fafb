"""``reco migrate`` and ``reco check-migrations``."""

from __future__ import annotations

import sys
from pathlib import Path

from reco.db import migrations
from reco.db.pool import connect
from reco.observability.logs import get_logger
from reco.settings import Settings

log = get_logger("reco.migrations")


def _directory(settings: Settings) -> Path:
    return Path(settings.migrations_dir) if settings.migrations_dir else migrations.default_dir()


async def migrate_command(settings: Settings) -> int:
    conn = await connect(settings, "reco-migrate")
    try:
        applied = await migrations.migrate(conn, _directory(settings))
    finally:
        await conn.close()
    log.info("migrations up to date", applied=[f"{m.version:04d}_{m.name}" for m in applied])
    return 0


async def check_command(settings: Settings) -> int:
    conn = await connect(settings, "reco-check-migrations")
    try:
        await migrations.ensure_current(conn, _directory(settings))
    finally:
        await conn.close()
    print("migrations: ok", file=sys.stderr)
    return 0
