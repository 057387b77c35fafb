"""``reco migrate`` and ``reco check-migrations``."""

from __future__ import annotations

import sys
from pathlib import Path

import asyncpg
import attrs

from reco.db import migrations, schema
from reco.db.migrations import Finding, Migration
from reco.db.pool import connect
from reco.observability.logs import get_logger
from reco.settings import DatabaseSettings, Settings

log = get_logger("reco.migrations")

EXIT_FINDINGS = 1


def directory(settings: DatabaseSettings) -> Path:
    return Path(settings.migrations_dir) if settings.migrations_dir else migrations.default_dir()


@attrs.frozen
class Report:
    findings: list[Finding]
    pending: list[Migration]
    notes: list[str]


async def check(conn: asyncpg.Connection, path: Path, connect: schema.Connect) -> Report:
    """Every finding: naming, order, checksum, drift (history and live schema)."""
    files, findings = migrations.scan(path)
    done = await migrations.applied_migrations(conn)
    findings += migrations.history_findings(files, done)
    notes = []
    if any(f.kind in ("naming", "checksum") for f in findings):
        notes.append("schema comparison skipped until the naming and checksum findings are fixed")
    else:
        applied_files = [m for m in files if m.version in done]
        try:
            findings += await schema.schema_drift(conn, connect, applied_files)
        except asyncpg.InsufficientPrivilegeError:
            notes.append(
                "the live schema was NOT compared: this role may not CREATE DATABASE "
                "(the expected schema is built in a scratch database); run as a role that may"
            )
    return Report(findings, migrations.pending(files, done), notes)


async def migrate_command(settings: Settings) -> int:
    conn = await connect(settings.database, "reco-migrate")
    try:
        applied = await migrations.migrate(conn, directory(settings.database))
    finally:
        await conn.close()
    log.info("migrations up to date", applied=[m.label for m in applied])
    return 0


async def check_command(settings: Settings) -> int:
    """Print each finding on stderr (and log it); exit non-zero when there is any."""

    async def connect_to(database: str) -> asyncpg.Connection:
        return await connect(settings.database, "reco-check-migrations", database=database)

    conn = await connect(settings.database, "reco-check-migrations")
    try:
        report = await check(conn, directory(settings.database), connect_to)
    finally:
        await conn.close()
    for note in report.notes:
        print(f"check-migrations: note: {note}", file=sys.stderr)
    if report.pending:
        labels = ", ".join(m.label for m in report.pending)
        print(f"check-migrations: pending (`reco migrate` applies them): {labels}", file=sys.stderr)
    for finding in report.findings:
        log.error("migration check finding", kind=finding.kind, finding=finding.message)
        print(f"check-migrations: {finding}", file=sys.stderr)
    if report.findings:
        print(f"check-migrations: {len(report.findings)} finding(s)", file=sys.stderr)
        return EXIT_FINDINGS
    print("check-migrations: ok", file=sys.stderr)
    return 0
