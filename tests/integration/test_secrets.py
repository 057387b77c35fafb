"""No secret in any log line, traceback or metric (issue 10, finding 7).

Black box: the real ``reco serve`` process, its every output line (stdout and
stderr) searched for the database password, in start-ups that fail in each
way a connection can (rejected, refused, blackholed) and in one that works.
"""

from __future__ import annotations

import json
import signal

import anyio
import httpx
import pytest
from reco_dev.devstack.ports import free_port
from reco_dev.devstack.postgres import EmbeddedPostgres

from tests.integration.test_process import empty_database, serve_env
from tests.support.process import Child, spawn
from tests.support.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

PASSWORD = "Pw-7c1e5f0b-distinctive"
BOUND = 30.0


def failing_env(url: str) -> dict[str, str]:
    return {
        **serve_env(url), "RECO_DB_STARTUP_DEADLINE": "2", "RECO_DB_CONNECT_TIMEOUT": "0.5",
        "RECO_DB_RETRY_INITIAL": "0.05", "RECO_DB_RETRY_MAX": "0.2", "RECO_LOG_LEVEL": "DEBUG",
    }  # fmt: skip


def assert_no_password(child: Child, *texts: str) -> None:
    printed = "\n".join(json.dumps(line) for line in child.lines)
    assert child.lines, "the process printed nothing"
    for text in (printed, *texts):
        assert PASSWORD not in text
        assert PASSWORD.replace("-", "%2D") not in text


async def failed_start(url: str) -> Child:
    async with spawn(["-m", "reco", "serve"], failing_env(url)) as child:
        with anyio.fail_after(BOUND):
            status = await child.wait_exit()
    assert status == 1
    assert "start-up failed" in child.events()
    assert any("exception" in line for line in child.lines), "no traceback was logged"
    return child


class TestNoPasswordInOutput:
    async def test_rejected_login(self, postgres: EmbeddedPostgres) -> None:
        """An unknown role (the server refuses the login): no line carries the password."""
        url = f"postgresql://nobody_here:{PASSWORD}@127.0.0.1:{postgres.port}/postgres"
        assert_no_password(await failed_start(url + "?sslmode=disable"))

    async def test_refused_port(self) -> None:
        """Nothing listens on the port (connection refused, retried until the deadline)."""
        url = f"postgresql://reco@127.0.0.1:{free_port()}/reco?password={PASSWORD}"
        child = await failed_start(url)
        assert_no_password(child)
        attempts = [
            line for line in child.lines if line.get("event") == "connecting to the database"
        ]
        assert len(attempts) > 1  # retried: several attempts, several tracebacks, no password

    async def test_blackholed_server(self) -> None:
        """A server that accepts and never answers (each connect times out)."""
        async with TcpProxy("127.0.0.1", free_port()) as proxy:
            proxy.blackhole()
            url = f"postgresql://reco:{PASSWORD}@127.0.0.1:{proxy.port}/reco?sslmode=disable"
            assert_no_password(await failed_start(url))

    async def test_running_service(self, postgres: EmbeddedPostgres) -> None:
        """A service that starts (the embedded server trusts loopback) shows no password either."""
        database = empty_database(postgres).replace("postgres@", f"postgres:{PASSWORD}@")
        env = {**serve_env(database), "RECO_LOG_LEVEL": "DEBUG"}
        async with spawn(["-m", "reco", "serve"], env) as child:
            with anyio.fail_after(BOUND):
                listening = await child.wait_event("http listening")
                await child.wait_event("started")
            async with httpx.AsyncClient(base_url=str(listening["address"])) as client:
                metrics = (await client.get("/metrics")).text
                ready = (await client.get("/readyz")).text
            child.signal(signal.SIGTERM)
            with anyio.fail_after(BOUND):
                assert await child.wait_exit() == 0
        assert_no_password(child, metrics, ready)
