"""Issue 10's consumer findings, each as the black-box scenario the issue tells.

Every test runs the real consumer component (and the real ``apply_events``:
the aggregates are what overflowed) against the embedded broker and
PostgreSQL, produces through Kafka, and reads the outcome from
``watch_events``/``user_history``, the dead-letter topic and
``reco_consumer_messages_total``. Each ends with a sentinel event on the same
partition, produced after the hostile one, that must be stored: the
partition keeps moving.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import anyio
import pytest
from aiokafka.admin import NewTopic
from aiokafka.errors import KafkaError

from reco.kafka import clients
from reco.settings import KafkaSettings, Settings
from tests.conftest import Topics
from tests.integration.consumer_harness import fast
from tests.integration.hostile_support import (
    Db,
    counted_since,
    dead_letters_by_offset,
    encode,
    guarded_consumer,
    header,
    message_counts,
    now,
    produce,
    producer,
    read_all,
    watch,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

# How long one committed event may take to be stored and visible on a loaded 2-core CI machine.
# The issue asks for 1 s read-after-write; the consumer's own latency is about
# consumer_batch_wait (0.05 s here) plus one transaction, so 5 s leaves room for a busy host
# without hiding a wedged partition (which never stores it at all).
VISIBLE_WITHIN = 5.0
SENTINEL_WITHIN = 10.0


async def _sentinel(guard: Any, db: Db, client: Any, settings: Settings, key: bytes) -> None:
    """Produce a valid event now, on ``key``'s partition; it must be stored within the bound."""
    name = key.decode()[:64]  # an id, so at most 128 characters, whatever the key
    sentinel = watch(f"sentinel-{name}", name, "sentinel-item", now())
    await produce(client, settings.kafka.watch_events_topic, [encode(sentinel)], key=key)
    await guard.wait_for(lambda: db.has(sentinel["event_id"]), within=SENTINEL_WITHIN,
                         what="the sentinel after the hostile record was stored")  # fmt: skip


def _history(users: int = 20, per_user: int = 15) -> list[dict[str, Any]]:
    """An ML-100K-like backfill: events dated 1997-09 .. 1998-04, items from a pool of 30."""
    start = dt.datetime(1997, 9, 20, tzinfo=dt.UTC)
    events = []
    for u in range(users):
        for k in range(per_user):
            at = start + dt.timedelta(days=(u * 7 + k * 13) % 210, minutes=k)
            events.append(watch(f"h{u}-{k}", f"u{u}", f"m{(u + k * 3) % 30}", at))
    return events


class TestBackfillThenLive:
    """Finding 1: an old history replayed, then one live event: visible, nothing wedged."""

    async def test_live_event_after_old_history(
        self, kafka_settings: Settings, topics: Topics
    ) -> None:
        """A live event for a user with 1997-98 history shows in user_history within 5 s."""
        settings = fast(kafka_settings)
        db = Db(settings.database.url)
        history = _history()
        async with producer(settings.kafka.bootstrap) as client, guarded_consumer(settings) as g:
            for e in history:  # keyed by user, like a real replay: every partition gets some
                await produce(client, topics.watch_events, [encode(e)], key=e["user_id"].encode())
            await g.wait_for(lambda: _count_is(db, len(history)), within=60,
                             what=f"the {len(history)} backfill events were stored")  # fmt: skip
            # u0 has history; m29 is an item others watched in 1997-98 (an existing popularity row)
            live = watch("live-1", "u0", "m29", now())
            await produce(client, topics.watch_events, [encode(live)], key=b"u0")
            took = await g.wait_for(lambda: _in_history(db, "u0", "m29", live), within=VISIBLE_WITHIN,
                                    what="the live event is in the user's history")  # fmt: skip
            await _sentinel(g, db, client, settings, b"u0")
        assert took < VISIBLE_WITHIN


async def _count_is(db: Db, n: int) -> bool:
    return await db.count() >= n


