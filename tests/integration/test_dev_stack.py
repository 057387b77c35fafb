"""`reco dev`: the embedded stack, the service on it, and a clean stop (a subprocess)."""

from __future__ import annotations

import signal
import tempfile
from pathlib import Path

import anyio
import httpx
import pytest

from reco.devstack.ports import free_port
from reco.devstack.postgres import children_of
from tests.support.process import spawn
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

START = 90.0  # initdb + two servers + migrations, on a busy 2-core machine
STOP = 30.0


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class TestDev:
    async def test_serves_ready_and_stops_leaving_no_process(self) -> None:
        """dev starts PostgreSQL and the broker, creates topics, serves /readyz 200; SIGTERM
        exits 0 and no child process survives."""
        # Not tmp_path: a concurrent pytest resets /tmp/pytest-of-<user> to 0700, which
        # locks out the unprivileged user PostgreSQL runs as (when we are root).
        with tempfile.TemporaryDirectory(prefix="reco-dev-test-") as tmp:
            await self.run_dev(Path(tmp) / "data")

    async def run_dev(self, data_dir: Path) -> None:
        port = free_port()
        env = {"RECO_HTTP_BIND": f"127.0.0.1:{port}", "RECO_SHUTDOWN_TIMEOUT": "10"}
        async with spawn(["-m", "reco", "dev", "--data-dir", str(data_dir)], env) as child:
            with anyio.fail_after(START):
                stack = await child.wait_event("embedded stack up")
                await child.wait_event("topics ready")
                await child.wait_event("started")
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                response = await client.get("/readyz")
            assert response.status_code == 200, response.text
            pids = [int(stack["postgres_pid"]), int(stack["broker_pid"])]
            pids += children_of(pids[0])  # the PostgreSQL backends
            assert all(alive(pid) for pid in pids[:2])
            child.signal(signal.SIGTERM)
            with anyio.fail_after(STOP):
                status = await child.wait_exit()
        assert status == 0
        assert [pid for pid in pids if alive(pid)] == []
        assert children_of(child.process.pid) == []
        assert (data_dir / "postgres" / "pgdata" / "PG_VERSION").exists()
        assert stack["database_url"].startswith("postgresql://")
        assert stack["kafka_bootstrap"].startswith("127.0.0.1:")

    async def test_sigterm_during_start_up_leaves_no_process(self) -> None:
        """SIGTERM while the embedded servers are starting still stops them all (exit 130)."""
        with tempfile.TemporaryDirectory(prefix="reco-dev-test-") as tmp:
            args = ["-m", "reco", "dev", "--data-dir", str(Path(tmp) / "data")]
            async with spawn(args, {"RECO_HTTP_BIND": f"127.0.0.1:{free_port()}"}) as child:
                pid = child.process.pid
                await wait_until(lambda: bool(children_of(pid)), deadline=START)
                started = children_of(pid)
                child.signal(signal.SIGTERM)
                with anyio.fail_after(STOP):
                    status = await child.wait_exit()
        assert status == 130
        assert [p for p in started if alive(p)] == []
