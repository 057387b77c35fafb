"""The pool against the real PostgreSQL: timeouts, exhaustion, a frozen server, start-up."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import asyncpg.exceptions._base as pg_base
import pytest
from reco_dev.devstack.ports import free_port
from reco_dev.devstack.postgres import EmbeddedPostgres

from reco.db.pool import CHECK, Database, connect
from reco.errors import DatabaseUnavailable
from reco.observability import metrics
from reco.observability.readiness import Readiness
from reco.settings import AppEnv, Settings, evolve
from tests.support.components import request_stop, start
from tests.support.logs import Logs, captured_logs
from tests.support.tcp_proxy import TcpProxy
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

BOUND = 5.0


def value(metric: Any, labels: dict[str, str] | None = None) -> float:
    """A metric's current value; 0 for a series not yet created."""
    try:
        return float(metric.get(labels or {}))
    except KeyError:
        return 0.0


@pytest.fixture
def fast(settings: Settings) -> Settings:
    """Small pool, short timeouts."""
    return evolve(
        settings, db_pool_min_size=1, db_pool_max_size=1, db_statement_timeout=0.2,
        db_acquire_timeout=0.2, db_health_interval=60, db_health_timeout=0.3,
        db_retry_initial=0.02, db_retry_max=0.1,
    )  # fmt: skip


@pytest.fixture
async def database(fast: Settings) -> AsyncIterator[Database]:
    """A running Database component (started with tg.start, stopped at the end)."""
    db = Database(fast.database, Readiness(), migrate=fast.should_migrate_on_start)
    async with anyio.create_task_group() as tg:
        await start(tg, db)
        yield db
        request_stop(db)


class TestTimeouts:
    async def test_statement_timeout_fails_clearly_and_connection_is_reused(
        self, database: Database
    ) -> None:
        """A slow statement is cancelled by statement_timeout; the same connection then works."""
        async with database.connection() as conn:
            pid = await conn.fetchval("SELECT pg_backend_pid()")
            with anyio.fail_after(BOUND), pytest.raises(asyncpg.QueryCanceledError) as info:
                await conn.execute("SELECT pg_sleep(3)")
            assert "statement timeout" in str(info.value)
            assert await conn.fetchval("SELECT 1") == 1
        async with database.connection() as conn:  # the pool kept it: max size 1
            assert await conn.fetchval("SELECT pg_backend_pid()") == pid

    async def test_timeouts_are_session_settings(self, database: Database) -> None:
        """statement, lock and idle-in-transaction timeouts are set for every connection."""
        async with database.connection() as conn:
            await conn.execute("RESET ALL")  # what a pool reset does: settings survive
            values = [await conn.fetchval(f"SHOW {name}") for name in (
                "statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout"
            )]  # fmt: skip
        assert values == ["200ms", "2s", "30s"]

    async def test_dedicated_connection_has_the_timeouts(self, fast: Settings) -> None:
        """connect() (migrations, locks) applies the same statement_timeout."""
        conn = await connect(fast.database)
        try:
            with pytest.raises(asyncpg.QueryCanceledError):
                await conn.execute("SELECT pg_sleep(3)")
            assert await conn.fetchval("SELECT 1") == 1
        finally:
            await conn.close()

    async def test_exhausted_pool_times_out(self, database: Database) -> None:
        """With every connection checked out, acquire fails after acquire_timeout, not never."""
        before = value(metrics.db_acquire_timeouts, {})
        async with database.connection():
            assert value(metrics.db_pool_in_use, {}) == 1
            began = anyio.current_time()
            with anyio.fail_after(BOUND), pytest.raises(DatabaseUnavailable, match=r"0\.2 s"):
                async with database.connection():
                    pass
            assert anyio.current_time() - began >= 0.15
        assert value(metrics.db_acquire_timeouts, {}) == before + 1
        assert value(metrics.db_pool_in_use, {}) == 0

    async def test_background_work_has_a_pool_of_its_own(self, database: Database) -> None:
        """A request pool held to the last connection still leaves the background one
        (RECO_DB_BACKGROUND_POOL_SIZE): a batch never waits behind requests, nor they behind it."""
        async with database.connection() as conn:
            mine = await conn.fetchval("SELECT pg_backend_pid()")
            with anyio.fail_after(BOUND):
                async with database.connection(background=True) as other:
                    assert await other.fetchval("SELECT pg_backend_pid()") != mine

    async def test_query_errors_are_counted_by_class(self, database: Database) -> None:
        """A failing statement counts under its class; the connection stays usable."""
        before = value(metrics.db_query_errors, {"class": "error"})
        with pytest.raises(asyncpg.UndefinedTableError):
            async with database.connection() as conn:
                await conn.fetch("SELECT * FROM no_such_table")
        assert value(metrics.db_query_errors, {"class": "error"}) == before + 1
        async with database.connection() as conn:
            assert await conn.fetchval("SELECT 1") == 1


