"""Run a child process and read its JSON log lines, waiting on them with deadlines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import attrs
from anyio.streams.buffered import BufferedByteReceiveStream

Line = dict[str, Any]
MAX_LINE = 1 << 20


@attrs.define
class Child:
    """A running child process and every log line it printed so far."""

    process: anyio.abc.Process
    _reader: BufferedByteReceiveStream
    lines: list[Line] = attrs.field(factory=list)

    async def wait_for(self, predicate: Callable[[Line], bool]) -> Line:
        """The first line (already read or yet to come) matching ``predicate``."""
        for line in self.lines:
            if predicate(line):
                return line
        try:
            while True:
                line = await self._read_line()
                if predicate(line):
                    return line
        except (anyio.EndOfStream, anyio.IncompleteRead):
            tail = "\n".join(json.dumps(line) for line in self.lines[-40:])
            raise AssertionError(
                f"the process ended its output first; it printed:\n{tail}"
            ) from None

    async def wait_event(self, event: str, **fields: Any) -> Line:
        return await self.wait_for(
            lambda line: (
                line.get("event") == event and all(line.get(k) == v for k, v in fields.items())
            )
        )

    async def _read_line(self) -> Line:
        raw = await self._reader.receive_until(b"\n", MAX_LINE)
        try:
            line = json.loads(raw)
        except ValueError:
            line = {"event": raw.decode(errors="replace"), "not_json": True}
        if not isinstance(line, dict):
            line = {"event": str(line), "not_json": True}
        self.lines.append(line)
        return line

    def signal(self, signum: signal.Signals = signal.SIGTERM) -> None:
        self.process.send_signal(signum)

    async def wait_exit(self) -> int:
        """Read the rest of the output, then the exit status (caller sets the deadline)."""
        try:
            while True:
                await self._read_line()
        except (anyio.EndOfStream, anyio.IncompleteRead, anyio.ClosedResourceError):
            pass
        return await self.process.wait()

    def events(self) -> list[str]:
        return [str(line.get("event")) for line in self.lines]


@asynccontextmanager
async def spawn(args: Sequence[str], env: Mapping[str, str]) -> AsyncIterator[Child]:
    """Start ``python args...`` with ``env``; kill it on the way out if still running."""
    process = await anyio.open_process(
        [sys.executable, *args], env={**os.environ, **env},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    assert process.stdout is not None
    child = Child(process, BufferedByteReceiveStream(process.stdout))
    try:
        yield child
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(10):
            if process.returncode is None:
                process.kill()
            await process.aclose()