async def _in_history(db: Db, user: str, item: str, event: dict[str, Any]) -> bool:
    rows = await db.fetch(
        "SELECT last_watched_at FROM user_history WHERE user_id = $1 AND item_id = $2", user, item
    )
    at = dt.datetime.fromisoformat(event["occurred_at"])
    return bool(rows) and rows[0]["last_watched_at"] == at


class TestExtremeDates:
    """Finding 2: the first and last representable days reach an item that already has a score."""

    async def test_year_1_stored_year_9999_dead_lettered(
        self, kafka_settings: Settings, topics: Topics
    ) -> None:
        """0001-01-01 is stored; 9999-12-31 (more than 300 s ahead) is invalid_event; no wedge."""
        settings = fast(kafka_settings)
        db = Db(settings.database.url)
        key = b"dates"
        live = watch("d-live", "dates", "m1", now())
        first = watch("d-0001", "dates", "m1", "0001-01-01T00:00:00Z")
        last = watch("d-9999", "dates", "m1", "9999-12-31T23:59:59.999999Z")
        before = message_counts()
        async with producer(settings.kafka.bootstrap) as client, guarded_consumer(settings) as g:
            await produce(client, topics.watch_events, [encode(live)], key=key)
            await g.wait_for(lambda: db.has("d-live"), within=VISIBLE_WITHIN, what="d-live stored")
            placed = await produce(client, topics.watch_events, [encode(first), encode(last)],
                                   key=key)  # fmt: skip
            await g.wait_for(lambda: db.has("d-0001"), within=VISIBLE_WITHIN,
                             what="the event dated 0001-01-01 was stored")  # fmt: skip
            await _sentinel(g, db, client, settings, key)
            dead = dead_letters_by_offset(
                await read_all(settings.kafka.bootstrap, topics.dead_letter), topics.watch_events
            )
        assert not await db.has("d-9999")
        [(_, offset_9999)] = placed[1:]
        reasons = [header(r, "reason") for r in dead.get(offset_9999, [])]
        assert reasons == ["invalid_event"], f"9999-12-31 dead-lettered as {reasons}"
        assert counted_since(before).get("invalid") == 1


class TestHugeNumber:
    """Finding 3: a 400-digit watched_seconds is an invalid event, not a crash."""

    async def test_400_digit_watched_seconds(
        self, kafka_settings: Settings, topics: Topics
    ) -> None:
        """It is dead-lettered as invalid_event; the component runs on; the sentinel is stored."""
        settings = fast(kafka_settings)
        db = Db(settings.database.url)
        key = b"huge"
        poison = ('{"event_id": "n-huge", "user_id": "huge", "item_id": "m1", '
                  '"occurred_at": "2026-01-01T00:00:00Z", "watched_seconds": '
                  + "9" * 400 + "}").encode()  # fmt: skip
        async with producer(settings.kafka.bootstrap) as client, guarded_consumer(settings) as g:
            [(_, offset)] = await produce(client, topics.watch_events, [poison], key=key)
            await _sentinel(g, db, client, settings, key)
            g.assert_alive()
            dead = dead_letters_by_offset(
                await read_all(settings.kafka.bootstrap, topics.dead_letter), topics.watch_events
            )
        assert not await db.has("n-huge")
        [record] = dead[offset]
        assert (header(record, "reason"), record.value) == ("invalid_event", poison)
        assert "watched_seconds" in (header(record, "detail") or "")


