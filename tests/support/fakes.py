"""Fake components for supervisor tests: they journal what happens to them.

Each can fail to start, hang in start-up, crash on demand or ignore
``stop_nowait``; the test drives them through plain method calls.
"""

from __future__ import annotations

import anyio
import anyio.abc


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

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        self.journal.append(("start", self.name))
        try:
            if self.fail_start is not None:
                raise self.fail_start
            if self.hang_start:
                await anyio.sleep_forever()
            task_status.started()
            await self._serve()
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

    def stop_nowait(self) -> None:
        self.journal.append(("stop requested", self.name))
        self.stop_requested = True
        self._wake.set()

    def crash(self) -> None:
        self.crash_requested = True
        self._wake.set()
