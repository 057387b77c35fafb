"""What must hold after every heal, read from the real stores (PostgreSQL, the broker).

Each check returns figures for the report and a list of violations (empty: it holds).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import anyio
import asyncpg
import attrs
from aiokafka import AIOKafkaConsumer, TopicPartition

from reco import audit
from reco.engine import audit as recompute
from reco.kafka import clients
from reco.settings import KafkaSettings
from tests.chaos.cluster import Cluster, Instance

READ_DEADLINE = 30.0


@attrs.define
class Check:
    """One invariant's figures (printed in the table) and its violations."""

    figures: str
    violations: list[str] = attrs.field(factory=list)


@attrs.frozen
class Record:
    partition: int
    offset: int
    key: str
    event_id: str | None


async def read_topic(bootstrap: str, topic: str) -> list[Record]:
    """Every record of ``topic`` from the earliest offset, by a fresh consumer (no group).

    The end is the high watermark of the fetch responses, not ``end_offsets()``: Tansu
    answers ListOffsets(latest) with the last record batch's base offset + 1, which
    falls short of the end whenever that batch holds more than one record.
    """
    consumer = clients.consumer(KafkaSettings(bootstrap=bootstrap, request_timeout=5.0))
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            return []
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        records: list[Record] = []
        with anyio.fail_after(READ_DEADLINE):
            while not await _at_end(consumer, partitions):
                batch = await consumer.getmany(timeout_ms=300)
                for tp, messages in batch.items():
                    records += [_record(tp.partition, m) for m in messages]
        return records
    finally:
        await consumer.stop()


