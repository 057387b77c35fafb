"""The HTTP component on a real loopback socket: ready, drain, cancel."""

from __future__ import annotations

import anyio
import httpx
import pytest
from quart import Quart

from reco.api.app import create_app
from reco.api.server import ABORT_GRACE, HttpServer
from reco.api.state import AppState
from reco.observability.readiness import Readiness
from reco.settings import Settings
from tests.support.components import start

pytestmark = pytest.mark.anyio

BOUND = 5.0


def make_app(release: anyio.Event, entered: anyio.Event) -> Quart:
    app = create_app(AppState(Settings(), Readiness()))

    @app.get("/slow")
    async def slow() -> str:
        entered.set()
        await release.wait()
        return "done"

    return app


class TestHttpServer:
    async def test_stop_finishes_in_flight_requests(self) -> None:
        """A stop stops accepting; a request already in flight still gets its answer."""
        release, entered = anyio.Event(), anyio.Event()
        server = HttpServer(make_app(release, entered), "127.0.0.1:0")
        answers: list[httpx.Response] = []
        with anyio.fail_after(BOUND):
            async with httpx.AsyncClient() as client, anyio.create_task_group() as tg:
                stop = await start(tg, server)
                base = f"http://127.0.0.1:{server.port}"

                async def call() -> None:
                    answers.append(await client.get(f"{base}/slow"))

                tg.start_soon(call)
                await entered.wait()
                stop.request(BOUND)
                release.set()
        assert [a.text for a in answers] == ["done"]
        with pytest.raises(httpx.ConnectError):
            async with httpx.AsyncClient() as client:
                await client.get(f"{base}/healthz")

    async def test_cancellation_stops_at_once(self) -> None:
        """Cancelled with a request in flight, run() exits within a bound and the port closes."""
        release, entered = anyio.Event(), anyio.Event()
        server = HttpServer(make_app(release, entered), "127.0.0.1:0")
        outcomes: list[int | str] = []
        with anyio.fail_after(BOUND):
            async with httpx.AsyncClient() as client, anyio.create_task_group() as outer:
                async with anyio.create_task_group() as inner:
                    await start(inner, server)

                    async def call() -> None:
                        try:
                            answer = await client.get(f"http://127.0.0.1:{server.port}/slow")
                        except httpx.HTTPError as exc:
                            outcomes.append(type(exc).__name__)
                        else:
                            outcomes.append(answer.status_code)

                    outer.start_soon(call)
                    await entered.wait()
                    began = anyio.current_time()
                    inner.cancel_scope.cancel()
                assert anyio.current_time() - began < ABORT_GRACE + 0.5
        # Hypercorn answers a cancelled request with a bare 500 and closes (or just closes).
        assert outcomes in ([500], ["RemoteProtocolError"], ["ReadError"])
        with pytest.raises(OSError, match="connection attempts failed"):
            await anyio.connect_tcp("127.0.0.1", server.port or 0)
