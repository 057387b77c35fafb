"""The process as operators run it: signals, phases, exit codes (subprocesses)."""

from __future__ import annotations

import signal

import anyio
import httpx
import pytest
from reco_dev.devstack.postgres import EmbeddedPostgres

from reco.supervisor import EXIT_FORCED, EXIT_OK
from tests.support.process import spawn
from tests.support.servers import unique_suffix

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

START = 30.0
SHUTDOWN_TIMEOUT = 10.0


def empty_database(postgres: EmbeddedPostgres) -> str:
    name = "serve_" + unique_suffix()
    postgres.psql(f"CREATE DATABASE {name}")
    return postgres.url(name)


def serve_env(database_url: str) -> dict[str, str]:
    return {
        "APP_ENV": "test", "RECO_DATABASE_URL": database_url, "RECO_HTTP_BIND": "127.0.0.1:0",
        "RECO_MIGRATE_ON_START": "true", "RECO_SHUTDOWN_TIMEOUT": str(SHUTDOWN_TIMEOUT),
        "RECO_CONSUMER_ENABLED": "false", "RECO_RELAY_ENABLED": "false",
    }  # fmt: skip


class TestServe:
    async def test_sigterm_drains_in_phases_and_exits_0(self, postgres: EmbeddedPostgres) -> None:
        """`reco serve` migrates, serves, and on SIGTERM stops in logged phases with exit 0."""
        env = serve_env(empty_database(postgres))
        async with spawn(["-m", "reco", "serve"], env) as child:
            with anyio.fail_after(START):
                listening = await child.wait_event("http listening")
                await child.wait_event("started")
            async with httpx.AsyncClient(base_url=str(listening["address"])) as client:
                assert (await client.get("/readyz")).status_code == 200
            child.signal(signal.SIGTERM)
            with anyio.fail_after(SHUTDOWN_TIMEOUT + 5):
                status = await child.wait_exit()
        assert status == EXIT_OK
        events = child.events()
        assert "migration applied" in events
        assert events.index("signal received; stopping") < events.index("shutdown finished")
        phases = [line["phase"] for line in child.lines if line.get("event") == "shutdown phase"]
        assert phases == ["not-ready", "drain"]
        stopped = [line for line in child.lines if line.get("event") == "component stopped"]
        names = [line["component"] for line in stopped]
        assert (names[0], names[-1]) == ("http", "database")  # reverse of the start order
        assert all("duration" in line for line in stopped)

    async def test_refuses_a_database_behind_the_files(self, postgres: EmbeddedPostgres) -> None:
        """Without migrate-on-start, an unmigrated database stops start-up with exit 1."""
        env = {**serve_env(empty_database(postgres)), "RECO_MIGRATE_ON_START": "false"}
        async with spawn(["-m", "reco", "serve"], env) as child:
            with anyio.fail_after(START):
                status = await child.wait_exit()
        assert status == 1
        failure = next(line for line in child.lines if line.get("event") == "start-up failed")
        assert "behind the migration files" in str(failure["error"])


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
class TestSignals:
    async def test_sigterm_exits_0(self, backend: str) -> None:
        """The supervisor owns SIGTERM: a graceful stop, exit 0."""
        async with spawn(["-m", "tests.support.supervised", backend], {}) as child:
            with anyio.fail_after(START):
                await child.wait_event("started")
            child.signal(signal.SIGTERM)
            with anyio.fail_after(START):
                assert await child.wait_exit() == EXIT_OK

    async def test_second_signal_forces_exit(self, backend: str) -> None:
        """While a component ignores the stop, a second signal cancels everything: exit 130."""
        args = ["-m", "tests.support.supervised", backend, "--stubborn"]
        async with spawn(args, {}) as child:
            with anyio.fail_after(START):
                await child.wait_event("started")
            child.signal(signal.SIGTERM)
            with anyio.fail_after(START):
                await child.wait_event("shutdown phase", phase="drain")
                await child.wait_event("component stopped", component="second")
            began = anyio.current_time()
            child.signal(signal.SIGINT)
            with anyio.fail_after(START):
                assert await child.wait_exit() == EXIT_FORCED
        assert anyio.current_time() - began < 5  # far less than the 30 s shutdown budget
        assert "second signal; cancelling everything now" in child.events()