class TestConflictingDuplicate:
    """Finding 10: the same event_id with another payload is a conflict, not a duplicate."""

    async def test_conflict_counted_and_dead_lettered(
        self, kafka_settings: Settings, topics: Topics
    ) -> None:
        """Counted as conflict, dead-lettered conflicting_duplicate; the first version stays."""
        settings = fast(kafka_settings)
        db = Db(settings.database.url)
        key = b"dup"
        at = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)
        original = watch("c-1", "dup", "m1", at)
        same = {**original, "watched_seconds": 30.0}  # same user, item and time: a duplicate
        other = watch("c-1", "dup", "m2", at)  # another item: the producers disagree
        async with producer(settings.kafka.bootstrap) as client, guarded_consumer(settings) as g:
            await produce(client, topics.watch_events, [encode(original)], key=key)
            await g.wait_for(lambda: db.has("c-1"), within=VISIBLE_WITHIN, what="c-1 stored")
            before = message_counts()
            # one at a time: each meets the stored version, not a repeat inside its own batch
            placed = await produce(client, topics.watch_events, [encode(same)], key=key)
            await g.wait_for(lambda: _counted(before, "duplicate", 1), within=VISIBLE_WITHIN,
                             what="the true duplicate was counted")  # fmt: skip
            placed += await produce(client, topics.watch_events, [encode(other)], key=key)
            await _sentinel(g, db, client, settings, key)
            # a batch is counted after its transaction commits (and its dead letters are sent)
            await g.wait_for(lambda: _counted(before, "conflict", 1), within=VISIBLE_WITHIN,
                             what="the conflict was counted")  # fmt: skip
            await g.wait_for(lambda: _counted(before, "processed", 1), within=VISIBLE_WITHIN,
                             what="the sentinel was counted")  # fmt: skip
            counted = counted_since(before)
            dead = dead_letters_by_offset(
                await read_all(settings.kafka.bootstrap, topics.dead_letter), topics.watch_events
            )
        row = await db.row("c-1")
        assert row is not None
        assert (row["user_id"], row["item_id"], row["occurred_at"]) == ("dup", "m1", at)
        # Delivery is at least once: a rebalance on a loaded machine may redeliver a batch, and
        # a redelivered record is counted (and dead-lettered) again. Stored once, always.
        assert counted.get("processed") == 1, f"reco_consumer_messages_total counted {counted}"
        assert counted.get("duplicate", 0) >= 1, counted
        assert counted.get("conflict", 0) >= 1, counted
        assert set(counted) <= {"processed", "duplicate", "conflict"}, counted
        assert placed[0][1] not in dead, "a true duplicate was dead-lettered"
        records = dead.get(placed[1][1], [])
        assert records, "the conflicting duplicate was not dead-lettered"
        for record in records:
            assert (header(record, "reason"), record.value) == (
                "conflicting_duplicate", encode(other)
            )  # fmt: skip


async def _counted(before: dict[str, float], outcome: str, n: int) -> bool:
    return counted_since(before).get(outcome, 0) >= n


class TestPermanentStoreError:
    """A batch whose store fails permanently is split: the poison is unprocessable, the rest stored."""

    async def test_poison_split_out_of_its_batch(
        self, kafka_settings: Settings, topics: Topics
    ) -> None:
        """A row PostgreSQL refuses (SQLSTATE 22003, from a trigger) dead-letters only that event."""
        settings = fast(kafka_settings)
        db = Db(settings.database.url)
        await _refuse_event_ids_like(db, "poison%")
        key = b"split"
        at = now()
        events = [watch(f"s-{n}", "split", f"m{n}", at) for n in range(5)]
        events[2] = watch("poison-1", "split", "m9", at)
        values = [encode(e) for e in events]
        before = message_counts()
        async with producer(settings.kafka.bootstrap) as client:
            # produced before the consumer starts, so that they are fetched as one batch
            placed = await produce(client, topics.watch_events, values, key=key)
            async with guarded_consumer(settings) as g:
                await _sentinel(g, db, client, settings, key)
                # a batch is counted after its transaction commits (and its dead letters are sent)
                await g.wait_for(lambda: _counted(before, "processed", 5), within=VISIBLE_WITHIN,
                                 what="the stored events were counted")  # fmt: skip
                counted = counted_since(before)
            dead = dead_letters_by_offset(
                await read_all(settings.kafka.bootstrap, topics.dead_letter), topics.watch_events
            )
        assert await db.stored(e["event_id"] for e in events) == {"s-0", "s-1", "s-3", "s-4"}
        records = dead[placed[2][1]]  # at least once (a redelivered batch rejects it again)
        for record in records:
            assert header(record, "reason") == "unprocessable"
            assert "22003" in (header(record, "detail") or "")
        assert counted.get("processed") == 5, f"reco_consumer_messages_total counted {counted}"
        assert counted.get("unprocessable", 0) >= 1, counted
        assert set(counted) <= {"processed", "unprocessable", "duplicate"}, counted


