"""Helpers for the hostile-input consumer tests (issue 10): a guarded consumer, the DLQ, metrics.

The guarded consumer is the real component on the real database and broker,
like ``consumer_harness.running_consumer``, except that its exit is recorded
instead of tearing the test's task group down: a test can then say "the
component exited with OverflowError" rather than fail on whatever it was
awaiting when the group was cancelled, and every wait fails fast once the
component is gone.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import asyncpg
import attrs
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from reco.consumer.component import WatchEventConsumer
from reco.db.pool import Database
from reco.observability import metrics
from reco.observability.readiness import Readiness
from reco.settings import Settings
from tests.support.components import request_stop, start
from tests.support.components import run as run_component

# The dead-letter reasons of issue 10's contract (reco/consumer/decode.py has the first five
# today; the consumer rewrite adds the last two).
REASONS = frozenset({
    "no_value", "oversized", "not_utf8", "not_json", "invalid_event",
    "unprocessable", "conflicting_duplicate",
})  # fmt: skip
# The outcomes of reco_consumer_messages_total after the rewrite; they add up to the records read.
OUTCOMES = frozenset({"processed", "duplicate", "invalid", "conflict", "unprocessable"})


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def watch(event_id: str, user: str, item: str, at: dt.datetime | str) -> dict[str, Any]:
    """A valid watch event as a JSON object."""
    when = at if isinstance(at, str) else at.isoformat()
    return {"event_id": event_id, "user_id": user, "item_id": item, "occurred_at": when}


def encode(obj: Any) -> bytes:
    return json.dumps(obj).encode()


@attrs.define
class Guard:
    """The running component; ``error`` is set when ``run()`` ended before the test stopped it."""

    consumer: WatchEventConsumer
    readiness: Readiness
    exited: anyio.Event = attrs.field(factory=anyio.Event)
    error: BaseException | None = None
    stopping: bool = False
    errors_before: dict[str, float] = attrs.field(factory=lambda: error_counts())

    def assert_alive(self) -> None:
        if self.exited.is_set() and not self.stopping:
            raise AssertionError(f"the consumer component exited: {self.error!r}") from self.error

    async def wait_for(
        self, check: Callable[[], Awaitable[bool]], *, within: float, what: str
    ) -> float:
        """Poll ``check`` until true (seconds taken); fail after ``within`` or if the component exits."""
        began = anyio.current_time()
        with anyio.move_on_after(within):
            while True:
                self.assert_alive()
                if await check():
                    return anyio.current_time() - began
                await anyio.sleep(0.05)
        self.assert_alive()
        errors = {k: v - self.errors_before.get(k, 0.0) for k, v in error_counts().items()}
        raise AssertionError(
            f"{what}: not within {within:g} s (reco_consumer_errors_total by stage since the "
            f"consumer started: { ({k: v for k, v in errors.items() if v}) })"
        )


@asynccontextmanager
async def guarded_consumer(settings: Settings) -> AsyncIterator[Guard]:
    """The database and consumer components; the consumer's exit is recorded, not propagated."""
    readiness = Readiness()
    database = Database(settings, readiness)
    guard = Guard(WatchEventConsumer(settings, readiness, database), readiness)

    async def _consume(*, task_status: anyio.abc.TaskStatus[None]) -> None:
        try:
            await run_component(guard.consumer, task_status=task_status)
        except Exception as exc:  # noqa: BLE001 - recorded: the test asserts the component lives
            guard.error = exc
        finally:
            guard.exited.set()

    async with anyio.create_task_group() as tg:
        await start(tg, database)
        await tg.start(_consume)
        try:
            yield guard
        finally:
            guard.stopping = True
            request_stop(guard.consumer)
            with anyio.CancelScope(shield=True), anyio.move_on_after(15):
                await guard.exited.wait()
            request_stop(database)


@asynccontextmanager
async def producer(bootstrap: str, **options: Any) -> AsyncIterator[AIOKafkaProducer]:
    client = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=5, **options
    )
    try:
        await client.start()
        yield client
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            await client.stop()


