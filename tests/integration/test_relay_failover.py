"""A relay leader whose network to PostgreSQL silently drops loses leadership (finding 9).

Two relays against the embedded PostgreSQL; the leader's every connection
(its lock, its LISTEN and its pool) goes through a TCP proxy of our own,
which then stops forwarding without closing anything: a blackhole. Neither
kernel notices (the proxy ACKs), so TCP keepalives cannot help here; the
leader's lock pings and the lock session's ``idle_session_timeout`` must.
"""

from __future__ import annotations

import socket
from typing import Any

import anyio
import anyio.abc
import attrs
import pytest
from reco_dev.devstack.broker import EmbeddedBroker
from reco_dev.devstack.postgres import EmbeddedPostgres

from reco.db.pool import connect
from reco.observability.logs import get_logger
from reco.observability.readiness import Readiness
from reco.outbox.relay import OutboxRelay
from reco.settings import Settings
from tests.conftest import Topics
from tests.integration.outbox_support import (
    enqueue,
    read_topic,
    relay_settings,
    rows_for,
    running_database,
    unpublished,
    wait_for,
)
from tests.support.components import start
from tests.support.tcp_proxy import TcpProxy

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

log = get_logger("tests.relay_failover")

FAILOVER = 4.0  # > leader retry 0.1 + ping timeout 1 + stop timeout 2 (relay_settings)
MARGIN = 3.0  # scheduling on a shared 2-core machine


@attrs.define
class Transitions:
    """When each relay last changed leadership (polled; anyio clock)."""

    old_stepped_down: float | None = None
    new_led: float | None = None

    async def watch(self, old: OutboxRelay, new: OutboxRelay) -> None:
        while self.old_stepped_down is None or self.new_led is None:
            now = anyio.current_time()
            if self.old_stepped_down is None and not old.leading:
                self.old_stepped_down = now
            if self.new_led is None and new.leading:
                self.new_led = now
            await anyio.sleep(0.01)


async def _true(value: bool) -> bool:
    return value


async def _none_left(settings: Settings) -> bool:
    return await unpublished(settings) == 0


class TestSilentNetworkDrop:
    async def test_standby_leads_within_the_bound_after_a_blackhole(
        self, settings: Settings, postgres: EmbeddedPostgres, broker: EmbeddedBroker,
        topics: Topics,
    ) -> None:  # fmt: skip
        """Blackholed leader: it stops publishing, then the standby leads and publishes."""
        direct = attrs.evolve(relay_settings(settings, broker.bootstrap),
                              relay_failover_timeout=FAILOVER)  # fmt: skip
        async with TcpProxy("127.0.0.1", postgres.port) as proxy:
            proxied = attrs.evolve(
                direct, database_url=direct.database_url.replace(
                    f":{postgres.port}/", f":{proxy.port}/"),
            )  # fmt: skip
            async with (
                running_database(proxied) as far, running_database(direct) as near,
                anyio.create_task_group() as tg,
            ):  # fmt: skip
                old = OutboxRelay(proxied, far, Readiness())
                await start(tg, old)
                await wait_for(lambda: _true(old.leading))
                new = OutboxRelay(direct, near, Readiness())
                await start(tg, new)
                before = rows_for(topics.impressions, ["u1", "u2"], 5, prefix="before")
                await enqueue(direct, before)
                await wait_for(lambda: _none_left(direct))
                assert old.leading
                assert not new.leading

                transitions = Transitions()
                proxy.blackhole()
                began = anyio.current_time()
                tg.start_soon(transitions.watch, old, new)
                after = rows_for(topics.impressions, ["u1", "u2"], 5, prefix="after")
                await enqueue(direct, after)
                await wait_for(lambda: _true(new.leading), deadline=FAILOVER + MARGIN + 5)
                old_batches = old.statistics().batches
                await wait_for(lambda: _none_left(direct))
                assert transitions.old_stepped_down is not None
                assert transitions.new_led is not None
                stepped_down = transitions.old_stepped_down - began
                took_over = transitions.new_led - began
                log.info("relay failover", stepped_down=stepped_down, took_over=took_over)
                print(f"old leader stepped down after {stepped_down:.2f} s; "
                      f"standby led after {took_over:.2f} s (bound {FAILOVER:g} s + retry)")  # fmt: skip
                assert transitions.old_stepped_down < transitions.new_led  # never two leaders
                assert took_over <= FAILOVER + direct.relay_leader_retry + MARGIN
                assert not old.leading
                assert (
                    old.statistics().batches == old_batches
                )  # the old leader published nothing since
                proxy.restore()
                proxy.reset()  # let the old leader's connections go at once
                tg.cancel_scope.cancel()
        messages = await read_topic(broker.bootstrap, topics.impressions, len(before) + len(after))
        assert {r.event_id for r in after} <= {m[1] for m in messages}


class TestKeepalives:
    async def test_every_connection_has_keepalives_at_both_ends(self, settings: Settings) -> None:
        """Server settings and our socket options say a silent peer is dead after 25 s."""
        async with running_database(settings) as db, db.connection() as pooled:
            shown = [await pooled.fetchval(f"SHOW {name}") for name in
                     ("tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count",
                      "tcp_user_timeout")]  # fmt: skip
            sock = _socket(pooled)
            options = [sock.getsockopt(socket.IPPROTO_TCP, option) for option in
                       (socket.TCP_KEEPIDLE, socket.TCP_KEEPINTVL, socket.TCP_KEEPCNT,
                        socket.TCP_USER_TIMEOUT)]  # fmt: skip
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert shown == ["10", "5", "3", "25000"]  # seconds, seconds, probes, ms
        assert options == [10, 5, 3, 25_000]

    async def test_the_lock_connection_ends_when_silent(self, settings: Settings) -> None:
        """The relay's lock session carries idle_session_timeout = relay_failover_timeout."""
        conn = await connect(
            settings, "reco-test", extra_settings={"idle_session_timeout": "15000"}
        )
        try:
            assert await conn.fetchval("SHOW idle_session_timeout") == "15s"
            assert _socket(conn).getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        finally:
            await conn.close()


def _socket(conn: Any) -> socket.socket:
    sock: socket.socket = conn._transport.get_extra_info("socket")
    return sock
