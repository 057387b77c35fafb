"""The faults, one scenario each: inject, hold, heal. Each is bounded and ends healed.

A scenario's ``act`` runs while the workload runs; it records what the checks
need to know (SIGKILLs for the impression loss window, a drain window for the
5xx count) and its own figures and violations (failover time, exit status).
Tansu keeps nothing across a restart (memory storage), so the broker is never
restarted here: "broker down" is a hang (SIGSTOP) or a cut through the proxy.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Awaitable, Callable

import anyio
import attrs

from tests.chaos.cluster import FAILOVER_TIMEOUT, LEADER_RETRY, SHUTDOWN_TIMEOUT, Cluster, Instance
from tests.chaos.invariants import Kill

FAILOVER_MARGIN = 3.0  # scheduling on a shared 2-core machine


@attrs.define
class Context:
    hold: float
    kills: list[Kill] = attrs.field(factory=list)
    drain: tuple[str, float, float] | None = None  # instance, SIGTERM at, exited at (wall clock)
    figures: list[str] = attrs.field(factory=list)
    violations: list[str] = attrs.field(factory=list)


Act = Callable[[Cluster, Context], Awaitable[None]]


@attrs.frozen
class Scenario:
    name: str
    fault: str
    act: Act
    hold: float  # seconds the fault lasts in the short profile


async def leader(system: Cluster) -> Instance:
    """The instance leading the relay now (waits briefly for one)."""
    leaders: list[Instance] = []
    with anyio.move_on_after(15):
        while len(leaders) != 1:
            leaders = await system.leaders()
            await anyio.sleep(0.1)
    if len(leaders) != 1:
        raise RuntimeError(f"{len(leaders)} relay leaders, not one, for 15 s before the fault")
    return leaders[0]


async def other_than(system: Cluster, instance: Instance) -> Instance:
    return next(i for i in system.instances if i is not instance)


async def instance_sigkill(system: Cluster, ctx: Context) -> None:
    victim = await leader(system)  # mid-ingest, mid-relay batch, mid-fold
    victim.signal(signal.SIGKILL)
    ctx.kills.append(Kill(victim.name, time.time()))
    await victim.wait_exit(5)
    await anyio.sleep(ctx.hold)
    took = await system.start_instance(victim)
    ctx.figures.append(f"{victim.name} killed, ready {took:.1f} s after restart")


async def postgres_sigstop(system: Cluster, ctx: Context) -> None:
    system.postgres.pause()  # the postmaster and every backend
    try:
        await anyio.sleep(ctx.hold)
    finally:
        system.postgres.resume()
    ctx.figures.append(f"frozen {ctx.hold:g} s (statement timeout 5 s, lock timeout 2 s)")


async def postgres_sigkill(system: Cluster, ctx: Context) -> None:
    await system.kill_postgres()
    began = time.monotonic()
    await anyio.sleep(ctx.hold)
    await system.start_postgres()
    ctx.figures.append(f"down {time.monotonic() - began:.1f} s, restarted on its data directory")


async def broker_sigstop(system: Cluster, ctx: Context) -> None:
    os.kill(system.broker.pid, signal.SIGSTOP)
    try:
        await anyio.sleep(ctx.hold)
    finally:
        os.kill(system.broker.pid, signal.SIGCONT)
    ctx.figures.append(f"hung {ctx.hold:g} s")


def broker_cut(kind: str) -> Act:
    """A cut between the relay leader and the broker only (a partition of one instance)."""

    async def act(system: Cluster, ctx: Context) -> None:
        victim = await leader(system)
        router = system.router
        if kind == "latency":
            router.set_latency_for(victim.name, 0.3)
        elif kind == "blackhole":
            router.blackhole_for(victim.name)
        elif kind == "half-open":
            router.half_open_for(victim.name)
        began = time.monotonic()
        try:
            while time.monotonic() - began < ctx.hold:
                if kind == "reset":
                    router.reset_for(victim.name)
                await anyio.sleep(0.5)
        finally:
            router.heal(victim.name)
            if kind == "half-open":
                router.reset_for(victim.name)  # what the peer's keepalive would end at last
        ctx.figures.append(f"{kind} {ctx.hold:g} s on {victim.name}'s broker links")

    return act


async def relay_leader_pg_blackhole(system: Cluster, ctx: Context) -> None:
    """The leader's PostgreSQL link silently drops: a standby must lead within the bound."""
    old = await leader(system)
    old.pg_proxy.blackhole()
    began = time.monotonic()
    bound = FAILOVER_TIMEOUT + LEADER_RETRY + FAILOVER_MARGIN
    took: float | None = None
    try:
        with anyio.move_on_after(bound + 5):
            while took is None:
                if any(i is not old for i in await system.leaders()):
                    took = time.monotonic() - began
                await anyio.sleep(0.1)
        await anyio.sleep(max(0.0, ctx.hold - (time.monotonic() - began)))
    finally:
        old.pg_proxy.restore()
        old.pg_proxy.reset()  # let the held connections go at once
    shown = "never" if took is None else f"{took:.1f} s"
    ctx.figures.append(f"standby led after {shown} (bound {bound:g} s)")
    if took is None or took > bound:
        ctx.violations.append(f"no standby led within {bound:g} s (took {shown})")


