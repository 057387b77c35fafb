"""The database component: one asyncpg pool, owned by the root task group.

Timeouts everywhere, from settings: connect, ``statement_timeout``,
``lock_timeout`` and ``idle_in_transaction_session_timeout`` go through
``server_settings`` (so they survive connection reset), and every acquire has
a timeout (a hung server must not leak pool slots). Start-up waits for the
server with backoff up to a deadline; a health loop keeps the ``database``
readiness check true to what the server does now.

TCP keepalives on every connection, at both ends (``db_tcp_keepalives_*``): the
server's through ``server_settings`` (``tcp_keepalives_*``, ``tcp_user_timeout``),
ours as socket options set once connected (asyncpg has no parameter for them:
MagicStack/asyncpg#606). A peer whose network silently drops is then dead after
``db_tcp_dead_after`` (25 s) instead of the kernel's two hours, on the server
(which releases the session's advisory locks) and here (asyncpg sees the
connection lost). They cannot see a peer whose kernel still answers (a hung
process, a userspace proxy that stops forwarding): that is what the timeouts
and the relay's lock pings are for.

Release skips asyncpg's reset query (``pg_advisory_unlock_all(); CLOSE ALL;
UNLISTEN *; RESET ALL``), a second round trip on every request, when the
block that used the connection exited cleanly outside a transaction: pooled
connections never take session state (advisory locks, LISTEN and session
SETs use dedicated connections from :func:`connect`; timeouts are
``server_settings``, which RESET ALL keeps anyway). Any other release (an
exception, an open transaction, a connection not acquired through
:meth:`Database.connection`) gets the full reset, as before.
"""

from __future__ import annotations

import contextlib
import math
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, cast

import anyio
import anyio.abc
import asyncpg

from reco.db import migrations
from reco.db.classify import breaks_connection, classify, is_transient, translate
from reco.errors import DatabaseUnavailable
from reco.lifecycle import Stop
from reco.observability import metrics
from reco.observability.logs import get_logger
from reco.observability.readiness import Readiness
from reco.retry import retrying
from reco.settings import DatabaseSettings

log = get_logger("reco.db")

CHECK = "database"


def _ms(seconds: float) -> str:
    return str(int(seconds * 1000))


def _s(seconds: float) -> str:
    return str(max(1, math.ceil(seconds)))


def server_settings(settings: DatabaseSettings, application_name: str = "reco") -> dict[str, str]:
    """Session settings sent at connect time, so a connection reset keeps them."""
    return {
        "application_name": application_name,
        "statement_timeout": _ms(settings.statement_timeout),
        "lock_timeout": _ms(settings.lock_timeout),
        "idle_in_transaction_session_timeout": _ms(settings.idle_in_transaction_timeout),
        "tcp_keepalives_idle": _s(settings.tcp_keepalives_idle),
        "tcp_keepalives_interval": _s(settings.tcp_keepalives_interval),
        "tcp_keepalives_count": str(settings.tcp_keepalives_count),
        "tcp_user_timeout": _ms(settings.tcp_dead_after),
    }


def keep_alive(conn: asyncpg.Connection, settings: DatabaseSettings) -> None:
    """Our end's TCP keepalives and user timeout, as the server's (no-op on a Unix socket)."""
    # asyncpg exposes no socket options (MagicStack/asyncpg#606); its transport is the
    # way (private: should it go, this is a no-op and the server's keepalives remain).
    transport: Any = getattr(conn, "_transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    options = {
        "TCP_KEEPIDLE": math.ceil(settings.tcp_keepalives_idle),
        "TCP_KEEPINTVL": math.ceil(settings.tcp_keepalives_interval),
        "TCP_KEEPCNT": settings.tcp_keepalives_count,
        "TCP_USER_TIMEOUT": int(settings.tcp_dead_after * 1000),
    }
    for name, value in options.items():
        if hasattr(socket, name):  # Linux has all four; others some
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, name), value)


async def connect(
    settings: DatabaseSettings,
    application_name: str = "reco",
    *,
    database: str | None = None,
    extra_settings: dict[str, str] | None = None,
) -> asyncpg.Connection:
    """A dedicated connection (advisory locks, LISTEN), with the pool's timeouts.

    ``database`` overrides the one named in the URL (same server and credentials);
    ``extra_settings`` adds session settings (the relay lock's ``idle_session_timeout``).
    """
    conn: asyncpg.Connection = await asyncpg.connect(
        settings.url,
        database=database,
        timeout=settings.connect_timeout,
        command_timeout=settings.statement_timeout + 1,
        server_settings={**server_settings(settings, application_name), **(extra_settings or {})},
    )
    keep_alive(conn, settings)
    return conn


