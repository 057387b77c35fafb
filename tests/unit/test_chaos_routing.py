"""The chaos suite's routing proxy (tests/chaos/routing.py): faults for one process's links."""

from __future__ import annotations

import os

import anyio
import pytest
from reco_dev.devstack.ports import free_port

from tests.chaos.routing import RoutingProxy
from tests.unit.test_tcp_proxy import EchoServer, roundtrip

pytestmark = pytest.mark.anyio

BOUND = 5.0


class TestRoutingProxy:
    async def test_a_fault_for_one_process_reaches_its_links_only(self) -> None:
        """Our own connections are ours (by /proc inode); a blackhole for another name
        forwards on, one for ours holds, and heal delivers what was held."""
        server = EchoServer()
        with anyio.fail_after(BOUND):
            async with anyio.create_task_group() as tg:
                await tg.start(server.run)
                proxy = RoutingProxy("127.0.0.1", server.port, port=free_port(),
                                     processes=lambda: {os.getpid(): "me"})  # fmt: skip
                async with proxy, await anyio.connect_tcp("127.0.0.1", proxy.port) as client:
                    assert await roundtrip(client, b"one") == b"one"
                    assert len(proxy.links_of("me")) == 1
                    proxy.blackhole_for("someone-else")
                    assert await roundtrip(client, b"two") == b"two"
                    proxy.blackhole_for("me")
                    await client.send(b"held")
                    with anyio.move_on_after(0.2) as waited:
                        await client.receive()
                    assert waited.cancelled_caught
                    proxy.heal("me")
                    assert await client.receive() == b"held"
                tg.cancel_scope.cancel()