async def sigterm_under_load(system: Cluster, ctx: Context) -> None:
    victim = await leader(system)
    began, at = time.monotonic(), time.time()
    victim.signal(signal.SIGTERM)
    status = await victim.wait_exit(SHUTDOWN_TIMEOUT + 5)
    took = time.monotonic() - began
    ctx.drain = (victim.name, at, time.time())
    ctx.figures.append(
        f"{victim.name} exit {status} in {took:.1f} s (budget {SHUTDOWN_TIMEOUT:g} s)"
    )
    if status != 0:
        ctx.violations.append(f"exit status {status} after SIGTERM (expected 0)")
    if took > SHUTDOWN_TIMEOUT + 1:
        ctx.violations.append(f"took {took:.1f} s to stop (budget {SHUTDOWN_TIMEOUT:g} s)")
    if status is None:
        victim.signal(signal.SIGKILL)
        await victim.wait_exit(5)
    await anyio.sleep(ctx.hold)
    await system.start_instance(victim)


SCENARIOS = [
    Scenario(
        "instance-sigkill", "SIGKILL the relay leader mid-load, restart", instance_sigkill, 1.0
    ),
    Scenario(
        "postgres-sigstop",
        "SIGSTOP PostgreSQL (postmaster and backends), SIGCONT",
        postgres_sigstop,
        7.0,
    ),
    Scenario(
        "postgres-sigkill",
        "SIGKILL PostgreSQL, restart on the same data directory",
        postgres_sigkill,
        1.0,
    ),
    Scenario("broker-sigstop", "SIGSTOP the broker, SIGCONT", broker_sigstop, 5.0),
    Scenario(
        "broker-latency",
        "300 ms per chunk on one instance's broker links",
        broker_cut("latency"),
        4.0,
    ),
    Scenario(
        "broker-blackhole", "one instance's broker links blackholed", broker_cut("blackhole"), 6.0
    ),
    Scenario(
        "broker-reset", "one instance's broker links reset every 0.5 s", broker_cut("reset"), 4.0
    ),
    Scenario(
        "broker-half-open", "one instance's broker links half-open", broker_cut("half-open"), 6.0
    ),
    Scenario(
        "relay-leader-pg-blackhole",
        "the relay leader's PostgreSQL links blackholed",
        relay_leader_pg_blackhole,
        9.0,
    ),
    Scenario(
        "sigterm-under-load",
        "SIGTERM the relay leader under load, restart",
        sigterm_under_load,
        0.5,
    ),
]
