"""``python -m bench._bare_serve PORT``: the ceiling for reco's ``/healthz``.

A bare Quart app with one JSON route (``GET /healthz``), served by Hypercorn
on uvloop with the same Hypercorn configuration as reco's HTTP component (no
access log, the same keep-alive and backlog): what the framework costs with
none of reco's middleware (ids, access log, metrics).
"""

from __future__ import annotations

import asyncio
import sys

import uvloop
from hypercorn.asyncio import serve
from hypercorn.config import Config
from quart import Quart


def make_app() -> Quart:
    app = Quart("bare")

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app


def main(port: int) -> None:
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.accesslog = None
    config.errorlog = None
    config.backlog = 1024
    config.keep_alive_timeout = 5.0
    uvloop.install()
    asyncio.run(serve(make_app(), config))  # type: ignore[arg-type]


if __name__ == "__main__":
    main(int(sys.argv[1]))
