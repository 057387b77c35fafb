"""The system under test: one PostgreSQL, one broker, several ``reco serve`` processes.

PostgreSQL is durable (fsync on: it is SIGKILLed and restarted on its data
directory). Each instance reaches PostgreSQL through its own :class:`TcpProxy`
and the broker through the shared :class:`RoutingProxy` (on the port the broker
advertises), so a fault can cut one instance's links only.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import anyio
import attrs
import httpx
from reco_dev.devstack.broker import EmbeddedBroker
from reco_dev.devstack.ports import free_port
from reco_dev.devstack.postgres import EmbeddedPostgres, children_of
from reco_dev.devstack.stack import DEV_DATABASE
from reco_dev.devstack.topics import create_topics

from reco.settings import Settings
from tests.chaos.routing import RoutingProxy
from tests.support.tcp_proxy import TcpProxy

TOKEN = "chaos-token-0123456789abcdefghijklmnop"
SHUTDOWN_TIMEOUT = 5.0
FAILOVER_TIMEOUT = 5.0
LEADER_RETRY = 0.2
WRITER_RETRY_TIMEOUT = 30.0
POLL = 0.1


def service_env(database_url: str, bootstrap: str, port: int) -> dict[str, str]:
    """Development settings with small intervals, so that a heal shows within seconds."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith("RECO_") and k != "APP_ENV"}
    return {
        **keep, "APP_ENV": "development", "RECO_LOG_LEVEL": "INFO",
        "RECO_DATABASE_URL": database_url, "RECO_KAFKA_BOOTSTRAP": bootstrap,
        "RECO_HTTP_BIND": f"127.0.0.1:{port}", "RECO_API_TOKENS": TOKEN,
        "RECO_MIGRATE_ON_START": "true", "RECO_SHUTDOWN_TIMEOUT": str(SHUTDOWN_TIMEOUT),
        "RECO_DB_HEALTH_INTERVAL": "0.2", "RECO_DB_HEALTH_TIMEOUT": "0.5",
        "RECO_DB_ACQUIRE_TIMEOUT": "0.5", "RECO_KAFKA_RETRY_INITIAL": "0.05",
        "RECO_KAFKA_RETRY_MAX": "0.5", "RECO_KAFKA_REQUEST_TIMEOUT": "5",
        "RECO_CONSUMER_LAG_INTERVAL": "0.5", "RECO_CONSUMER_SESSION_TIMEOUT": "6",
        "RECO_CONSUMER_HEARTBEAT_INTERVAL": "1", "RECO_CONSUMER_BATCH_TIMEOUT": "10",
        "RECO_RELAY_LEADER_RETRY": str(LEADER_RETRY), "RECO_RELAY_POLL_INTERVAL": "0.2",
        "RECO_RELAY_STOP_TIMEOUT": "2", "RECO_RELAY_FAILOVER_TIMEOUT": str(FAILOVER_TIMEOUT),
        "RECO_RELAY_PUBLISH_TIMEOUT": "5", "RECO_OUTBOX_CHECK_INTERVAL": "0.5",
        # longer than any outage here, so that only a SIGKILL may lose impressions
        "RECO_WRITER_RETRY_TIMEOUT": str(WRITER_RETRY_TIMEOUT),
    }  # fmt: skip


@attrs.define
class Instance:
    """One ``reco serve`` child process; restarted on the same HTTP port."""

    name: str
    env: dict[str, str]
    log_path: Path
    port: int
    pg_proxy: TcpProxy
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return None if self.process is None else self.process.pid

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start_nowait(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "reco", "serve"], env=self.env, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip

    def signal(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)

    async def wait_exit(self, deadline: float) -> int | None:
        """The exit status, or None if still running after ``deadline`` seconds."""
        assert self.process is not None
        with anyio.move_on_after(deadline):
            while self.process.poll() is None:  # noqa: ASYNC110 - a Popen has no awaitable exit
                await anyio.sleep(POLL / 2)
        return self.process.poll()

    async def stop(self) -> None:
        if not self.alive:
            return
        self.signal(signal.SIGTERM)
        if await self.wait_exit(SHUTDOWN_TIMEOUT + 5) is None:
            self.signal(signal.SIGKILL)
            await self.wait_exit(5)