class Database:
    """The pool, its start-up wait, its health loop and instrumented acquire."""

    name = "database"

    def __init__(self, settings: DatabaseSettings, readiness: Readiness, *, migrate: bool) -> None:
        """``migrate``: apply pending migrations at start (``Settings.should_migrate_on_start``)."""
        self.settings = settings
        self.migrate = migrate
        self.readiness = readiness
        self._pool: asyncpg.Pool | None = None
        self._background: asyncpg.Pool | None = None  # the background components' (see open)
        self._clean: set[int] = set()  # server pids released clean: no reset query

    @property
    def pool(self) -> asyncpg.Pool:
        if self._pool is None:
            raise DatabaseUnavailable("the pool is not open")
        return self._pool

    async def open(self) -> None:
        """Create the pool, retrying with backoff until ``db_startup_deadline``."""
        cfg = self.settings
        self.readiness.set(CHECK, False, "connecting")
        attempt = 0
        async for attempt_ctx in retrying(
            is_transient, timeout=cfg.startup_deadline,
            initial=cfg.retry_initial, maximum=cfg.retry_max,
        ):  # fmt: skip
            with attempt_ctx:
                attempt += 1
                log.info("connecting to the database", attempt=attempt)
                if self._pool is None:
                    self._pool = await self._create_pool(cfg.pool_min_size, cfg.pool_max_size)
                # The background components (writer, relay, folder, consumer) draw from
                # a pool of their own: a request never waits for a connection that a
                # batch holds, and a burst of requests never starves the writer.
                if cfg.background_pool_size > 0 and self._background is None:
                    self._background = await self._create_pool(
                        min(1, cfg.background_pool_size), cfg.background_pool_size
                    )
        self.readiness.set(CHECK, True)
        self._update_pool_gauges()

    async def _create_pool(self, min_size: int, max_size: int) -> asyncpg.Pool:
        cfg = self.settings
        return await asyncpg.create_pool(
            cfg.url,
            min_size=min_size,
            max_size=max_size,
            timeout=cfg.connect_timeout,
            command_timeout=cfg.statement_timeout + 1,
            server_settings=server_settings(cfg),
            init=self._init,
            reset=self._reset,
        )

    async def aclose(self, stop: Stop | None = None) -> None:
        """Close the pools (shielded, within ``db_connect_timeout`` and the stop's share)."""
        stop = stop or Stop()
        for pool in (self._background, self._pool):
            if pool is not None:
                with stop.cleanup(self.settings.connect_timeout):
                    await pool.close()
                if not pool.is_closing():
                    pool.terminate()
        self._pool = self._background = None

    async def prepare_schema(self) -> None:
        """Migrate (when told to) on a dedicated connection, then insist the schema is current."""
        directory = (
            Path(self.settings.migrations_dir)
            if self.settings.migrations_dir
            else migrations.default_dir()
        )
        if self.migrate:
            conn = await connect(self.settings, "reco-migrate")
            try:
                await migrations.migrate(conn, directory)
            finally:
                await conn.close()
        async with self.connection() as conn:
            await migrations.ensure_current(conn, directory)

    async def run(self, *, task_status: anyio.abc.TaskStatus[None], stop: Stop) -> None:
        try:
            await self.open()
            await self.prepare_schema()
            task_status.started()
            while not stop.requested:
                await self.check_once()
                with stop.idle():
                    await anyio.sleep(self.settings.health_interval)
        finally:
            await self.aclose(stop)

    async def check_once(self) -> bool:
        """Run ``SELECT 1`` within ``db_health_timeout``; update readiness."""
        ok, detail = True, ""
        try:
            with anyio.fail_after(self.settings.health_timeout):
                async with self.connection() as conn:
                    await conn.fetchval("SELECT 1")
        except TimeoutError:
            ok, detail = False, f"no answer within {self.settings.health_timeout:g} s"
        except Exception as exc:  # noqa: BLE001 - any failure means not ready; the class says which
            ok, detail = False, f"{type(exc).__name__}"
        if ok != (self.readiness.get(CHECK) or _OK).ok:
            log.warning("database check changed", ok=ok, detail=detail)
        self.readiness.set(CHECK, ok, detail)
        self._update_pool_gauges()
        return ok

    @asynccontextmanager
    async def connection(self, *, background: bool = False) -> AsyncIterator[asyncpg.Connection]:
        """Acquire a pooled connection within ``db_acquire_timeout``, instrumented.

        ``background``: from the background components' pool (``db_background_pool_size``;
        the request pool when that is 0), never one a request could use.

        asyncpg errors leave the block translated into reco's vocabulary
        (:func:`reco.db.classify.translate`, the original as ``__cause__``);
        what it does not recognise (a bug) leaves unchanged.

        A connection whose state is unknown after an error or a cancellation
        (a client-side timeout, a lost connection) is closed, not reused.
        """
        pool = self.pool
        if background and self._background is not None:
            pool = self._background
        conn = await self._acquire(pool)
        broken = False
        try:
            # The proxy forwards every Connection method; SQL functions take a Connection.
            yield cast(asyncpg.Connection, conn)
            self._note_clean(conn)
        except anyio.get_cancelled_exc_class():
            broken = True
            raise
        except Exception as exc:
            broken = breaks_connection(exc)
            translated = _counted(exc, unknown_too=True)
            if translated is None or translated is exc:
                raise
            raise translated from exc
        finally:
            with anyio.CancelScope(shield=True):
                await self._give_back(pool, conn, broken=broken)
            self._update_pool_gauges()

    def _note_clean(self, conn: Any) -> None:
        """A connection released outside a transaction needs no reset query; one the pool
        already took back (its session ended under the block) has nothing to note."""
        with contextlib.suppress(asyncpg.InterfaceError):
            if not conn.is_in_transaction():
                self._clean.add(conn.get_server_pid())

    async def _give_back(self, pool: asyncpg.Pool, conn: Any, *, broken: bool) -> None:
        """Return ``conn`` to the pool; one that died meanwhile is the pool's to replace.

        ``pool.release`` resets the connection, and when the server is gone (killed,
        restarted) the reset fails, asyncpg terminates the connection and then raises
        (``ConnectionDoesNotExistError``); a connection the protocol already closed
        has left the pool, and terminating or releasing its proxy raises
        ``InterfaceError``. The work of the block is over by then (committed or not,
        as the block saw), so such an error is counted and logged here, never raised
        from the ``finally`` of :meth:`connection`, where it would escape untranslated
        and crash the component that asked (seen: the consumer, after a PostgreSQL
        SIGKILL, in the chaos suite).
        """
        try:
            if broken:
                conn.terminate()
            await pool.release(conn, timeout=self.settings.acquire_timeout)
        except Exception as exc:
            if _counted(exc) is None:
                raise
            log.warning("connection lost while returned to the pool", error=repr(exc))

    async def _init(self, conn: asyncpg.Connection) -> None:
        """The pool's hook for each new connection: TCP keepalives on our end."""
        keep_alive(conn, self.settings)

    async def _reset(self, conn: asyncpg.Connection) -> None:
        """The pool's reset hook (after asyncpg's own rollback of an open transaction).

        A connection released clean by :meth:`connection` needs nothing; any
        other gets asyncpg's full reset query.
        """
        pid = conn.get_server_pid()
        if pid in self._clean:
            self._clean.discard(pid)
            return
        if query := conn.get_reset_query():
            await conn.execute(query)

    async def _acquire(self, pool: asyncpg.Pool) -> Any:
        began = time.perf_counter()
        try:
            conn = await pool.acquire(timeout=self.settings.acquire_timeout)
        except TimeoutError:
            metrics.db_acquire_timeouts.inc({})
            raise DatabaseUnavailable(
                f"no pool connection within {self.settings.acquire_timeout:g} s"
            ) from None
        except Exception as exc:
            # The pool replaces a closed connection on acquire: with the server down or
            # restarting, that connect fails (refused, "starting up", closed mid-setup).
            # Untranslated, it crashed the consumer after a PostgreSQL SIGKILL (chaos suite).
            translated = _counted(exc)
            if translated is None:
                raise
            raise translated from exc
        finally:
            metrics.db_acquire_wait.observe({}, time.perf_counter() - began)
        self._update_pool_gauges()
        return conn

    def _update_pool_gauges(self) -> None:
        if self._pool is None:
            return
        size = self._pool.get_size()
        metrics.db_pool_size.set({}, size)
        metrics.db_pool_in_use.set({}, size - self._pool.get_idle_size())


def _counted(exc: Exception, *, unknown_too: bool = False) -> Exception | None:
    """reco's translation of an asyncpg error (None: not one we know), counted in
    ``reco_db_query_errors_total`` by class (errors we do not know only if ``unknown_too``)."""
    translated = translate(exc)
    if translated is not None or unknown_too:
        metrics.db_query_errors.inc({"class": classify(exc).value})
    return translated


class _AlwaysOk:
    ok = True


_OK: Any = _AlwaysOk()
