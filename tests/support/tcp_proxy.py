"""A small TCP proxy for fault injection: latency, blackhole, reset, half-open.

``TcpProxy`` listens on a loopback port and forwards every connection to a
target. Faults are switched on and off while it runs, for every connection
(the proxy's methods, which also apply to connections accepted later) or for
one (the :class:`Link` in ``proxy.links``):

- ``latency``: each chunk waits this long before it is forwarded (one chunk
  at a time per direction: it models a slow link, not bandwidth);
- ``blackhole()``: stop forwarding without closing anything, as a silently
  dropped network does; ``restore()`` delivers what was held and resumes.
  Both peers' kernels still ACK every segment (the proxy is in userspace), so
  TCP keepalives on either side cannot see this blackhole: only an
  application-level timeout can;
- ``reset()``: abort both sockets with an RST;
- ``half_open()``: close the side towards the target (the server sees the
  client leave) and keep the client's side open and silent.

A blackholed proxy also accepts new connections without connecting them to
the target until restored: a client's connect succeeds, then nothing answers.

Usage::

    async with TcpProxy("127.0.0.1", postgres.port) as proxy:
        url = f"postgresql://postgres@127.0.0.1:{proxy.port}/db"
        ...
        proxy.blackhole()
"""

from __future__ import annotations

import contextlib
import socket
import struct
from types import TracebackType
from typing import Self

import anyio
import anyio.abc
from anyio.abc import SocketAttribute

CHUNK = 65536


class Link:
    """One proxied connection: a client socket and, once connected, its upstream."""

    def __init__(self, client: anyio.abc.SocketStream, *, latency: float, blackholed: bool) -> None:
        self.client = client
        self.upstream: anyio.abc.SocketStream | None = None
        self.latency = latency
        self.closed = False
        self._flowing = anyio.Event()
        if not blackholed:
            self._flowing.set()
        self._scope = anyio.CancelScope()

    @property
    def blackholed(self) -> bool:
        return not self._flowing.is_set()

    def blackhole(self) -> None:
        if self._flowing.is_set():
            self._flowing = anyio.Event()

    def restore(self) -> None:
        self._flowing.set()

    def reset(self) -> None:
        """Abort both sides with an RST (SO_LINGER 0, then close)."""
        for stream in (self.client, self.upstream):
            if stream is not None:
                _linger_zero(stream)
        self.close()

    def half_open(self) -> None:
        """The target sees the connection end; the client's side stays open, silent."""
        self.blackhole()
        if self.upstream is not None:
            _shutdown(self.upstream)

    def close(self) -> None:
        self._scope.cancel()

    async def serve(self, target: tuple[str, int]) -> None:
        """Forward both ways until either end leaves (once restored) or :meth:`close`."""
        try:
            with self._scope:
                await self._flowing.wait()
                self.upstream = await anyio.connect_tcp(*target)
                async with anyio.create_task_group() as tg:
                    tg.start_soon(self._pump, self.client, self.upstream)
                    tg.start_soon(self._pump, self.upstream, self.client)
        except OSError:
            pass  # the target refused or went away: close the client too
        finally:
            self.closed = True
            with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                for stream in (self.client, self.upstream):
                    if stream is not None:
                        await stream.aclose()

    async def _pump(self, source: anyio.abc.SocketStream, sink: anyio.abc.SocketStream) -> None:
        """Forward ``source`` to ``sink``; a blackhole holds data, FIN and RST alike."""
        while True:
            try:
                data = await source.receive(CHUNK)
            except anyio.EndOfStream:
                data = b""
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                await self._flowing.wait()
                self.close()
                return
            if self.latency:
                await anyio.sleep(self.latency)
            await self._flowing.wait()
            try:
                if not data:
                    await sink.send_eof()
                    return
                await sink.send(data)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self.close()
                return


class TcpProxy:
    """Forward ``listen_host:port`` (port 0: a free one) to ``target_host:target_port``."""

    def __init__(
        self, target_host: str, target_port: int, *, listen_host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.target = (target_host, target_port)
        self.listen_host = listen_host
        self.port = port
        self.links: list[Link] = []
        self.latency = 0.0
        self._blackholed = False
        self._tg: anyio.abc.TaskGroup | None = None

    # --- start / stop ------------------------------------------------------------
    async def __aenter__(self) -> Self:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        await self._tg.start(self.run)
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        assert self._tg is not None
        self.stop_nowait()
        return await self._tg.__aexit__(et, e, tb)

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Accept and forward until cancelled (``stop_nowait`` or the caller's scope)."""
        listener = await anyio.create_tcp_listener(
            local_host=self.listen_host, local_port=self.port
        )
        self.port = listener.extra(SocketAttribute.local_port)
        async with listener, anyio.create_task_group() as tg:
            task_status.started()
            await listener.serve(self._accept, task_group=tg)

    def stop_nowait(self) -> None:
        """Close the listener and every connection (abruptly, as a dying proxy would)."""
        for link in self.links:
            link.close()
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    async def _accept(self, client: anyio.abc.SocketStream) -> None:
        link = Link(client, latency=self.latency, blackholed=self._blackholed)
        self.links.append(link)
        try:
            await link.serve(self.target)
        finally:
            self.links.remove(link)

    # --- faults, for every connection (and those accepted later) -----------------
    def set_latency(self, seconds: float) -> None:
        self.latency = seconds
        for link in self.links:
            link.latency = seconds

    def blackhole(self) -> None:
        self._blackholed = True
        for link in self.links:
            link.blackhole()

    def restore(self) -> None:
        self._blackholed = False
        for link in self.links:
            link.restore()

    def reset(self) -> None:
        for link in list(self.links):
            link.reset()

    def half_open(self) -> None:
        self._blackholed = True
        for link in list(self.links):
            link.half_open()


def _linger_zero(stream: anyio.abc.SocketStream) -> None:
    sock = stream.extra(SocketAttribute.raw_socket)
    with contextlib.suppress(OSError):  # already closed
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def _shutdown(stream: anyio.abc.SocketStream) -> None:
    """Send a FIN at once (both directions shut), without awaiting; closed later."""
    sock = stream.extra(SocketAttribute.raw_socket)
    with contextlib.suppress(OSError):  # not connected any more
        sock.shutdown(socket.SHUT_RDWR)