class TestComponent:
    async def test_cancellation_closes_the_pool(self, fast: Settings) -> None:
        """Cancelled after start, run() exits promptly and leaves no pool open."""
        db = Database(fast.database, Readiness(), migrate=fast.should_migrate_on_start)
        with anyio.fail_after(BOUND):
            async with anyio.create_task_group() as tg:
                await start(tg, db)
                pool = db.pool
                tg.cancel_scope.cancel()
        assert pool.is_closing()
        with pytest.raises(DatabaseUnavailable):
            db.pool  # noqa: B018 - the property is the check


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[EmbeddedPostgres]:
    """A server of its own: these tests freeze and stop it.

    Not under tmp_path: a concurrent pytest resets /tmp/pytest-of-<user> to 0700, which
    locks out the unprivileged user PostgreSQL runs as (when we are root).
    """
    with tempfile.TemporaryDirectory(prefix="reco-own-pg-") as tmp:
        server = EmbeddedPostgres(Path(tmp) / "pg", durable=False)
        server.start()
        try:
            yield server
        finally:
            server.stop()


def own_settings(server: EmbeddedPostgres, port: int | None = None) -> Settings:
    url = server.url() if port is None else f"postgresql://postgres@127.0.0.1:{port}/postgres"
    return Settings.from_flat(
        app_env=AppEnv.TEST, database_url=url, migrate_on_start=True, db_pool_min_size=1,
        db_pool_max_size=2, db_health_interval=0.1, db_health_timeout=0.3,
        db_acquire_timeout=0.3, db_connect_timeout=0.5, db_startup_deadline=20,
        db_retry_initial=0.05, db_retry_max=0.2,
    )  # fmt: skip


@pytest.fixture
def logs() -> Iterator[Logs]:
    with captured_logs() as captured:
        yield captured


class TestUnavailableServer:
    async def test_frozen_server_fails_readiness_and_recovers(
        self, own_postgres: EmbeddedPostgres
    ) -> None:
        """SIGSTOP: readiness fails within interval + timeout; SIGCONT: it recovers."""
        settings = own_settings(own_postgres)
        readiness = Readiness()
        db = Database(settings.database, readiness, migrate=settings.should_migrate_on_start)
        bound = settings.database.health_interval + settings.database.health_timeout + 1.0
        async with anyio.create_task_group() as tg:
            await start(tg, db)
            assert readiness.ready
            own_postgres.pause()
            try:
                took = await wait_until(lambda: not readiness.ready, deadline=bound)
                assert readiness.snapshot()["checks"][CHECK]["status"] == "failing"
                assert value(metrics.check_status, {"check": CHECK}) == 0
            finally:
                own_postgres.resume()
            await wait_until(lambda: readiness.ready, deadline=10)
            assert value(metrics.check_status, {"check": CHECK}) == 1
            async with db.connection() as conn:
                assert await conn.fetchval("SELECT 1") == 1
            request_stop(db)
        assert took < bound

    async def test_start_up_gives_up_at_the_deadline(self, logs: Logs) -> None:
        """Nothing listening: open() retries with backoff, logging each try, then gives up."""
        settings = evolve(
            own_settings(EmbeddedPostgres(Path("/nonexistent")), port=free_port()),
            db_startup_deadline=0.5,
        )
        db = Database(settings.database, Readiness(), migrate=settings.should_migrate_on_start)
        began = anyio.current_time()
        with anyio.fail_after(BOUND), pytest.raises(OSError, match="onnect"):
            await db.open()
        assert anyio.current_time() - began >= 0.4
        attempts = [e for e in logs if e["event"] == "connecting to the database"]
        assert len(attempts) >= 3
        assert db.readiness.get(CHECK) is not None
        assert not db.readiness.ready

    async def test_acquire_while_the_server_is_down_is_unavailable(
        self, own_postgres: EmbeddedPostgres
    ) -> None:
        """The pool reconnects on acquire; a refused connect is DatabaseUnavailable, not the
        raw OSError (regression: the consumer crashed on it after a PostgreSQL SIGKILL)."""
        own = own_settings(own_postgres)
        db = Database(own.database, Readiness(), migrate=own.should_migrate_on_start)
        async with anyio.create_task_group() as tg:
            await start(tg, db)
            own_postgres.stop()
            try:
                with pytest.raises(DatabaseUnavailable):
                    async with db.connection():
                        pass
            finally:
                await anyio.to_thread.run_sync(own_postgres.start)
            request_stop(db)

    async def test_start_up_waits_for_the_server(self, own_postgres: EmbeddedPostgres) -> None:
        """A server that comes up within the deadline is waited for, not failed on."""
        own_postgres.stop()
        own = own_settings(own_postgres)
        db = Database(own.database, Readiness(), migrate=own.should_migrate_on_start)
        async with anyio.create_task_group() as tg:

            async def start_server() -> None:
                await anyio.to_thread.run_sync(own_postgres.start)

            tg.start_soon(start_server)
            with anyio.fail_after(30):
                await db.open()
        try:
            assert db.readiness.ready
        finally:
            await db.aclose()