async def _at_end(consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> bool:
    for tp in partitions:
        highwater = consumer.highwater(tp)
        if highwater is None or await consumer.position(tp) < highwater:
            return False
    return True


async def offsets(bootstrap: str, topic: str) -> str:
    """Per partition: records read, lowest and highest offset, gaps (diagnostics)."""
    records = await read_topic(bootstrap, topic)
    parts: dict[int, list[int]] = {}
    for r in records:
        parts.setdefault(r.partition, []).append(r.offset)
    return "; ".join(f"p{p}: {len(o)} records {min(o)}..{max(o)}, {max(o) - min(o) + 1 - len(set(o))} gaps"
                     for p, o in sorted(parts.items()))  # fmt: skip


def _record(partition: int, message: Any) -> Record:
    headers = dict(message.headers or ())
    event_id = headers.get("event_id")
    key = (message.key or b"").decode(errors="replace")
    return Record(partition, message.offset, key, event_id.decode() if event_id else None)


async def consumer_lag(bootstrap: str, topic: str, group: str = "reco") -> int:
    """The fetch high watermarks minus the group's committed offsets (a consumer of the
    group that never subscribes does not join it; see :func:`read_topic` on the end)."""
    member = clients.consumer(KafkaSettings(bootstrap=bootstrap, request_timeout=5.0), group=group)
    reader = clients.consumer(KafkaSettings(bootstrap=bootstrap, request_timeout=5.0))
    await member.start()
    await reader.start()
    try:
        partitions = [TopicPartition(topic, p) for p in member.partitions_for_topic(topic) or ()]
        committed = {tp: await member.committed(tp) or 0 for tp in partitions}
        reader.assign(partitions)
        for tp in partitions:
            reader.seek(tp, committed[tp])
        with anyio.fail_after(READ_DEADLINE):
            while any(reader.highwater(tp) is None for tp in partitions):
                await reader.getmany(timeout_ms=300)
        return sum(max(0, (reader.highwater(tp) or 0) - committed[tp]) for tp in partitions)
    finally:
        await reader.stop()
        await member.stop()


# --- liveness -----------------------------------------------------------------------
async def live(system: Cluster) -> list[str]:
    """What still keeps the system from being healed (empty: healed)."""
    waiting = []
    lag = await consumer_lag(system.bootstrap, "reco.watch-events")
    if lag:
        waiting.append(f"consumer lag {lag}")
    conn = await asyncpg.connect(system.database_url, timeout=2)
    try:
        backlog = await conn.fetchval("SELECT count(*) FROM outbox WHERE published_at IS NULL")
    finally:
        await conn.close()
    if backlog:
        waiting.append(f"outbox backlog {backlog}")
    leaders = await system.leaders()
    if len(leaders) != 1:
        waiting.append(f"{len(leaders)} relay leaders")
    for instance in system.instances:
        if not instance.alive:  # nothing restarts it: say so, not just "not ready"
            status = None if instance.process is None else instance.process.poll()
            waiting.append(f"{instance.name} exited (status {status}): {crash_of(instance)}")
        elif await system.status(instance, "/readyz?strict=1") != 200:
            failing = await system.failing_checks(instance)
            waiting.append(f"{instance.name} not strictly ready ({failing})")
    return waiting


def crash_of(instance: Instance) -> str:
    """What the instance's log says it died of (the work directory may not be kept)."""
    try:
        lines = instance.log_path.read_text(errors="replace").splitlines()
    except OSError:
        return f"no log at {instance.log_path}"
    for line in reversed(lines):
        if '"component crashed"' in line or '"component exited unexpectedly"' in line:
            try:
                entry = json.loads(line)
            except ValueError:
                return line[:300]
            return f"{entry.get('component')} {entry.get('event')}: {entry.get('error', '')}"[:300]
    return f"no crash logged; see {instance.log_path}"


async def wait_live(system: Cluster, bound: float) -> tuple[float, Check]:
    """Seconds until healed (lag 0, backlog 0, one leader, all ready), within ``bound``."""
    began = time.monotonic()
    waiting = ["not checked"]
    while time.monotonic() - began < bound:
        try:
            waiting = await live(system)
        except Exception as exc:  # noqa: BLE001 - a dependency still recovering: look again
            waiting = [f"{type(exc).__name__}: {exc}"]
        if not waiting:
            took = time.monotonic() - began
            return took, Check(f"{took:.1f}")
        await anyio.sleep(0.3)
    took = time.monotonic() - began
    return took, Check(f">{bound:g}", [f"not healed within {bound:g} s: {', '.join(waiting)}"])


# --- events -------------------------------------------------------------------------
async def events(
    conn: asyncpg.Connection, scenario: str, records: Sequence[dict[str, Any]]
) -> Check:
    """Every acknowledged event stored once, as sent; nothing stored that was not sent."""
    sent = {r["event_id"]: r for r in records if r["kind"] == "event"}
    acked = {i for i, r in sent.items() if r["acked"]}
    rows = await conn.fetch(
        "SELECT event_id, user_id, item_id, occurred_at FROM watch_events "
        "WHERE left(event_id, length($1)) = $1", scenario + "-",
    )  # fmt: skip
    stored = {r["event_id"]: r for r in rows}
    lost = sorted(acked - set(stored))
    invented = sorted(set(stored) - set(sent))
    altered = [i for i, r in stored.items() if i in sent and not _same_watch(r, sent[i])]
    dups = sum(1 for r in records if r["kind"] == "dup")
    unacked_stored = len(set(stored) - acked - set(invented))
    figures = (f"{len(sent)} sent, {len(acked)} acked, {len(stored)} stored "
               f"({unacked_stored} unacked), {dups} dup sent")  # fmt: skip
    check = Check(figures)
    if lost:
        check.violations.append(f"{len(lost)} acknowledged events not stored, e.g. {lost[:3]}")
    if invented:
        check.violations.append(f"{len(invented)} stored events never sent, e.g. {invented[:3]}")
    if altered:
        check.violations.append(f"{len(altered)} stored events differ from the sent ones")
    return check


def _same_watch(row: asyncpg.Record, sent: dict[str, Any]) -> bool:
    at = dt.datetime.fromisoformat(sent["occurred_at"])
    return (row["user_id"], row["item_id"], row["occurred_at"]) == (
        sent["user_id"],
        sent["item_id"],
        at,
    )


async def aggregates(conn: asyncpg.Connection) -> Check:
    """``reco check-aggregates``'s comparison over the whole database."""
    diff, count = await audit.check(conn, statement_timeout=60)
    if diff.equal:
        return Check(f"equal ({count} events)")
    return Check(f"{len(diff.lines)} diffs", list(recompute.summary(diff, count, 20)))


# --- outbox -------------------------------------------------------------------------
async def outbox(conn: asyncpg.Connection, system: Cluster, after_id: int) -> Check:
    """Every committed row (id > ``after_id``) published at least once, in per-key order."""
    rows = await conn.fetch(
        "SELECT id, topic, message_key, event_id, publish_error FROM outbox WHERE id > $1", after_id
    )
    by_event = {(r["topic"], r["event_id"]): r for r in rows}
    seen: Counter[tuple[str, str]] = Counter()
    reordered = 0
    for topic in sorted({r["topic"] for r in rows}):
        last: dict[str, int] = {}
        for record in await read_topic(system.bootstrap, topic):
            row = by_event.get((topic, record.event_id or ""))
            if row is None:
                continue
            seen[(topic, row["event_id"])] += 1
            if seen[(topic, row["event_id"])] == 1:
                if row["id"] < last.get(row["message_key"], 0):
                    reordered += 1
                last[row["message_key"]] = max(row["id"], last.get(row["message_key"], 0))
    missing = [k for k in by_event if not seen[k]]
    dups = sum(n - 1 for n in seen.values() if n > 1)
    rejected = sum(1 for r in rows if r["publish_error"] is not None)
    check = Check(f"{len(rows)} rows, {len(rows) - len(missing)} published, "
                  f"{dups} dup, {reordered} reordered")  # fmt: skip
    if missing:
        check.violations.append(f"{len(missing)} committed outbox rows never published: "
                                f"{[(by_event[k]['id'], by_event[k]['message_key']) for k in missing[:5]]}; "
                                f"{await offsets(system.bootstrap, missing[0][0])}")  # fmt: skip
    if reordered:
        check.violations.append(f"{reordered} rows published before an older row of their key")
    if rejected:
        check.violations.append(f"{rejected} rows set aside as refused by the broker")
    return check


# --- impressions --------------------------------------------------------------------
@attrs.frozen
class Kill:
    """A SIGKILL of ``instance`` at ``at`` (wall clock): its buffered impressions may be lost."""

    instance: str
    at: float


LOSS_WINDOW = 2.0  # seconds before a SIGKILL: what the buffer and one write may hold


async def impressions(
    conn: asyncpg.Connection, records: Sequence[dict[str, Any]], kills: Sequence[Kill]
) -> Check:
    """Every recommendation_id served has an impression row, but those a SIGKILL may lose."""
    served = {r["rid"]: r for r in records if r["kind"] == "read" and r.get("rid")}
    rows = await conn.fetch(
        "SELECT recommendation_id::text FROM impressions WHERE recommendation_id = ANY($1::uuid[])",
        list(served),
    )
    missing = set(served) - {r[0] for r in rows}
    allowed = {rid for rid in missing if _in_loss_window(served[rid], kills)}
    check = Check(f"{len(served)} served, {len(missing)} missing ({len(allowed)} in loss window)")
    if missing - allowed:
        check.violations.append(f"{len(missing - allowed)} impressions lost outside the window")
    return check


def _in_loss_window(read: dict[str, Any], kills: Sequence[Kill]) -> bool:
    return any(k.instance == read["instance"] and k.at - LOSS_WINDOW <= read["done"] <= k.at + 1
               for k in kills)  # fmt: skip


# --- dead letters -------------------------------------------------------------------
async def dead_letters(system: Cluster, scenario: str, records: Sequence[dict[str, Any]]) -> Check:
    """The dead-letter topic holds the workload's bad records, and nothing else."""
    bad = {r["key"] for r in records if r["kind"] == "bad"}
    acked = {r["key"] for r in records if r["kind"] == "bad" and r["acked"]}
    letters = await read_topic(system.bootstrap, "reco.watch-events.dlq")
    mine = Counter(r.key for r in letters if r.key.startswith(scenario + "-"))
    unexpected = sorted({r.key for r in letters if "-bad-" not in r.key})
    check = Check(f"{len(acked)} bad acked, {len(mine)} dead-lettered")
    if acked - set(mine):
        shown = [(r.partition, r.offset, r.key) for r in letters if r.key.startswith(scenario)]
        check.violations.append(f"{len(acked - set(mine))} bad records not dead-lettered: "
                                f"{sorted(acked - set(mine))}; dead letters {shown}")  # fmt: skip
    if set(mine) - bad:
        check.violations.append(
            f"{len(set(mine) - bad)} of this scenario's good records dead-lettered"
        )
    if unexpected:
        check.violations.append(
            f"{len(unexpected)} dead letters not meant to be bad: {unexpected[:3]}"
        )
    return check
