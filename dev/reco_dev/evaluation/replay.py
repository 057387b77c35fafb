"""Feed the split's training half to a running service the way production does, then ask it.

Everything goes through the service's public edges: the catalogue through
``POST /v1/items``, the watch events to the watch-events topic (key = user
id, JSON value per docs/events.md, in time order) or through
``POST /v1/events`` (outbox, relay, Kafka), and the recommendations through
``GET /v1/users/{id}/recommendations``. The consumer stores the events; we
know it has when its ``reco_consumer_messages_total`` has grown by as many.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import math
from collections.abc import Sequence
from typing import Any, TypeVar

import anyio
import attrs
from aiokafka import AIOKafkaProducer

from reco.events import WatchEvent
from reco_dev.evaluation.client import Client, metric_samples, metric_total, recommendations_path
from reco_dev.evaluation.data import Item, Rating
from reco_dev.evaluation.progress import Progress

BATCH = 1000  # events per POST /v1/events, and produced between waits for the acks
ITEM_BATCH = 1000  # the API's limit per POST /v1/items
CONNECTIONS = 8  # concurrent recommendation requests
CONSUMED = "reco_consumer_messages_total"
FOLDS = "reco_cooccurrence_folds_total"
POLL = 0.2  # seconds between looks at the consumer's counter
T = TypeVar("T")


# Direct writes, for bench/engine.py and test seeding only: the evaluation
# itself goes through the service (below).
ITEMS_SQL = """
INSERT INTO items (item_id, title, genres)
SELECT i.item_id, i.title, ARRAY(SELECT jsonb_array_elements_text(i.genres))
FROM unnest($1::text[], $2::text[], $3::jsonb[]) AS i(item_id, title, genres)
ON CONFLICT (item_id) DO UPDATE SET title = EXCLUDED.title, genres = EXCLUDED.genres,
    active = true, updated_at = now()
"""


def event_of(rating: Rating) -> WatchEvent:
    """A deterministic event id, so replaying the same file twice stores nothing new."""
    at = dt.datetime.fromtimestamp(rating.timestamp, tz=dt.UTC)
    stamp = int(rating.timestamp) if rating.timestamp.is_integer() else repr(rating.timestamp)
    event_id = f"eval:{rating.user_id}:{rating.item_id}:{stamp}"
    return WatchEvent(event_id[:128], rating.user_id, rating.item_id, at)


def item_json(item: Item) -> dict[str, Any]:
    return {"item_id": item.item_id, "title": item.title[:1000], "genres": list(item.genres)}


def chunks(values: Sequence[T], size: int) -> list[Sequence[T]]:
    return [values[start : start + size] for start in range(0, len(values), size)]


async def load_items(client: Client, items: Sequence[Item]) -> None:
    """Upsert the catalogue, 1000 items per ``POST /v1/items``."""
    progress = Progress("catalogue", len(items))
    for chunk in chunks(items, ITEM_BATCH):
        body = {"items": [item_json(i) for i in chunk]}
        await anyio.to_thread.run_sync(client.json, "POST", "/v1/items", body)
        progress.advance(len(chunk))
    progress.close()


async def produce(producer: AIOKafkaProducer, topic: str, ratings: Sequence[Rating]) -> int:
    """Produce every rating as a watch event, in the given (time) order; return how many.

    Same key, same partition: each user's events reach the consumer in order.
    """
    progress = Progress("produce", len(ratings))
    for chunk in chunks(ratings, BATCH):
        futures = []
        for rating in chunk:
            value = json.dumps(event_of(rating).to_json(), separators=(",", ":")).encode()
            futures.append(await producer.send(topic, value, key=rating.user_id.encode()))
        for future in futures:
            await future
        progress.advance(len(chunk))
    progress.close()
    return len(ratings)


async def post_events(client: Client, ratings: Sequence[Rating]) -> int:
    """``POST /v1/events`` in time order, 1000 per call; return how many were new to the outbox."""
    progress = Progress("post events", len(ratings))
    new = 0
    for chunk in chunks(ratings, BATCH):
        body = {"events": [event_of(r).to_json() for r in chunk]}
        post = functools.partial(client.json, "POST", "/v1/events", body, expect=202)
        answer = await anyio.to_thread.run_sync(post)
        new += int(answer["accepted"]) - int(answer["duplicates"])
        progress.advance(len(chunk))
    progress.close()
    return new


async def consumed(client: Client) -> int:
    """Messages the service's consumer has handled so far (stored, duplicate or invalid)."""
    return math.floor(await _metric(client, CONSUMED))