async def produce(
    client: AIOKafkaProducer, topic: str, values: Sequence[bytes | None], *, key: bytes | None
) -> list[tuple[int, int]]:
    """Produce ``values`` with one key (one partition, in order); their (partition, offset)."""
    futures = [await client.send(topic, value, key=key) for value in values]
    placed = []
    with anyio.fail_after(30):
        for future in futures:
            metadata = await future
            placed.append((metadata.partition, metadata.offset))
    return placed


async def read_all(bootstrap: str, topic: str) -> list[Any]:
    """Every record now in ``topic`` (up to the end offsets read first); no consumer group."""
    client = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                              auto_offset_reset="earliest")  # fmt: skip
    await client.start()
    records: list[Any] = []
    try:
        with anyio.fail_after(20):
            partitions = await _partitions(client, topic)
            if not partitions:
                return []
            client.assign(partitions)
            ends = await client.end_offsets(partitions)
            await client.seek_to_beginning(*partitions)
            while any([await client.position(tp) < ends[tp] for tp in partitions]):
                for batch in (await client.getmany(timeout_ms=200)).values():
                    records.extend(batch)
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            await client.stop()
    return records


async def _partitions(client: AIOKafkaConsumer, topic: str) -> list[TopicPartition]:
    found = client.partitions_for_topic(topic)
    if found is None:
        await client.topics()  # a metadata request names every topic the broker has
        found = client.partitions_for_topic(topic)
    return [TopicPartition(topic, p) for p in sorted(found or ())]


def header(record: Any, name: str) -> str | None:
    """A ``reco.dlq.*`` header of a dead-lettered record, decoded (None when absent)."""
    value = dict(record.headers).get(f"reco.dlq.{name}")
    return None if value is None else bytes(value).decode()


def dead_letters_by_offset(records: Iterable[Any], source: str) -> dict[int, list[Any]]:
    """Dead letters of ``source`` by source offset (a record may be dead-lettered twice)."""
    out: dict[int, list[Any]] = {}
    for record in records:
        offset = header(record, "offset")
        if header(record, "topic") == source and offset is not None:
            out.setdefault(int(offset), []).append(record)
    return out


def message_counts() -> dict[str, float]:
    """``reco_consumer_messages_total`` now, by outcome (the process-wide metric object)."""
    counts: dict[str, float] = {}
    for labels, value in metrics.consumer_messages.get_all():
        outcome = str(labels.get("outcome"))
        counts[outcome] = counts.get(outcome, 0.0) + float(value)  # type: ignore[arg-type]
    return counts


def error_counts() -> dict[str, float]:
    """``reco_consumer_errors_total`` now, by stage."""
    counts: dict[str, float] = {}
    for labels, value in metrics.consumer_errors.get_all():
        counts[str(labels.get("stage"))] = float(value)  # type: ignore[arg-type]
    return counts


def counted_since(before: dict[str, float]) -> dict[str, float]:
    """What ``reco_consumer_messages_total`` counted since ``before``, by outcome (non-zero only)."""
    after = message_counts()
    delta = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in after.keys() | before.keys()}
    return {k: v for k, v in delta.items() if v}


@attrs.define
class Db:
    """Reads what the consumer stored, on a connection of its own per call."""

    url: str

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.url)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    async def execute(self, sql: str) -> None:
        conn = await asyncpg.connect(self.url)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    async def stored(self, event_ids: Iterable[str]) -> set[str]:
        """Which of ``event_ids`` are in watch_events (ids PostgreSQL cannot hold never are)."""
        ids = [i for i in event_ids if _storable(i)]
        rows = await self.fetch(
            "SELECT event_id FROM watch_events WHERE event_id = ANY($1::text[])", ids
        )
        return {r["event_id"] for r in rows}

    async def has(self, event_id: str) -> bool:
        return bool(await self.stored([event_id]))

    async def count(self) -> int:
        rows = await self.fetch("SELECT count(*) AS n FROM watch_events")
        n: int = rows[0]["n"]
        return n

    async def row(self, event_id: str) -> asyncpg.Record | None:
        rows = await self.fetch("SELECT * FROM watch_events WHERE event_id = $1", event_id)
        return rows[0] if rows else None


def _storable(text: str) -> bool:
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
