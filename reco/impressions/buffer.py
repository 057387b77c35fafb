"""The bounded impression buffer between request handlers and the writer.

An anyio memory object stream of capacity ``RECO_MAX_BACKGROUND_TASKS``. In
``sync`` mode a handler waits up to ``background_put_timeout`` for room, then
raises :class:`BufferFull` (the API answers 503); in ``drop`` mode it never waits and a full buffer drops the
impression (counted in ``reco_background_dropped_total``). Either way the
response never waits for the database.
"""

from __future__ import annotations

import contextlib

import anyio
import attrs
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from reco.errors import RecoError
from reco.impressions.model import Impression
from reco.observability import metrics
from reco.observability.logs import get_logger
from reco.settings import BackgroundMode, Settings

log = get_logger("reco.impressions")


class BufferFull(RecoError):
    """``sync`` mode: no room for the impression within ``background_put_timeout`` (or the
    buffer is closed for shutdown). The API answers 503 with ``Retry-After``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@attrs.frozen
class BufferStatistics:
    """A snapshot of the buffer, read by the gauges and the tests."""

    depth: int
    capacity: int
    dropped: int
    closed: bool


class ImpressionBuffer:
    """Implements :class:`~reco.impressions.model.ImpressionSink`."""

    def __init__(self, settings: Settings) -> None:
        self.mode = settings.background_mode
        self.put_timeout = settings.background_put_timeout
        self.capacity = settings.max_background_tasks
        send, receive = anyio.create_memory_object_stream[Impression](self.capacity)
        self._send: MemoryObjectSendStream[Impression] = send
        self.receive: MemoryObjectReceiveStream[Impression] = receive
        self._dropped = 0
        self._closed = False
        metrics.background_queue_capacity.set({}, self.capacity)

    async def submit(self, impression: Impression) -> None:
        try:
            if self.mode is BackgroundMode.DROP:
                self._send.send_nowait(impression)
            else:
                await self._send_bounded(impression)
        except (anyio.WouldBlock, anyio.ClosedResourceError, anyio.BrokenResourceError):
            reason = "shutting down" if self._closed else "buffer full"
            self.count_dropped(1, reason)
            metrics.background_queue_depth.set({}, self.statistics().depth)
            if self.mode is BackgroundMode.SYNC:
                raise BufferFull(reason) from None
        # On success the depth gauge is left to the writer, which sets it once per
        # batch: a statistics snapshot per served list cost more than the submit.

    async def _send_bounded(self, impression: Impression) -> None:
        with contextlib.suppress(anyio.WouldBlock):
            return self._send.send_nowait(impression)
        with anyio.move_on_after(self.put_timeout):
            await self._send.send(impression)
            return
        raise anyio.WouldBlock

    def count_dropped(self, n: int, reason: str) -> None:
        if n <= 0:
            return
        self._dropped += n
        metrics.background_dropped.add({"reason": reason}, n)

    def close(self) -> None:
        """No more impressions: the writer drains what is left and stops."""
        self._closed = True
        self._send.close()

    def statistics(self) -> BufferStatistics:
        stats = self.receive.statistics()
        return BufferStatistics(
            depth=stats.current_buffer_used, capacity=self.capacity,
            dropped=self._dropped, closed=stats.open_send_streams == 0,
        )  # fmt: skip
