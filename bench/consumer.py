"""Consumer throughput: ML-100K ratings through the broker into PostgreSQL, end to end.

Two runs on one embedded PostgreSQL and one broker, each on its own topic and
database, each timed from the first produce to the last event stored:

* ceiling: a bare aiokafka loop, one ``INSERT ... ON CONFLICT DO NOTHING`` per
  batch, no validation beyond JSON, no aggregates, commit after each batch;
* consumer: the real :class:`~reco.consumer.component.WatchEventConsumer`
  (validation, dead-letter checks, one transaction per batch, apply_events)
  and :class:`~reco.consumer.folder.CooccurrenceFolder`, timed until the
  last co-occurrence increment is folded too: every aggregate is up to date.

It prints both rates and their ratio; with ``--repeat N``, N rounds and the
medians (the machine is shared: one run can be 15% off). Run:
``just bench consumer [--data PATH] [--repeat N]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import attrs
from aiokafka import AIOKafkaProducer
from anyio.streams.text import TextReceiveStream
from reco_dev.devstack.broker import EmbeddedBroker
from reco_dev.devstack.postgres import EmbeddedPostgres

from reco.consumer.component import WatchEventConsumer
from reco.db import migrations
from reco.db.pool import Database
from reco.events import parse_watch_event
from reco.folder import folding
from reco.folder.component import CooccurrenceFolder
from reco.kafka import clients
from reco.observability import metrics
from reco.observability.logs import configure_logging
from reco.observability.readiness import Readiness
from reco.settings import AppEnv, KafkaSettings, Settings
from tests.support.components import request_stop, start

REPO = Path(__file__).resolve().parent.parent
DATA = Path("shared/datasets/ml-100k/ml-100k.inter")
# ../shared from the repository root; from a worktree under wt/, one level further up.
DEFAULT_DATA = next(
    (root / DATA for root in (REPO.parent, REPO.parent.parent) if (root / DATA).exists()),
    REPO.parent / DATA,
)
INSERT = """
INSERT INTO watch_events (event_id, user_id, item_id, occurred_at, watched_seconds, completed)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[],
                     $5::float8[], $6::boolean[])
