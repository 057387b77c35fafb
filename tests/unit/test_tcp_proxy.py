"""The fault-injection TCP proxy (tests/support/tcp_proxy.py) against a loopback echo server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import pytest
from anyio.abc import SocketAttribute

from tests.support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.anyio

BOUND = 5.0


class EchoServer:
    """Echoes every chunk; remembers whether a client's end-of-stream reached it."""

    def __init__(self) -> None:
        self.port = 0
        self.saw_eof = anyio.Event()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        self.port = listener.extra(SocketAttribute.local_port)
        async with listener:
            task_status.started()
            await listener.serve(self._echo)

    async def _echo(self, stream: anyio.abc.SocketStream) -> None:
        async with stream:
            try:
                async for chunk in stream:
                    await stream.send(chunk)
            except anyio.BrokenResourceError:
                pass
            self.saw_eof.set()


@asynccontextmanager
async def proxied_echo() -> AsyncIterator[tuple[EchoServer, TcpProxy]]:
    server = EchoServer()
    async with anyio.create_task_group() as tg:
        await tg.start(server.run)
        async with TcpProxy("127.0.0.1", server.port) as proxy:
            yield server, proxy
        tg.cancel_scope.cancel()


async def roundtrip(client: anyio.abc.SocketStream, data: bytes) -> bytes:
    await client.send(data)
    return await client.receive()


class TestTcpProxy:
    async def test_forwards_both_ways(self) -> None:
        """Bytes sent through the proxy reach the target and its answer comes back."""
        with anyio.fail_after(BOUND):
            async with (
                proxied_echo() as (_, proxy),
                await anyio.connect_tcp("127.0.0.1", proxy.port) as client,
            ):
                assert await roundtrip(client, b"ping") == b"ping"
                assert len(proxy.links) == 1

    async def test_blackhole_holds_until_restored(self) -> None:
        """A blackhole forwards nothing and closes nothing; restore delivers what was held."""
        with anyio.fail_after(BOUND):
            async with (
                proxied_echo() as (_, proxy),
                await anyio.connect_tcp("127.0.0.1", proxy.port) as client,
            ):
                assert await roundtrip(client, b"a") == b"a"
                proxy.blackhole()
                await client.send(b"b")
                with anyio.move_on_after(0.3) as waited:
                    await client.receive()
                assert waited.cancelled_caught
                proxy.restore()
                assert await client.receive() == b"b"

    async def test_blackhole_hides_the_clients_close(self) -> None:
        """While blackholed, the target never learns that the client went away."""
        with anyio.fail_after(BOUND):
            async with proxied_echo() as (server, proxy):
                client = await anyio.connect_tcp("127.0.0.1", proxy.port)
                assert await roundtrip(client, b"a") == b"a"
                proxy.blackhole()
                await client.aclose()
                with anyio.move_on_after(0.3) as waited:
                    await server.saw_eof.wait()
                assert waited.cancelled_caught
                proxy.restore()
                await server.saw_eof.wait()

    async def test_new_connections_hang_while_blackholed(self) -> None:
        """Connecting succeeds but nothing answers; the target is not even contacted."""
        with anyio.fail_after(BOUND):
            async with TcpProxy("127.0.0.1", 1) as proxy:  # port 1: nothing listens
                proxy.blackhole()
                async with await anyio.connect_tcp("127.0.0.1", proxy.port) as client:
                    await client.send(b"hello")
                    with anyio.move_on_after(0.3) as waited:
                        await client.receive()
                    assert waited.cancelled_caught

    async def test_reset_aborts_the_client(self) -> None:
        """reset() aborts the connection: the client's next read fails."""
        with anyio.fail_after(BOUND):
            async with (
                proxied_echo() as (_, proxy),
                await anyio.connect_tcp("127.0.0.1", proxy.port) as client,
            ):
                assert await roundtrip(client, b"a") == b"a"
                proxy.reset()
                with pytest.raises((anyio.BrokenResourceError, anyio.EndOfStream)):
                    await client.receive()

    async def test_half_open_closes_towards_the_target_only(self) -> None:
        """The target sees the end of the connection; the client sees silence."""
        with anyio.fail_after(BOUND):
            async with (
                proxied_echo() as (server, proxy),
                await anyio.connect_tcp("127.0.0.1", proxy.port) as client,
            ):
                assert await roundtrip(client, b"a") == b"a"
                proxy.half_open()
                await server.saw_eof.wait()
                await client.send(b"b")
                with anyio.move_on_after(0.3) as waited:
                    await client.receive()
                assert waited.cancelled_caught

    async def test_latency_delays_each_chunk(self) -> None:
        """With latency set, a round trip takes at least twice the latency."""
        with anyio.fail_after(BOUND):
            async with (
                proxied_echo() as (_, proxy),
                await anyio.connect_tcp("127.0.0.1", proxy.port) as client,
            ):
                proxy.set_latency(0.1)
                began = anyio.current_time()
                assert await roundtrip(client, b"a") == b"a"
                assert anyio.current_time() - began >= 0.2
