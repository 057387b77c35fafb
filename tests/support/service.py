"""Run the whole service in-process for a test, on port 0, without signal handlers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import attrs

from reco import service
from reco.api.server import HttpServer
from reco.api.state import AppState
from reco.settings import Settings
from reco.supervisor import Supervisor

START_DEADLINE = 30.0


@attrs.define
class RunningService:
    supervisor: Supervisor
    state: AppState
    http: HttpServer
    exit_status: int | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.http.port}"


@asynccontextmanager
async def running_service(settings: Settings) -> AsyncIterator[RunningService]:
    """Start the service; on exit, stop it the way SIGTERM would and wait.

    A failed start-up raises (the supervisor's StartupError, in a group).
    """
    supervisor, state, http = service.build(settings, handle_signals=False)
    running = RunningService(supervisor, state, http)

    async def _run() -> None:
        running.exit_status = await supervisor.run()

    async with anyio.create_task_group() as tg:
        tg.start_soon(_run)
        with anyio.fail_after(START_DEADLINE):
            await supervisor.wait_started()
        try:
            yield running
        finally:
            supervisor.request_stop()
