"""Migrations: ``sql/NNNN_short_snake_name.sql``, applied in order, once.

Each file runs in its own transaction and is recorded in
``schema_migrations`` (version, name, sha256 checksum, time). An advisory
lock, held on a dedicated connection (a pooled one would release it on
return), makes concurrent ``migrate`` calls from several instances safe.

Checks, each finding with its own kind and message:

- naming: a file that does not match the pattern, a version used twice, a
  version missing from the sequence 0001, 0002, ...;
- order: a pending migration older than the newest applied one;
- checksum: an applied migration whose file changed since;
- drift: a version applied in the database with no file, and (in
  :mod:`reco.db.schema`) a live schema that differs from the one the files
  produce on a fresh database.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import anyio
import asyncpg
import attrs

from reco.errors import MigrationCheckFailed, MigrationError
from reco.observability.logs import get_logger

log = get_logger("reco.migrations")

FILENAME = re.compile(r"^(\d{4})_([a-z0-9]+(?:_[a-z0-9]+)*)\.sql$")
# pg_advisory_lock key: "reco" + "mig" in ASCII; any fixed bigint would do.
LOCK_KEY = 0x7265636F6D6967
UNLOCK_TIMEOUT = 5.0

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

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


@attrs.frozen
class Applied:
    version: int
    name: str
    checksum: str

    @property
    def label(self) -> str:
        return f"{self.version:04d}_{self.name}"


@attrs.frozen
class Finding:
    """One problem found by a check; ``kind`` is naming, order, checksum, drift or apply."""

    kind: str
    message: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


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


def scan(directory: Path) -> tuple[list[Migration], list[Finding]]:
    """The migration files by version (first per version), and the naming findings."""
    files: list[Migration] = []
    findings: list[Finding] = []
    for path in sorted(p for p in directory.iterdir() if p.is_file()):
        if path.name.startswith("."):
            continue
        migration = read_migration(path)
        if migration is None:
            findings.append(
                Finding("naming", f"{path.name} does not match NNNN_short_snake_name.sql")
            )
        else:
            files.append(migration)
    files.sort(key=lambda m: (m.version, m.path.name))
    unique = []
    for version, group in itertools.groupby(files, key=lambda m: m.version):
        same = list(group)
        unique.append(same[0])
        if len(same) > 1:
            names = ", ".join(m.path.name for m in same)
            findings.append(Finding("naming", f"version {version:04d} is used by {names}"))
    findings += _gaps([m.version for m in unique])
    return unique, findings


def _gaps(versions: Sequence[int]) -> list[Finding]:
    missing = sorted(set(range(1, max(versions, default=0) + 1)) - set(versions))
    return [
        Finding("naming", f"version {v:04d} is missing: versions run 0001, 0002, ... without gaps")
        for v in missing
    ]


def discover(directory: Path) -> list[Migration]:
    """Every well-named migration file in ``directory``, by version."""
    return scan(directory)[0]


def history_findings(files: Sequence[Migration], applied: dict[int, Applied]) -> list[Finding]:
    """Order, checksum and missing-file findings: the files against what was applied."""
    by_version = {m.version: m for m in files}
    findings = []
    for version, done in sorted(applied.items()):
        migration = by_version.get(version)
        if migration is None:
            findings.append(Finding(
                "drift", f"{done.label} is applied in the database but has no file "
                "(deleted or renumbered, or this build is older than the database)",
            ))  # fmt: skip
        elif migration.checksum != done.checksum:
            findings.append(Finding(
                "checksum", f"{migration.label} changed since it was applied (applied sha256 "
                f"{done.checksum[:12]}..., file {migration.checksum[:12]}...); never edit an "
                "applied migration, add a new one",
            ))  # fmt: skip
    newest = max(applied, default=0)
    findings += [
        Finding(
            "order",
            f"{m.label} is pending but older than the newest applied migration "
            f"{newest:04d}; renumber it after {newest:04d}",
        )
        for m in pending(files, applied)
        if m.version < newest
    ]
    return findings


async def applied_migrations(conn: asyncpg.Connection) -> dict[int, Applied]:
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        return {}
    rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
    return {r["version"]: Applied(r["version"], r["name"], r["checksum"]) for r in rows}


def pending(files: Iterable[Migration], applied: dict[int, Applied]) -> list[Migration]:
    return [m for m in files if m.version not in applied]


async def apply(conn: asyncpg.Connection, migration: Migration, *, quiet: bool = False) -> None:
    """Run one migration and record it, in one transaction."""
    async with conn.transaction():
        await conn.execute(migration.sql)
        await conn.execute(
            "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
            migration.version, migration.name, migration.checksum,
        )  # fmt: skip
    if not quiet:
        log.info("migration applied", version=migration.version, name=migration.name)


async def migrate(conn: asyncpg.Connection, directory: Path) -> list[Migration]:
    """Apply pending migrations in order under the advisory lock; return those applied.

    Refuses (applying nothing) when the files or the history have findings.
    ``conn`` must be a dedicated connection, not a pooled one.
    """
    files, findings = scan(directory)
    await conn.execute("SELECT pg_advisory_lock($1)", LOCK_KEY)
    try:
        await conn.execute(CREATE_TABLE)
        done = await applied_migrations(conn)  # read under the lock: another may have won
        findings += history_findings(files, done)
        if findings:
            raise MigrationCheckFailed([str(f) for f in findings])
        applied = []
        for migration in pending(files, done):
            await apply(conn, migration)
            applied.append(migration)
        return applied
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(UNLOCK_TIMEOUT):
            await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_KEY)


async def ensure_current(conn: asyncpg.Connection, directory: Path) -> None:
    """Raise :class:`MigrationError` when the database is behind or ahead of the files."""
    files, findings = scan(directory)
    done = await applied_migrations(conn)
    findings += history_findings(files, done)
    behind = pending(files, done)
    problems = [str(f) for f in findings]
    if behind:
        problems.insert(0,
            "the database is behind the migration files (pending: "
            + ", ".join(m.label for m in behind)
            + "); run `reco migrate` or set RECO_MIGRATE_ON_START=true"
        )  # fmt: skip
    if problems:
        raise MigrationError("; ".join(problems))
