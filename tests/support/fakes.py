"""Fake components for supervisor tests: they journal what happens to them.

Each can fail to start, hang in start-up, crash on demand or ignore its
stop (:class:`~reco.lifecycle.Stop`); the test drives them through plain method calls.
"""

from __future__ import annotations

import anyio
import anyio.abc

from reco.lifecycle import Stop


class FakeComponent:
    """A component whose behaviour the test chooses, recording every transition."""

    def __init__(
        self, name: str, journal: list[tuple[str, str]], *,
        fail_start: Exception | None = None, hang_start: bool = False, ignore_stop: bool = False,
    ) -> None:  # fmt: skip
        self.name = name
        self.journal = journal
        self.fail_start = fail_start
        self.hang_start = hang_start
        self.ignore_stop = ignore_stop
        self.stop_requested = False
        self.crash_requested = False
        self._wake = anyio.Event()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None], stop: Stop) -> None:
        self.journal.append(("start", self.name))
        self.stop = stop
        try:
            if self.fail_start is not None:
                raise self.fail_start
            if self.hang_start:
                await anyio.sleep_forever()
            task_status.started()
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._on_stop, stop)
                await self._serve()
                tg.cancel_scope.cancel()
        except anyio.get_cancelled_exc_class():
            self.journal.append(("cancelled", self.name))
            raise
        self.journal.append(("stopped", self.name))

    async def _serve(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            if self.crash_requested:
                self.journal.append(("crashed", self.name))
                raise RuntimeError(f"{self.name} broke")
            if self.stop_requested and not self.ignore_stop:
                return

    async def _on_stop(self, stop: Stop) -> None:
        await stop.wait()
        self.journal.append(("stop requested", self.name))
        self.stop_requested = True
        self._wake.set()

    def crash(self) -> None:
        self.crash_requested = True
        self._wake.set()
