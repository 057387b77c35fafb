"""Outbox relay benchmark: throughput against a producer-only ceiling, and latency.

Runs on the embedded PostgreSQL (fsync off) and the Tansu broker, in one process:

1. ceiling: the relay's own producer configuration sends N messages, the same
   payloads, in batches of ``relay_batch_max`` (send futures awaited in order),
   without the database;
2. throughput: N rows pre-filled in the outbox; rows/s from relay start until
   every row is marked published (includes claim, send, ack and mark);
3. latency: rows committed at a steady rate (small transactions every 10 ms),
   from the client's commit to the end of the relay batch that acknowledged
   and marked them (an upper bound of commit-to-ack), p50/p95/p99/max.

``python -m bench relay [--rows 50000] [--rate 1000] [--seconds 10]``
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import anyio
import attrs
from aiokafka import AIOKafkaProducer
from reco_dev.devstack.broker import EmbeddedBroker
from reco_dev.devstack.postgres import EmbeddedPostgres

from reco.db import migrations
from reco.db.pool import Database, connect
from reco.observability.logs import configure_logging
from reco.observability.readiness import Readiness
from reco.outbox import queries
from reco.outbox.publish import BatchOutcome, make_producer, send_batch
from reco.outbox.relay import OutboxRelay
from reco.settings import Settings
from tests.support.components import request_stop, start

PAYLOAD = '{"recommendation_id":"%s","user_id":"u%d","endpoint":"popular","items":[%s]}'
ITEMS = ",".join(f'{{"item_id":"i{n}","position":{n},"score":0.5}}' for n in range(1, 6))


def row(n: int, topic: str) -> queries.NewRow:
    key = f"u{n % 997}"
    return queries.NewRow(topic, key, f"e{n:09d}", "impression", PAYLOAD % (n, n % 997, ITEMS))


class TimedRelay(OutboxRelay):
    """Records when each row's batch was acknowledged and marked; signals at ``target`` rows."""

    def __init__(self, settings: Settings, database: Database, target: int) -> None:
        super().__init__(settings, database, Readiness())
        self.acked_at: dict[str, float] = {}
        self.target = target
        self.done = anyio.Event()

    async def _publish(self, producer: AIOKafkaProducer, rows: list[queries.PendingRow]) -> None:
        await super()._publish(producer, rows)
        now = time.perf_counter()
        for r in rows:
            self.acked_at.setdefault(r.event_id, now)
        if len(self.acked_at) >= self.target:
            self.done.set()


async def ceiling(settings: Settings, n: int) -> float:
    producer = make_producer(settings)
    await producer.start()
    try:
        pending = [
            queries.PendingRow(i, "bench.ceiling", r.key, r.event_id, r.event_type,
                               r.payload.encode(), 0.0)
            for i, r in enumerate(row(k, "bench.ceiling") for k in range(n))
        ]  # fmt: skip
        await send_batch(producer, pending[:100], BatchOutcome(0))  # topic metadata, warm-up
        began = time.perf_counter()
        for start in range(0, n, settings.relay_batch_max):
            outcome = BatchOutcome(0)
            await send_batch(producer, pending[start : start + settings.relay_batch_max], outcome)
            assert not outcome.error, outcome.error
        return n / (time.perf_counter() - began)
    finally:
        await producer.stop()


async def prefill(settings: Settings, n: int, topic: str) -> None:
    conn = await connect(settings)
    try:
        for start in range(0, n, 5000):
            async with conn.transaction():
                await queries.enqueue(
                    conn, [row(k, topic) for k in range(start, min(n, start + 5000))]
                )
    finally:
        await conn.close()


async def throughput(settings: Settings, n: int) -> float:
    await prefill(settings, n, "bench.relay")
    database = Database(settings, Readiness())
    async with anyio.create_task_group() as tg:
        await start(tg, database)
        relay = TimedRelay(settings, database, n)
        began = time.perf_counter()
        await start(tg, relay)
        await relay.done.wait()
        elapsed = time.perf_counter() - began
        request_stop(relay)
        request_stop(database)
    return n / elapsed


async def latency(settings: Settings, rate: int, seconds: float) -> list[float]:
    per_tick, tick = max(1, rate // 100), 0.01
    committed: dict[str, float] = {}
    database = Database(settings, Readiness())
    writer = await connect(settings)
    relay = TimedRelay(settings, database, int(seconds / tick) * per_tick)
    try:
        async with anyio.create_task_group() as tg:
            await start(tg, database)
            await start(tg, relay)
            began, n = anyio.current_time(), 10_000_000
            for t in range(int(seconds / tick)):
                await anyio.sleep_until(began + t * tick)
                rows = [row(n + i, "bench.latency") for i in range(per_tick)]
                n += per_tick
                async with writer.transaction():
                    await queries.enqueue(writer, rows)
                now = time.perf_counter()
                committed.update((r.event_id, now) for r in rows)
            with anyio.fail_after(10):
                await relay.done.wait()
            request_stop(relay)
            request_stop(database)
    finally:
        await writer.close()
    return [relay.acked_at[e] - c for e, c in committed.items()]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def run(args: argparse.Namespace, settings: Settings) -> None:
    top = await ceiling(settings, args.rows)
    print(f"ceiling (producer only)    {top:10,.0f} msg/s  ({args.rows} messages)")
    got = await throughput(settings, args.rows)
    print(f"relay (outbox -> acks)     {got:10,.0f} rows/s ({got / top:.0%} of the ceiling)")
    samples = await latency(settings, args.rate, args.seconds)
    ms = [s * 1000 for s in samples]
    print(
        f"commit -> ack at {args.rate} rows/s for {args.seconds:g} s ({len(ms)} rows): "
        f"p50 {percentile(ms, 50):.1f} ms, p95 {percentile(ms, 95):.1f} ms, "
        f"p99 {percentile(ms, 99):.1f} ms, max {max(ms):.1f} ms, mean {statistics.mean(ms):.1f} ms"
    )


def _start_postgres(postgres: EmbeddedPostgres) -> None:
    """Start, tolerating pg_isready's "rejecting connections" while the server starts."""
    try:
        postgres.start()
    except subprocess.CalledProcessError:
        for _ in range(100):
            time.sleep(0.1)
            with contextlib.suppress(subprocess.CalledProcessError):
                postgres._wait_accepting(10)
                return
        raise


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench relay")
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args(argv)
    configure_logging("WARNING")
    with tempfile.TemporaryDirectory(prefix="reco-bench-") as tmp:
        postgres = EmbeddedPostgres(Path(tmp) / "postgres", durable=False)
        broker = EmbeddedBroker(Path(tmp) / "broker")
        _start_postgres(postgres)
        broker.start()
        try:
            postgres.psql("CREATE DATABASE bench")
            settings = attrs.evolve(
                Settings(), database_url=postgres.url("bench"), kafka_bootstrap=broker.bootstrap
            )

            async def _main() -> None:
                conn = await connect(settings)
                try:
                    await migrations.migrate(conn, migrations.default_dir())
                finally:
                    await conn.close()
                await run(args, settings)

            anyio.run(_main, backend="asyncio")
        finally:
            broker.stop()
            postgres.stop()
    return 0