class Cluster:
    """Started by :func:`cluster`; the scenarios act on its parts."""

    def __init__(self, root: Path, size: int) -> None:
        self.root = root
        self.postgres = EmbeddedPostgres(root / "postgres", durable=True)
        self.router_port = free_port()
        self.broker = EmbeddedBroker(root / "broker", advertised_port=self.router_port)
        self.router = RoutingProxy("127.0.0.1", self.broker.port, port=self.router_port,
                                   processes=self.processes)  # fmt: skip
        self.size = size
        self.instances: list[Instance] = []
        self.http = httpx.AsyncClient(timeout=2.0)

    @property
    def database_url(self) -> str:
        return self.postgres.url(DEV_DATABASE)

    @property
    def bootstrap(self) -> str:
        return self.broker.bootstrap

    def settings(self) -> Settings:
        return Settings.from_flat(database_url=self.database_url, kafka_bootstrap=self.bootstrap)

    def processes(self) -> dict[int, str]:
        return {i.pid: i.name for i in self.instances if i.pid is not None and i.alive}

    # --- PostgreSQL -----------------------------------------------------------------
    def postgres_pids(self) -> list[int]:
        return [self.postgres.pid, *children_of(self.postgres.pid)]

    async def kill_postgres(self) -> None:
        """SIGKILL the postmaster and every backend at once, as a host crash would."""
        for pid in self.postgres_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        assert self.postgres.process is not None
        while self.postgres.process.poll() is None:  # noqa: ASYNC110 - a Popen has no awaitable exit
            await anyio.sleep(POLL / 2)
        while children_of(self.postgres.pid):  # noqa: ASYNC110 - orphans leave /proc in their own time
            await anyio.sleep(POLL / 2)

    async def start_postgres(self) -> None:
        await anyio.to_thread.run_sync(self.postgres.start)

    # --- instances ------------------------------------------------------------------
    async def add_instance(self, stack: AsyncExitStack) -> Instance:
        name = f"reco-{len(self.instances) + 1}"
        proxy = await stack.enter_async_context(TcpProxy("127.0.0.1", self.postgres.port))
        url = self.database_url.replace(f":{self.postgres.port}/", f":{proxy.port}/")
        port = free_port()
        instance = Instance(name, service_env(url, self.bootstrap, port),
                            self.root / f"{name}.log", port, proxy)  # fmt: skip
        self.instances.append(instance)
        return instance

    async def status(self, instance: Instance, path: str) -> int | None:
        try:
            return (await self.http.get(instance.url + path)).status_code
        except httpx.HTTPError:
            return None

    async def failing_checks(self, instance: Instance) -> str:
        """The checks of ``instance``'s strict readiness that are not ok, with their details."""
        try:
            body = (await self.http.get(instance.url + "/readyz?strict=1")).json()
        except (httpx.HTTPError, ValueError) as exc:
            return type(exc).__name__
        bad = [f"{name}: {c.get('detail') or c.get('status')}"
               for name, c in body.get("checks", {}).items() if c.get("status") != "ok"]  # fmt: skip
        return "; ".join(bad) or str(body.get("status"))

    async def metric(self, instance: Instance, name: str) -> float | None:
        """The sum of every series of ``name`` on ``instance``, or None when it does not answer."""
        try:
            text = (await self.http.get(instance.url + "/metrics")).text
        except httpx.HTTPError:
            return None
        values = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                  if line.startswith(name) and line[len(name)] in " {"]  # fmt: skip
        return sum(values)

    async def leaders(self) -> list[Instance]:
        return [i for i in self.instances if i.alive and await self.metric(i, "reco_outbox_leader")]

    async def start_instance(self, instance: Instance, deadline: float = 60.0) -> float:
        """Start ``instance``; the seconds until it was strictly ready."""
        began = time.monotonic()
        instance.start_nowait()
        with anyio.fail_after(deadline):
            while await self.status(instance, "/readyz?strict=1") != 200:
                if not instance.alive:
                    raise RuntimeError(f"{instance.name} exited; see {instance.log_path}")
                await anyio.sleep(POLL)
        return time.monotonic() - began


@asynccontextmanager
async def cluster(root: Path, size: int) -> AsyncIterator[Cluster]:
    """The stack and ``size`` strictly ready instances; everything stopped on the way out."""
    system = Cluster(root, size)
    async with AsyncExitStack() as stack:
        await system.start_postgres()
        stack.callback(system.postgres.stop)
        system.postgres.psql(f"CREATE DATABASE {DEV_DATABASE}")
        system.broker.start()
        stack.callback(system.broker.stop)
        await stack.enter_async_context(system.router)
        await create_topics(system.settings())
        stack.push_async_callback(system.http.aclose)
        for _ in range(size):
            await system.add_instance(stack)
        stack.push_async_callback(_stop_all, system)
        first, *others = system.instances
        await system.start_instance(first)  # it migrates; the others find the schema
        async with anyio.create_task_group() as tg:
            for instance in others:
                tg.start_soon(system.start_instance, instance)
        yield system


async def _stop_all(system: Cluster) -> None:
    with anyio.CancelScope(shield=True):
        async with anyio.create_task_group() as tg:
            for instance in system.instances:
                tg.start_soon(instance.stop)
