"""The HTTP component: Hypercorn serving the Quart app inside the root task group.

We bind the listening sockets ourselves so that the port is known (bind to
port 0 in tests) and connections queue from the moment we report ready.
Hypercorn gets a ``shutdown_trigger``, so it installs no signal handlers: the
supervisor owns the signals. On stop (reco/lifecycle.py) it stops accepting
and lets in-flight requests finish within the work part of its share
(``graceful_timeout``); cancelled, it stops at once.
"""

from __future__ import annotations

import anyio
import anyio.abc
from hypercorn.asyncio.run import worker_serve
from hypercorn.config import Config, Sockets
from hypercorn.utils import wrap_app
from quart import Quart

from reco.lifecycle import Stop
from reco.observability.logs import get_logger

log = get_logger("reco.api.server")

ABORT_GRACE = 1.0  # seconds Hypercorn gets to close its connections once cancelled


class HttpServer:
    name = "http"

    def __init__(self, app: Quart, bind: str, *, keep_alive_timeout: float = 5.0) -> None:
        self.app = app
        self.config = Config()
        self.config.bind = [bind]
        self.config.keep_alive_timeout = keep_alive_timeout
        self.config.accesslog = None
        self.config.errorlog = None  # our JSON logs cover it
        self.config.backlog = 1024
        self._stop = anyio.Event()
        self.port: int | None = None

    async def run(self, *, task_status: anyio.abc.TaskStatus[None], stop: Stop) -> None:
        sockets: Sockets = self.config.create_sockets()
        for sock in sockets.insecure_sockets:
            sock.listen(self.config.backlog)
        self.port = int(sockets.insecure_sockets[0].getsockname()[1])
        ready, done = anyio.Event(), anyio.Event()
        shield = anyio.CancelScope(shield=True)

        @self.app.before_serving
        async def _ready() -> None:
            ready.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(self._serve, sockets, shield, done)
            try:
                await ready.wait()
                host = sockets.insecure_sockets[0].getsockname()[0]
                log.info("http listening", address=f"http://{host}:{self.port}")
                task_status.started()
                tg.start_soon(self._on_stop, stop)
                await done.wait()
                tg.cancel_scope.cancel()  # _on_stop
            except anyio.get_cancelled_exc_class():
                self._abort(shield)
                raise

    def _abort(self, shield: anyio.CancelScope) -> None:
        """Cancelled: stop now, without waiting for in-flight requests.

        Hypercorn is never cancelled from outside (pgjones/hypercorn#184: a
        cancelled ``worker_serve`` raises InvalidStateError from its clean-up
        and leaves its tasks behind); it is told to stop with no grace instead,
        with a short backstop deadline.
        """
        self.config.graceful_timeout = 0.0
        shield.deadline = anyio.current_time() + ABORT_GRACE
        self._stop.set()

    async def _serve(self, sockets: Sockets, shield: anyio.CancelScope, done: anyio.Event) -> None:
        try:
            with shield:
                await worker_serve(
                    wrap_app(self.app, self.config.wsgi_max_body_size, "asgi"), self.config,
                    sockets=sockets, shutdown_trigger=self._stop.wait,
                )  # fmt: skip
        finally:
            for sock in sockets.insecure_sockets:
                sock.close()
            done.set()

    async def _on_stop(self, stop: Stop) -> None:
        """Stop accepting; in-flight requests get the work part of the share."""
        await stop.wait()
        self.config.graceful_timeout = max(0.0, stop.work_deadline - anyio.current_time())
        self._stop.set()
