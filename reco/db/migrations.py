"""Migrations: ``sql/NNNN_short_snake_name.sql``, applied in order, once.

Each file runs in its own transaction and is recorded in
``schema_migrations`` (version, name, sha256 checksum, time). An advisory
lock, held on a dedicated connection (a pooled one would release it on
return), makes concurrent ``migrate`` calls from several instances safe.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from pathlib import Path

import asyncpg
import attrs

from reco.errors import MigrationError
from reco.observability.logs import get_logger

log = get_logger("reco.migrations")

FILENAME = re.compile(r"^(\d{4})_([a-z0-9]+(?:_[a-z0-9]+)*)\.sql$")
# pg_advisory_lock key: "reco" + "mig" in ASCII; any fixed bigint would do.
LOCK_KEY = 0x7265636F6D6967

CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version     integer PRIMARY KEY,
    name        text NOT NULL,
    checksum    text NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now()
)
"""


@attrs.frozen
class Migration:
    version: int
    name: str
    path: Path
    sql: str
    checksum: str


@attrs.frozen
class Applied:
    version: int
    name: str
    checksum: str


def default_dir() -> Path:
    """The migrations shipped with reco: ``reco/_sql`` in a wheel, ``sql/`` in a checkout."""
    packaged = Path(__file__).resolve().parents[1] / "_sql"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[2] / "sql"


def read_migration(path: Path) -> Migration | None:
    match = FILENAME.match(path.name)
    if match is None:
        return None
    data = path.read_bytes()
    return Migration(
        version=int(match.group(1)), name=match.group(2), path=path,
        sql=data.decode("utf-8"), checksum=hashlib.sha256(data).hexdigest(),
    )  # fmt: skip


def discover(directory: Path) -> list[Migration]:
    """Every well-named migration file in ``directory``, by version."""
    found = (read_migration(p) for p in sorted(directory.glob("*.sql")))
    return sorted((m for m in found if m is not None), key=lambda m: m.version)


async def applied_migrations(conn: asyncpg.Connection) -> dict[int, Applied]:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return {}
    rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
    return {r["version"]: Applied(r["version"], r["name"], r["checksum"]) for r in rows}


def pending(files: Iterable[Migration], applied: dict[int, Applied]) -> list[Migration]:
    return [m for m in files if m.version not in applied]


async def migrate(conn: asyncpg.Connection, directory: Path) -> list[Migration]:
    """Apply pending migrations in order under the advisory lock; return those applied.

    ``conn`` must be a dedicated connection, not a pooled one.
    """
    files = discover(directory)
    await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
    try:
        await conn.execute(CREATE_TABLE)
        done = await applied_migrations(conn)  # read under the lock: another may have won
        applied = []
        for migration in pending(files, done):
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version, migration.name, migration.checksum,
                )  # fmt: skip
            log.info("migration applied", version=migration.version, name=migration.name)
            applied.append(migration)
        return applied
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)


async def ensure_current(conn: asyncpg.Connection, directory: Path) -> None:
    """Raise :class:`MigrationError` when the database is behind or ahead of the files."""
    files = discover(directory)
    done = await applied_migrations(conn)
    behind = pending(files, done)
    known = {m.version for m in files}
    ahead = sorted(v for v in done if v not in known)
    changed = [
        m.version for m in files if m.version in done and done[m.version].checksum != m.checksum
    ]
    problems = []
    if behind:
        problems.append(
            "the database is behind the migration files (pending: "
            + ", ".join(f"{m.version:04d}_{m.name}" for m in behind)
            + "); run `reco migrate` or set RECO_MIGRATE_ON_START=true"
        )
    if ahead:
        problems.append(
            "the database is ahead of the migration files (applied but unknown: "
            + ", ".join(f"{v:04d}" for v in ahead)
            + "); is this an older build?"
        )
    if changed:
        problems.append(
            "applied migrations changed since they were applied: "
            + ", ".join(f"{v:04d}" for v in changed)
        )
    if problems:
        raise MigrationError("; ".join(problems))