async def _refuse_event_ids_like(db: Db, pattern: str) -> None:
    """A trigger in the test's own database: inserting such an event raises SQLSTATE 22003."""
    await db.execute(f"""
        CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF NEW.event_id LIKE '{pattern}' THEN
                RAISE EXCEPTION 'refused by the test' USING ERRCODE = '22003';
            END IF;
            RETURN NEW;
        END $$;
        CREATE TRIGGER refuse_poison BEFORE INSERT ON watch_events
            FOR EACH ROW EXECUTE FUNCTION refuse_poison();
    """)  # fmt: skip


class TestDeadLetterRejected:
    """Finding 11: a dead-letter send that can never succeed is not retried forever.

    The Tansu dev broker does not enforce a topic's ``max.message.bytes``
    (measured: a topic created with ``max.message.bytes=1000`` through the
    admin client reports it in DescribeConfigs and accepts records of 1001 B,
    5 kB, 1.5 MB and 6 MB). Two real permanent rejections remain: aiokafka's
    own size check, which raises the same ``MessageSizeTooLargeError`` a
    Kafka broker's MESSAGE_TOO_LARGE answer does, and a dead-letter topic
    name the broker refuses (INVALID_TOPIC in its metadata answer).
    """

    async def test_dead_letter_over_the_topics_max_message_bytes(
        self, kafka_settings: Settings, topics: Topics
    ) -> None:
        """The issue's scenario: a DLQ copy over the DLQ topic's max.message.bytes does not wedge.

        Skipped where the broker accepts such a record (Tansu 0.6: measured,
        see the class docstring); on a broker that enforces the limit it is
        the real test.
        """
        settings = fast(kafka_settings)
        await _create_topic(
            settings.kafka.bootstrap, topics.dead_letter, {"max.message.bytes": "1000"}
        )
        big = b"[" * 5000  # not JSON, 5000 bytes: under the consumer's limit, over the DLQ topic's
        async with producer(settings.kafka.bootstrap) as client:
            if await _accepted(client, topics.dead_letter, big):
                pytest.skip("the broker does not enforce max.message.bytes (Tansu does not)")
        db = Db(settings.database.url)
        key = b"too-big"
        async with producer(settings.kafka.bootstrap) as client, guarded_consumer(settings) as g:
            await produce(client, topics.watch_events, [big], key=key)
            await _sentinel(g, db, client, settings, key)
            g.assert_alive()

    async def test_dead_letter_too_large_even_without_its_value(
        self, kafka_settings: Settings, topics: Topics
    ) -> None:
        """A record whose key alone exceeds the dead-letter request limit does not wedge."""
        settings = fast(kafka_settings, consumer_dlq_max_request_bytes=4096)
        db = Db(settings.database.url)
        key = b"k" * 5000  # the dead-letter copy keeps the key: over 4096 even without the value
        async with producer(settings.kafka.bootstrap) as client, guarded_consumer(settings) as g:
            await produce(client, topics.watch_events, [b"not json"], key=key)
            await _sentinel(g, db, client, settings, key)
            g.assert_alive()


async def _create_topic(bootstrap: str, name: str, config: dict[str, str]) -> None:
    admin = clients.admin(KafkaSettings(bootstrap=bootstrap))
    await admin.start()
    try:
        response = await admin.create_topics(
            [NewTopic(name, num_partitions=1, replication_factor=1, topic_configs=config)]
        )
    finally:
        await admin.close()
    assert [e[1] for e in response.topic_errors] == [0]


async def _accepted(client: Any, topic: str, value: bytes) -> bool:
    """Does the broker take ``value`` on ``topic``? (A rejection is a KafkaError from the ack.)"""
    try:
        with anyio.fail_after(10):
            await (await client.send(topic, value, key=b"probe"))
    except KafkaError:
        return False
    return True