async def set_name_then_fail(conn: asyncpg.Connection) -> None:
    await conn.execute("SET application_name = 'dirty'")
    raise ValueError("boom")


class TestReset:
    """Release skips asyncpg's reset query only after a clean block outside a transaction."""

    async def test_clean_release_skips_the_reset_query(self, database: Database) -> None:
        """No reset round trip: session state set by a clean block is still there (max size 1)."""
        async with database.connection() as conn:
            await conn.execute("SET application_name = 'not-reset'")
        async with database.connection() as conn:
            assert await conn.fetchval("SHOW application_name") == "not-reset"

    async def test_release_after_an_error_resets_the_session(self, database: Database) -> None:
        """A block that raised leaves its connection in an unknown state: fully reset."""
        with pytest.raises(ValueError, match="boom"):
            async with database.connection() as conn:
                await set_name_then_fail(conn)
        async with database.connection() as conn:
            assert await conn.fetchval("SHOW application_name") == "reco"

    async def test_release_in_a_transaction_rolls_back_and_resets(self, database: Database) -> None:
        """A transaction left open is rolled back and the session reset."""
        async with database.connection() as conn:
            await conn.execute("BEGIN; SET application_name = 'dirty'")
            assert conn.is_in_transaction()
        async with database.connection() as conn:
            assert not conn.is_in_transaction()
            assert await conn.fetchval("SHOW application_name") == "reco"


async def terminate_backend(settings: Settings, pid: int) -> None:
    """End a session from the server side, as a PostgreSQL crash or restart does."""
    other = await asyncpg.connect(settings.database.url)
    try:
        await other.execute("SELECT pg_terminate_backend($1)", pid)
        with anyio.fail_after(BOUND):
            while await other.fetchval(  # noqa: ASYNC110 - polling the server's view
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", pid
            ):
                await anyio.sleep(0.01)
    finally:
        await other.close()


class TestServerEndsTheSession:
    """A session the server ended while checked out (found by the chaos suite's PostgreSQL
    SIGKILL): the pool's release must not raise the raw asyncpg error from ``connection()``'s
    ``finally``, where nothing translates it and the caller (the consumer) crashed."""

    async def test_a_statement_then_fails_translated(
        self, database: Database, fast: Settings
    ) -> None:
        async def statement_after_the_end() -> None:
            async with database.connection() as conn, conn.transaction():
                await terminate_backend(fast, conn.get_server_pid())
                await conn.execute("SELECT 1")

        with pytest.raises(DatabaseUnavailable):
            await statement_after_the_end()
        async with database.connection() as conn:
            assert await conn.fetchval("SELECT 1") == 1

    async def test_a_transaction_left_open_is_released_quietly(
        self, database: Database, fast: Settings
    ) -> None:
        """The block's work is over: the dead session is the pool's to replace, not an error."""
        async with database.connection() as conn:
            await conn.execute("BEGIN")
            await terminate_backend(fast, conn.get_server_pid())
        async with database.connection() as conn:
            assert await conn.fetchval("SELECT 1") == 1


class TestFarewellBeforeTheEnd:
    """The server's FATAL (a shutdown, a crash, ``pg_terminate_backend``) can reach the client
    before the connection's end does: on a slow link, or a loaded host. A statement issued in
    between meets asyncpg's ``InternalClientError`` ("cannot switch to state 15; another
    operation (2) is in progress"), which is neither an ``InterfaceError`` nor a server error.
    Read as a bug, it stopped the consumer and so the instance, which then never came back
    (chaos suite, postgres-sigkill under load: "reco-1 not strictly ready" for good)."""

    LATENCY = 1.0  # per chunk: the FATAL arrives after one, the end after two

    async def test_a_statement_then_is_unavailable_and_the_connection_replaced(
        self, fast: Settings, postgres: EmbeddedPostgres
    ) -> None:
        async with TcpProxy("127.0.0.1", postgres.port) as proxy:
            url = fast.database.url.replace(f":{postgres.port}/", f":{proxy.port}/")
            proxied = evolve(fast, database_url=url)
            db = Database(proxied.database, Readiness(), migrate=False)

            async def statement_between_the_fatal_and_the_end() -> None:
                async with db.connection() as conn:
                    proxy.set_latency(self.LATENCY)
                    await terminate_backend(fast, conn.get_server_pid())
                    await anyio.sleep(self.LATENCY * 1.5)  # the FATAL is in, the end is not
                    await conn.execute("SELECT 1")

            async with anyio.create_task_group() as tg:
                await start(tg, db)
                with anyio.fail_after(BOUND), pytest.raises(DatabaseUnavailable) as caught:
                    await statement_between_the_fatal_and_the_end()
                assert isinstance(caught.value.__cause__, pg_base.InternalClientError)
                proxy.set_latency(0)
                async with db.connection() as conn:  # a fresh connection, not the broken one
                    assert await conn.fetchval("SELECT 1") == 1
                request_stop(db)
