"""`reco dev`: the embedded stack, the service on it, and a clean stop (a subprocess)."""

from __future__ import annotations

import datetime as dt
import json
import signal
import tempfile
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from reco_dev.devstack.ports import free_port
from reco_dev.devstack.postgres import children_of

from tests.support.process import Child, spawn
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


FIRST_RECOMMENDATIONS = 60.0  # the promise: from the command to an explained list


def banner_token(child: Child) -> str:
    """The development token from the banner (a plain-text line, not a log line)."""
    for line in child.lines:
        text = str(line.get("event", "")) if line.get("not_json") else ""
        if "development API token" in text:
            return text.rsplit(": ", 1)[1].strip()
    raise AssertionError("no development token in the banner")


async def recommendations(client: httpx.AsyncClient, user: str) -> list[dict[str, Any]]:
    response = await client.get(f"/v1/users/{user}/recommendations", params={"limit": 10})
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


class TestDemo:
    async def test_demo_serves_explained_recommendations_within_a_minute(self) -> None:
        """`reco dev --demo` seeds an empty database, prints a token, and within 60 s
        serves a demo user non-empty lists with reasons; a posted watch changes the list."""
        with tempfile.TemporaryDirectory(prefix="reco-dev-test-") as tmp:
            port = free_port()
            env = {"RECO_HTTP_BIND": f"127.0.0.1:{port}", "RECO_API_TOKENS": "",
                   "RECO_SHUTDOWN_TIMEOUT": "10", "RECO_LOG_FORMAT": "auto"}  # fmt: skip
            args = ["-m", "reco", "dev", "--demo", "--data-dir", str(Path(tmp) / "data")]
            began = anyio.current_time()
            async with spawn(args, env) as child:
                with anyio.fail_after(FIRST_RECOMMENDATIONS):
                    seeded = await child.wait_event("demo data")
                    await child.wait_event("started")
                assert seeded["seeded"] is True
                user = seeded["example_user"]
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                    before = await recommendations(client, user)
                    took = anyio.current_time() - began
                    assert took < FIRST_RECOMMENDATIONS
                    assert before, "an empty list for a demo user"
                    assert {i["reason"]["type"] for i in before} >= {"because_you_watched"}
                    similar = await client.get(f"/v1/items/{seeded['example_item']}/similar")
                    assert similar.json()["items"]
                    await self.watch_and_see_the_change(client, child, seeded, before)
                child.signal(signal.SIGTERM)
                with anyio.fail_after(STOP):
                    assert await child.wait_exit() == 0
        lines = [line for line in child.lines if not line.get("not_json")]
        assert all(banner_token(child) not in json.dumps(line) for line in lines)

    async def watch_and_see_the_change(
        self, client: httpx.AsyncClient, child: Child, seeded: dict[str, Any],
        before: list[dict[str, Any]],
    ) -> None:  # fmt: skip
        user, item = seeded["example_user"], seeded["example_watch"]
        event = {"event_id": f"demo-test-{item}", "user_id": user, "item_id": item,
                 "occurred_at": dt.datetime.now(dt.UTC).isoformat()}  # fmt: skip
        headers = {"Authorization": f"Bearer {banner_token(child)}"}
        response = await client.post("/v1/events", json={"events": [event]}, headers=headers)
        assert response.status_code == 202, response.text
        changed = before  # the item is new to the user: no reason names it yet
        with anyio.fail_after(30):  # relay -> topic -> consumer -> fold, each a fraction of 1 s
            while not any(i["reason"].get("item_id") == item for i in changed):
                await anyio.sleep(0.2)
                changed = await recommendations(client, user)
        assert item not in {i["item_id"] for i in changed}
        assert any(i["reason"].get("item_id") == item for i in changed)