async def _metrics(client: Client) -> str:
    status, body = await anyio.to_thread.run_sync(client.request, "GET", "/metrics")
    if status != 200:
        raise RuntimeError(f"GET /metrics: HTTP {status}")
    return str(body.decode())


async def _metric(client: Client, name: str) -> float:
    return metric_total(await _metrics(client), name)


async def wait_folded(client: Client, cache_ttl: float) -> None:
    """Wait until the pair increments of everything stored so far are in the neighbour lists.

    For each fold loop (one ``part`` label each), the second fold the service
    makes from now started after every batch stored until now had committed;
    then its model cache needs up to ``cache_ttl`` to drop the lists that changed.
    """
    first = metric_samples(await _metrics(client), FOLDS)
    now: dict[str, float] = {}
    while not now or any(n < first.get(label, 0.0) + 2 for label, n in now.items()):
        await anyio.sleep(POLL / 4)
        now = metric_samples(await _metrics(client), FOLDS)
    await anyio.sleep(cache_ttl)


async def wait_consumed(client: Client, before: int, expected: int) -> None:
    """Wait (the caller's deadline) until the consumer has handled ``expected`` more messages."""
    progress = Progress("consumer stored", expected)
    done = 0
    while done < expected:
        await anyio.sleep(POLL)
        now = min(await consumed(client) - before, expected)
        progress.advance(now - done)
        done = now
    progress.close()


@attrs.frozen
class Answer:
    """One served list: its items, whether any carries a personal reason, its algorithm."""

    items: list[str]
    personal: bool
    algorithm: str


PERSONAL = "because_you_watched"


async def ask_all(base_url: str, users: Sequence[str], limit: int) -> dict[str, Answer]:
    """``limit`` recommendations per user over HTTP, :data:`CONNECTIONS` requests at a time."""
    progress = Progress(f"recommend via HTTP {base_url}", len(users))
    lists: dict[str, Answer] = {}
    send, receive = anyio.create_memory_object_stream[str](len(users))
    for user in users:
        send.send_nowait(user)
    send.close()

    async def worker() -> None:
        client = Client(base_url)
        try:
            async for user in receive:
                answer = await anyio.to_thread.run_sync(
                    client.json, "GET", recommendations_path(user, limit)
                )
                entries = answer["items"]
                lists[user] = Answer([e["item_id"] for e in entries],
                                     any(e["reason"]["type"] == PERSONAL for e in entries),
                                     str(answer["algorithm"]))  # fmt: skip
                progress.advance()
        finally:
            client.close()

    async with receive, anyio.create_task_group() as tg:
        for _ in range(min(CONNECTIONS, max(len(users), 1))):
            tg.start_soon(worker)
    progress.close()
    return lists


async def wait_model(client: Client, user: str, cache_ttl: float) -> bool:
    """Wait until ``user``'s list names a trained model version (``...@v<n>``): the
    service's model cache has seen the new version; False if not within a bound."""
    with anyio.move_on_after(10 * cache_ttl + 10):
        while True:
            answer = await anyio.to_thread.run_sync(
                client.json, "GET", recommendations_path(user, 1)
            )
            if "@v" in str(answer["algorithm"]):
                return True
            await anyio.sleep(POLL / 4)
    return False
