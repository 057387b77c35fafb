"""Migrations on the real PostgreSQL: apply once, and every check finding on its own."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import asyncpg
import attrs
import pytest
from reco_dev.devstack.postgres import EmbeddedPostgres

from reco.db import admin, migrations
from reco.db.migrations import Finding
from reco.db.pool import connect
from reco.errors import MigrationCheckFailed, MigrationError
from reco.settings import AppEnv, Settings
from tests.support.servers import unique_suffix

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


@pytest.fixture
def mdir(tmp_path: Path) -> Path:
    """The shipped first migration alone, in a directory a test may change.

    These tests are about the mechanism, so they number their own files from
    0002; every shipped file is checked by ``just check-migrations`` and applied
    to the template database every integration test starts from.
    """
    target = tmp_path / "sql"
    target.mkdir()
    shutil.copy(migrations.default_dir() / "0001_initial.sql", target)
    return target


@pytest.fixture
def settings(postgres: EmbeddedPostgres, mdir: Path) -> Settings:
    """Settings for a new, empty database (not from the migrated template)."""
    name = "mig_" + unique_suffix()
    postgres.psql(f"CREATE DATABASE {name}")
    return Settings(app_env=AppEnv.TEST, database_url=postgres.url(name), migrations_dir=str(mdir))


@pytest.fixture
async def conn(settings: Settings) -> AsyncIterator[asyncpg.Connection]:
    conn = await connect(settings)
    yield conn
    await conn.close()


async def check(settings: Settings, conn: asyncpg.Connection) -> list[Finding]:
    async def connect_to(database: str) -> asyncpg.Connection:
        return await connect(settings, database=database)

    report = await admin.check(conn, Path(settings.migrations_dir), connect_to)
    return report.findings


async def connect_unused(database: str) -> asyncpg.Connection:
    raise AssertionError("no scratch database should be created")


def write(mdir: Path, name: str, sql: str) -> None:
    (mdir / name).write_text(sql)


def messages(findings: list[Finding]) -> list[str]:
    return [str(f) for f in findings]


class TestMigrate:
    async def test_fresh_database_migrates_and_checks_clean(
        self, settings: Settings, conn: asyncpg.Connection
    ) -> None:
        """A fresh database takes every file once; the check then finds nothing."""
        applied = await migrations.migrate(conn, Path(settings.migrations_dir))
        assert [m.label for m in applied] == ["0001_initial"]
        assert await migrations.migrate(conn, Path(settings.migrations_dir)) == []
        assert await check(settings, conn) == []
        await migrations.ensure_current(conn, Path(settings.migrations_dir))

    async def test_concurrent_migrates_apply_each_file_once(
        self, settings: Settings, mdir: Path
    ) -> None:
        """Two migrate calls at once: the advisory lock lets each migration run exactly once."""
        write(mdir, "0002_counter.sql", "CREATE TABLE counter (n int); SELECT pg_sleep(0.2);")
        write(mdir, "0003_count.sql", "INSERT INTO counter VALUES (1);")
        results: list[list[str]] = []

        async def one() -> None:
            own = await connect(settings, "test-migrate")
            try:
                results.append([m.label for m in await migrations.migrate(own, mdir)])
            finally:
                await own.close()

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(one)
                tg.start_soon(one)
        assert sorted(results) == [[], ["0001_initial", "0002_counter", "0003_count"]]
        conn = await connect(settings)
        try:
            assert await conn.fetchval("SELECT count(*) FROM counter") == 1
            assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == 3
        finally:
            await conn.close()

    async def test_migrate_refuses_bad_files_and_applies_nothing(
        self, settings: Settings, conn: asyncpg.Connection, mdir: Path
    ) -> None:
        """With a naming problem in the directory, migrate applies nothing at all."""
        write(mdir, "0003_skipped_one.sql", "SELECT 1;")
        with pytest.raises(MigrationCheckFailed, match="version 0002 is missing"):
            await migrations.migrate(conn, mdir)
        assert await migrations.applied_migrations(conn) == {}

    async def test_failing_file_rolls_back_alone(
        self, settings: Settings, conn: asyncpg.Connection, mdir: Path
    ) -> None:
        """A file that fails leaves the earlier ones applied and itself unrecorded."""
        write(mdir, "0002_broken.sql", "CREATE TABLE half (n int); SELECT no_such_function();")
        with pytest.raises(asyncpg.UndefinedFunctionError):
            await migrations.migrate(conn, mdir)
        assert sorted(await migrations.applied_migrations(conn)) == [1]
        assert await conn.fetchval("SELECT to_regclass('half')") is None


class TestEnsureCurrent:
    async def test_behind_is_refused(self, settings: Settings, conn: asyncpg.Connection) -> None:
        """An unmigrated database is behind: start-up refuses, naming the pending files."""
        with pytest.raises(MigrationError, match=r"behind the migration files \(pending: 0001"):
            await migrations.ensure_current(conn, Path(settings.migrations_dir))

    async def test_ahead_is_refused(
        self, settings: Settings, conn: asyncpg.Connection, mdir: Path
    ) -> None:
        """A database with a version this build has no file for is refused."""
        write(mdir, "0002_newer.sql", "CREATE TABLE newer (n int);")
        await migrations.migrate(conn, mdir)
        (mdir / "0002_newer.sql").unlink()
        with pytest.raises(MigrationError, match="0002_newer is applied in the database but has"):
            await migrations.ensure_current(conn, mdir)


class TestCheckFindings:
    @pytest.fixture
    async def migrated(self, conn: asyncpg.Connection, mdir: Path) -> asyncpg.Connection:
        await migrations.migrate(conn, mdir)
        return conn

    async def test_edited_applied_file(
        self, settings: Settings, migrated: asyncpg.Connection, mdir: Path
    ) -> None:
        """An applied file edited afterwards is a checksum finding."""
        with (mdir / "0001_initial.sql").open("a") as f:
            f.write("\n-- a harmless edit is still an edit\n")
        found = messages(await check(settings, migrated))
        assert len(found) == 1
        assert found[0].startswith("checksum: 0001_initial changed since it was applied")

    async def test_deleted_applied_file(
        self, settings: Settings, migrated: asyncpg.Connection, mdir: Path
    ) -> None:
        """An applied version with no file is a drift finding (and its objects are extra)."""
        write(mdir, "0002_extra_table.sql", "CREATE TABLE extra (n int);")
        await migrations.migrate(migrated, mdir)
        (mdir / "0002_extra_table.sql").unlink()
        found = messages(await check(settings, migrated))
        assert found[0] == (
            "drift: 0002_extra_table is applied in the database but has no file "
            "(deleted or renumbered, or this build is older than the database)"
        )
        assert (
            "drift: table public.extra (table) is in the database but no migration creates it"
            in found
        )

    async def test_gap(self, settings: Settings, migrated: asyncpg.Connection, mdir: Path) -> None:
        """A missing version number is a naming finding."""
        write(mdir, "0003_after_gap.sql", "SELECT 1;")
        found = messages(await check(settings, migrated))
        assert "naming: version 0002 is missing: versions run 0001, 0002, ... without gaps" in found

    async def test_duplicate_version(
        self, settings: Settings, migrated: asyncpg.Connection, mdir: Path
    ) -> None:
        """Two files with one version number is a naming finding naming both."""
        write(mdir, "0002_one.sql", "SELECT 1;")
        write(mdir, "0002_two.sql", "SELECT 2;")
        found = messages(await check(settings, migrated))
        assert found == ["naming: version 0002 is used by 0002_one.sql, 0002_two.sql"]

    @pytest.mark.parametrize("name", ["2_short.sql", "0002-Dashes.sql", "0002_x.SQL", "notes.txt"])
    async def test_bad_file_name(
        self, settings: Settings, migrated: asyncpg.Connection, mdir: Path, name: str
    ) -> None:
        """A file that does not match the pattern is a naming finding."""
        write(mdir, name, "SELECT 1;")
        found = messages(await check(settings, migrated))
        assert found == [f"naming: {name} does not match NNNN_short_snake_name.sql"]

    async def test_pending_older_than_newest_applied(
        self, settings: Settings, migrated: asyncpg.Connection, mdir: Path
    ) -> None:
        """A pending file older than the newest applied one is an order finding."""
        write(mdir, "0002_late.sql", "CREATE TABLE late (n int);")
        write(mdir, "0003_early.sql", "CREATE TABLE early (n int);")
        await migrations.migrate(migrated, mdir)
        # 0002 was merged after 0003 had been deployed: as if it never ran.
        await migrated.execute("DELETE FROM schema_migrations WHERE version = 2; DROP TABLE late")
        found = messages(await check(settings, migrated))
        assert found == [
            (
                "order: 0002_late is pending but older than the newest applied migration 0003; "
                "renumber it after 0003"
            )
        ]

    async def test_hand_made_schema_change(
        self, settings: Settings, migrated: asyncpg.Connection
    ) -> None:
        """A column added by hand, an index dropped and a type changed are drift findings."""
        await migrated.execute("""
            ALTER TABLE items ADD COLUMN extra integer;
            DROP INDEX items_genres_idx;
            ALTER TABLE outbox ALTER COLUMN event_id TYPE varchar(200);
        """)  # fmt: skip
        found = messages(await check(settings, migrated))
        assert found == [
            (
                "drift: column public.items.extra (integer) is in the database but no migration "
                "creates it"
            ),
            (
                "drift: column public.outbox.event_id differs: the database has "
                "'character varying(200) NOT NULL', the migrations 'text NOT NULL'"
            ),
            (
                "drift: index public.items_genres_idx (CREATE INDEX items_genres_idx ON "
                "public.items USING gin (genres)) is missing from the database"
            ),
        ]

    async def test_role_without_createdb_gets_a_note(
        self, settings: Settings, migrated: asyncpg.Connection, postgres: EmbeddedPostgres
    ) -> None:
        """Without CREATE DATABASE the schema comparison is skipped with a note, not a crash."""
        role = "nocreate_" + unique_suffix()
        postgres.psql(f"CREATE ROLE {role} LOGIN NOCREATEDB")
        await migrated.execute(f"GRANT SELECT ON schema_migrations TO {role}")
        url = settings.database_url.replace("postgres@", f"{role}@", 1)
        limited = attrs.evolve(settings, database_url=url)
        conn = await connect(limited)
        try:
            report = await admin.check(conn, Path(settings.migrations_dir), connect_unused)
        finally:
            await conn.close()
        assert report.findings == []
        assert "NOT compared" in report.notes[0]

    async def test_scratch_database_is_dropped(
        self, settings: Settings, migrated: asyncpg.Connection
    ) -> None:
        """The check leaves no reco_check_ database behind."""
        await check(settings, migrated)
        left = await migrated.fetchval(
            "SELECT count(*) FROM pg_database WHERE datname LIKE 'reco\\_check\\_%'"
        )
        assert left == 0


class TestCommand:
    def test_check_migrations_exits_non_zero_with_findings(
        self, settings: Settings, mdir: Path
    ) -> None:
        """`reco check-migrations` prints each finding and exits 1; `migrate` then fixes none."""
        env = {"PATH": "/usr/bin:/bin", "APP_ENV": "test",
               "RECO_DATABASE_URL": settings.database_url, "RECO_MIGRATIONS_DIR": str(mdir)}  # fmt: skip

        def run(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [sys.executable, "-m", "reco", *args], env=env, capture_output=True, text=True,
                timeout=60, check=False,
            )  # fmt: skip

        assert run("migrate").returncode == 0
        ok = run("check-migrations")
        assert ok.returncode == 0, ok.stderr
        assert "check-migrations: ok" in ok.stderr
        write(mdir, "0003_gap.sql", "SELECT 1;")
        bad = run("check-migrations")
        assert bad.returncode == 1
        assert "check-migrations: naming: version 0002 is missing" in bad.stderr
