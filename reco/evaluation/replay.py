"""Feed the split's training half to the service the way production does, then ask it.

Writes go through the consumer's own path: one transaction per batch that
inserts the events into ``watch_events`` (a duplicate event id is skipped)
and hands only the new ones to ``apply_events``. Swapping this for producing
to Kafka means replacing :func:`store_batch`'s caller, nothing else.
Recommendations come over HTTP when the service has the endpoint, else from
the Recommender in-process (``Asker``).
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import urllib.parse
from collections.abc import Sequence

import anyio
import asyncpg

from reco.engine.ingest import store_events
from reco.engine.recommender import Recommender
from reco.evaluation.data import Item, Rating
from reco.evaluation.progress import Progress
from reco.events import WatchEvent

BATCH = 1000
ITEM_BATCH = 1000

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
    event_id = f"eval:{rating.user_id}:{rating.item_id}:{rating.timestamp:g}"
    return WatchEvent(event_id[:128], rating.user_id, rating.item_id, at)


async def store_batch(conn: asyncpg.Connection, events: Sequence[WatchEvent]) -> int:
    """What the consumer does with one batch, in one transaction; how many were new."""
    async with conn.transaction():
        return len(await store_events(conn, events))


async def load_items(conn: asyncpg.Connection, items: Sequence[Item]) -> None:
    progress = Progress("catalogue", len(items))
    for start in range(0, len(items), ITEM_BATCH):
        chunk = items[start : start + ITEM_BATCH]
        await conn.execute(ITEMS_SQL, [i.item_id for i in chunk], [i.title for i in chunk],
                           [json.dumps(list(i.genres)) for i in chunk])  # fmt: skip
        progress.advance(len(chunk))
    progress.close()


async def replay(conn: asyncpg.Connection, ratings: Sequence[Rating]) -> int:
    """Store every rating as a watch event, in the given (time) order; return how many were new."""
    progress = Progress("replay", len(ratings))
    new = 0
    for start in range(0, len(ratings), BATCH):
        chunk = ratings[start : start + BATCH]
        new += await store_batch(conn, [event_of(r) for r in chunk])
        progress.advance(len(chunk))
    progress.close()
    return new


class Asker:
    """Ten recommendations for a user: over HTTP at ``base_url``, or in-process."""

    def __init__(self, base_url: str | None, recommender: Recommender | None) -> None:
        self.base_url = base_url
        self.recommender = recommender
        self._conn: http.client.HTTPConnection | None = None
        self.via = f"HTTP {base_url}" if base_url else "the Recommender in-process"

    async def ask(self, user_id: str, limit: int) -> list[str]:
        if self.base_url is None:
            assert self.recommender is not None
            found = await self.recommender.for_user(user_id, limit=limit)
            return [s.item_id for s in found.items]
        status, body = await anyio.to_thread.run_sync(self._get, user_id, limit)
        if status != 200:
            raise RuntimeError(f"GET recommendations for {user_id!r}: HTTP {status}")
        return [item["item_id"] for item in json.loads(body)["items"]]

    async def has_endpoint(self) -> bool:
        """Whether the service answers the read API (else the caller asks in-process)."""
        if self.base_url is None:
            return False
        status, _ = await anyio.to_thread.run_sync(self._get, "reco-evaluate-probe", 1)
        return status == 200

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    def _get(self, user_id: str, limit: int) -> tuple[int, bytes]:
        assert self.base_url is not None
        url = urllib.parse.urlsplit(self.base_url)
        if self._conn is None:
            self._conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port,
                                                    timeout=30)  # fmt: skip
        path = f"{url.path.rstrip('/')}/v1/users/{urllib.parse.quote(user_id, safe='')}"
        self._conn.request("GET", f"{path}/recommendations?limit={limit}")
        response = self._conn.getresponse()
        return response.status, response.read()


async def ask_all(asker: Asker, users: Sequence[str], limit: int) -> dict[str, list[str]]:
    progress = Progress(f"recommend via {asker.via}", len(users))
    lists = {}
    for user in users:
        lists[user] = await asker.ask(user, limit)
        progress.advance()
    progress.close()
    return lists
