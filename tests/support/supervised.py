"""A process that runs the supervisor with fake components, for signal tests.

``python -m tests.support.supervised BACKEND [--stubborn]``: the supervisor
owns SIGTERM/SIGINT; with ``--stubborn`` one component ignores
its stop, so that only the end of its shutdown share or a second signal ends it.
"""

from __future__ import annotations

import sys

import anyio

from reco.observability.logs import configure_logging
from reco.supervisor import Supervisor
from tests.support.fakes import FakeComponent

SHUTDOWN_TIMEOUT = 30.0


async def main(stubborn: bool) -> int:
    journal: list[tuple[str, str]] = []
    components = [
        FakeComponent("first", journal, ignore_stop=stubborn),  # stopped last
        FakeComponent("second", journal),
    ]
    supervisor = Supervisor(components, startup_timeout=10, shutdown_timeout=SHUTDOWN_TIMEOUT)
    return await supervisor.run()


if __name__ == "__main__":
    configure_logging("INFO")
    backend = sys.argv[1]
    raise SystemExit(anyio.run(main, "--stubborn" in sys.argv, backend=backend))