ON CONFLICT (event_id, received_day) DO NOTHING  -- sql/0006: the key has the day
"""


def load(path: Path, limit: int | None) -> list[tuple[bytes, bytes]]:
    """(key, value) per rating: event id from user, item and time; occurred_at from the time."""
    messages = []
    with path.open() as lines:
        next(lines)  # header: user_id:token item_id:token rating:float timestamp:float
        for line in lines:
            user, item, rating, stamp = line.split("\t")
            seconds = int(float(stamp))
            value = {
                "event_id": f"ml-{user}-{item}-{seconds}", "user_id": user, "item_id": item,
                "occurred_at": dt.datetime.fromtimestamp(seconds, dt.UTC).isoformat(),
                "completed": float(rating) >= 4,
            }  # fmt: skip
            messages.append((user.encode(), json.dumps(value).encode()))
            if limit and len(messages) >= limit:
                break
    return messages


def make_producer(bootstrap: str) -> AIOKafkaProducer:
    return clients.producer(
        KafkaSettings(bootstrap=bootstrap), linger=0.005, max_batch_size=256 * 1024
    )


async def send_all(producer: AIOKafkaProducer, topic: str,
                   messages: list[tuple[bytes, bytes]]) -> None:  # fmt: skip
    futures = [await producer.send(topic, value, key=key) for key, value in messages]
    for future in futures:
        await future


async def produce(bootstrap: str, topic: str, messages: list[tuple[bytes, bytes]]) -> float:
    """Send everything from this process (acks=all, batched by linger); the seconds it took."""
    producer = make_producer(bootstrap)
    await producer.start()
    began = time.perf_counter()
    try:
        await send_all(producer, topic, messages)
    finally:
        await producer.stop()
    return time.perf_counter() - began


async def produce_elsewhere(
    bootstrap: str, topic: str, source: tuple[Path, int | None], on_go: Callable[[], None]
) -> float:
    """Send everything from a child process (bench/_produce.py), as a service's
    producers are: it does not take this process's CPU from the consumer. The
    child connects first; ``on_go`` runs just before it is told to send.
    Returns the seconds the sending took."""
    data, limit = source
    command = [sys.executable, "-m", "bench._produce", bootstrap, topic, str(data), str(limit or 0)]
    async with await anyio.open_process(command, stderr=None) as child:
        assert child.stdin is not None
        assert child.stdout is not None
        lines = TextReceiveStream(child.stdout)
        told = ""
        async for chunk in lines:
            told += chunk
            if "ready\n" in told:
                break
        on_go()
        await child.stdin.send(b"go\n")
        async for chunk in lines:
            told += chunk
        if await child.wait() != 0:
            raise RuntimeError(f"the producer process failed: {told!r}")
    return float(told.split("ready\n", 1)[1].strip())


async def _settled() -> bool:
    return True


@attrs.define
class Run:
    """One measured run: ``stored()`` counts events stored so far (in-process, no polling SQL);
    once all are stored, ``settled()`` says whether the aggregates have caught up."""

    bootstrap: str
    topic: str
    stored: Callable[[], int]
    assigned: Callable[[], bool]
    settled: Callable[[], Awaitable[bool]] = _settled

    async def all_done(self, total: int) -> None:
        await wait_for(lambda: self.stored() >= total, poll=0.005)
        with anyio.fail_after(120):
            while not await self.settled():  # noqa: ASYNC110 - state in PostgreSQL
                await anyio.sleep(0.01)

    async def end_to_end(self, source: tuple[Path, int | None], total: int) -> tuple[float, float]:
        """(seconds from the first produce to all stored, seconds producing took)."""
        await wait_for(self.assigned)
        began: list[float] = []
        produced: list[float] = []
        async with anyio.create_task_group() as tg:

            def go() -> None:
                began.append(time.perf_counter())

            async def _produce() -> None:
                produced.append(await produce_elsewhere(self.bootstrap, self.topic, source, go))

            tg.start_soon(_produce)
            await self.all_done(total)
        return time.perf_counter() - began[0], produced[0]

    async def drain(self, total: int) -> float:
        """Seconds from the group assignment to all of a produced backlog stored."""
        await wait_for(self.assigned, poll=0.002)
        began = time.perf_counter()
        await self.all_done(total)
        return time.perf_counter() - began


async def wait_for(condition: Callable[[], bool], poll: float = 0.05) -> None:
    with anyio.fail_after(120):
        while not condition():  # noqa: ASYNC110 - state inside aiokafka or a counter
            await anyio.sleep(poll)


@asynccontextmanager
async def bare(bootstrap: str, url: str, topic: str, batch: int) -> AsyncIterator[Run]:
    """The ceiling: a bare aiokafka loop, one batched INSERT and a commit per batch."""
    consumer = clients.consumer(
        KafkaSettings(bootstrap=bootstrap), topic, group=f"bare-{topic}", max_poll_records=batch
    )
    await consumer.start()
    conn = await asyncpg.connect(url)
    stored = [0]
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(bare_loop, consumer, conn, batch, stored)
            yield Run(bootstrap, topic, lambda: stored[0], lambda: bool(consumer.assignment()))
            tg.cancel_scope.cancel()
    finally:
        await conn.close()
        await consumer.stop()


async def bare_loop(consumer: Any, conn: asyncpg.Connection, batch: int, stored: list[int]) -> None:
    while True:
        records = await consumer.getmany(timeout_ms=100, max_records=batch)
        rows = [json.loads(r.value) for part in records.values() for r in part]
        if not rows:
            continue
        await conn.execute(
            INSERT, [r["event_id"] for r in rows], [r["user_id"] for r in rows],
            [r["item_id"] for r in rows],
            [dt.datetime.fromisoformat(r["occurred_at"]) for r in rows],
            [r.get("watched_seconds") for r in rows], [r.get("completed") for r in rows],
        )  # fmt: skip
        stored[0] += len(rows)
        await consumer.commit()


@asynccontextmanager
async def real(settings: Settings) -> AsyncIterator[Run]:
    """The consumer and folder components with the database component, as the service runs them."""
    readiness = Readiness()
    database = Database(settings.database, readiness, migrate=settings.should_migrate_on_start)
    component = WatchEventConsumer(settings.consumer, settings.kafka, readiness, database)
    folder = CooccurrenceFolder(settings.folder, database)
    base = handled()
    watcher = await asyncpg.connect(settings.database.url)
    async with anyio.create_task_group() as tg:
        await start(tg, database)
        await start(tg, folder)
        await start(tg, component)

        def assigned() -> bool:
            client: Any = component._consumer  # the bench peeks: has the group been joined?
            return bool(client and client.assignment())

        async def settled() -> bool:
            return not await folding.pending(watcher)

        yield Run(settings.kafka.bootstrap, settings.kafka.watch_events_topic,
                  lambda: handled() - base, assigned, settled)  # fmt: skip
        request_stop(component)
        request_stop(folder)
        request_stop(database)
    await watcher.close()


def handled() -> int:
    """Messages the consumer has finished with (stored, duplicate or dead-lettered)."""
    values: Any = metrics.consumer_messages.values
    return int(sum(values.values()))


async def fresh_database(postgres: EmbeddedPostgres, name: str) -> str:
    postgres.psql(f"CREATE DATABASE {name}")
    conn = await asyncpg.connect(postgres.url(name))
    try:
        await migrations.migrate(conn, migrations.default_dir())
    finally:
        await conn.close()
    return postgres.url(name)


MODES = ("end-to-end", "backlog")


async def bench(
    args: argparse.Namespace, postgres: EmbeddedPostgres, broker: EmbeddedBroker
) -> None:
    messages = load(args.data, args.limit)
    parse_watch_event(json.loads(messages[0][1]))  # the data set is valid for the real consumer
    total = len(messages)
    print(f"events: {total} from {args.data}; batch_max {args.batch}; lanes {args.lanes}")
    rates: dict[tuple[str, str], list[float]] = {}
    modes = MODES if args.mode == "both" else (args.mode,)
    for round_ in range(args.repeat):
        if args.repeat > 1:
            print(f"round {round_ + 1} of {args.repeat}")
        for mode in modes:
            for name in ("ceiling", "consumer"):
                tag = f"{name}_{mode.replace('-', '_')}_{round_}"
                url, topic = await fresh_database(postgres, tag), f"bench.{tag}"
                if mode == "backlog":
                    await produce(broker.bootstrap, topic, messages)  # before the consumer starts
                async with run_for(name, args, broker.bootstrap, url, topic) as run:
                    seconds, note = await measure(run, mode, (args.data, args.limit), total)
                await check_stored(url, total)
                rates.setdefault((name, mode), []).append(total / seconds)
                print(f"  {name:8} {mode:10}: {total / seconds:9,.0f} events/s "
                      f"({seconds:.2f} s{note})")  # fmt: skip
    for mode in modes:
        ratios = [
            c / b for c, b in zip(rates["consumer", mode], rates["ceiling", mode], strict=True)
        ]
        print(f"ratio consumer/ceiling ({mode}): {statistics.median(ratios):.2f}")
    if args.repeat > 1:
        for (name, mode), values in rates.items():
            print(f"median of {args.repeat}, {name} {mode}: {statistics.median(values):,.0f} events/s"
                  f" (min {min(values):,.0f}, max {max(values):,.0f})")  # fmt: skip


async def measure(
    run: Run, mode: str, source: tuple[Path, int | None], total: int
) -> tuple[float, str]:
    if mode == "backlog":
        return await run.drain(total), ""
    seconds, producing = await run.end_to_end(source, total)
    return seconds, f"; producing alone {producing:.2f} s, in a process of its own"


def run_for(
    name: str, args: argparse.Namespace, bootstrap: str, url: str, topic: str
) -> AbstractAsyncContextManager[Run]:
    if name == "ceiling":
        return bare(bootstrap, url, topic, args.batch)
    settings = Settings.from_flat(
        app_env=AppEnv.TEST, database_url=url, kafka_bootstrap=bootstrap,
        watch_events_topic=topic, dead_letter_topic=f"{topic}.dlq", consumer_group=f"g-{topic}",
        consumer_batch_max=args.batch, consumer_batch_wait=args.wait,
        consumer_store_lanes=args.lanes, cooccurrence_fold_interval=args.fold_interval,
    )  # fmt: skip
    return real(settings)


async def check_stored(url: str, total: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        stored = await conn.fetchval("SELECT count(*) FROM watch_events")
    finally:
        await conn.close()
    if stored != total:
        raise SystemExit(f"stored {stored} events, expected {total}")


def start_postgres(server: EmbeddedPostgres) -> None:
    """Start, tolerating pg_isready's early 'starting up' answer."""
    try:
        server.start()
    except subprocess.CalledProcessError:
        for _ in range(100):
            try:
                server._wait_accepting(5)
                return
            except subprocess.CalledProcessError:
                time.sleep(0.1)
        raise


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench consumer", description=__doc__)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="an ML-100K .inter file")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N ratings")
    defaults = Settings()
    parser.add_argument("--batch", type=int, default=defaults.consumer.batch_max,
                        help="batch size (both runs)")  # fmt: skip
    parser.add_argument("--wait", type=float, default=0.1, help="consumer_batch_wait seconds")
    parser.add_argument("--mode", choices=(*MODES, "both"), default="both", help="which runs")
    parser.add_argument("--lanes", type=int, default=defaults.consumer.store_lanes,
                        help="consumer_store_lanes")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=1,
                        help="rounds (each on fresh topics and databases); medians are printed")  # fmt: skip
    parser.add_argument("--fold-interval", type=float,
                        default=defaults.folder.interval,
                        help="cooccurrence_fold_interval")  # fmt: skip
    args = parser.parse_args(argv)
    configure_logging("WARNING")  # the output is the figures, not the consumer's batch log
    if not args.data.exists():
        print(f"no data set at {args.data} (use --data)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="reco-bench-") as root:
        postgres = EmbeddedPostgres(Path(root) / "postgres", durable=True)
        broker = EmbeddedBroker(Path(root) / "broker")
        try:
            start_postgres(postgres)
            broker.start()
            anyio.run(bench, args, postgres, broker)
        finally:
            broker.stop()
            postgres.stop()
    return 0
