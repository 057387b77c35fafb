"""The chaos workload: its own process, steady load, every operation recorded.

``python -m tests.chaos.workload CONFIG.json`` runs for ``seconds`` and then
writes one JSON line per operation to ``output``:

- ``event``: a watch event sent to Kafka (key = user id) or through
  ``POST /v1/events``, with whether and when it was acknowledged (broker ack,
  or 202); ids are unique (``<scenario>-<path>-<n>``);
- ``dup``: an acknowledged event sent again on its path (no second effect allowed);
- ``bad``: a record meant to be dead-lettered (not JSON), key ``bad-<scenario>-<n>``;
- ``read``: a recommendations, similar or popular request: instance, status,
  the ``recommendation_id`` served;
- ``item``: a catalogue upsert and its status.

Each user's events are sent one at a time, in time order, on one path (users
are split between Kafka and HTTP), so that each user's events arrive in time
order, which ``reco check-aggregates`` needs to recompute co-occurrence exactly
(reco/engine/audit.py). A user whose event went unacknowledged is retired: that
event may still land later (an unacknowledged send is unknown, not failed) and
nothing is sent after it for that user.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import random
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import attrs
import cattrs
import httpx

from reco.kafka import clients
from reco.settings import KafkaSettings

SEND_DEADLINE = 6.0  # a broker ack or an HTTP answer later than this counts as unacknowledged
IN_FLIGHT = 64  # operations at once; a tick finding none free is skipped (and counted)
USERS_PER_PATH = 24
ITEMS = 120


@attrs.frozen
class Config:
    scenario: str
    seconds: float
    output: str
    bootstrap: str
    topic: str
    token: str
    instances: dict[str, str]  # name -> base URL
    kafka_rate: float = 40.0  # events per second
    http_rate: float = 10.0  # requests per second (1 or 2 events each)
    read_rate: float = 15.0
    item_rate: float = 2.0
    bad_rate: float = 0.5
    dup_share: float = 0.1
    seed: int = 0


@attrs.define
class User:
    name: str
    last: dt.datetime | None = None
    busy: bool = False


class Workload:
    def __init__(self, config: Config) -> None:
        self.cfg = config
        self.rng = random.Random(config.seed)
        self.records: list[dict[str, Any]] = []
        self.in_flight = 0
        self.counter = 0
        self.users: dict[str, list[User]] = {"kafka": [], "http": []}
        self.acked: dict[str, list[dict[str, Any]]] = {"kafka": [], "http": []}
        self.names = sorted(config.instances)
        self.http = httpx.AsyncClient(timeout=SEND_DEADLINE,
                                      headers={"Authorization": f"Bearer {config.token}"})  # fmt: skip

    # --- ids, users, items --------------------------------------------------------
    def next_id(self, kind: str) -> str:
        self.counter += 1
        return f"{self.cfg.scenario}-{kind}-{self.counter}"

    def idle_user(self, path: str) -> User | None:
        pool = self.users[path]
        while len(pool) < USERS_PER_PATH:
            pool.append(User(self.next_id(f"{path[0]}u")))
        idle = [u for u in pool if not u.busy]
        return self.rng.choice(idle) if idle else None

    def retire(self, path: str, user: User) -> None:
        self.users[path].remove(user)

    def item(self) -> str:
        return f"i{int(self.rng.paretovariate(1.1)) % ITEMS}"

    def instance(self) -> tuple[str, str]:
        name = self.rng.choice(self.names)
        return name, self.cfg.instances[name]

    def event(self, path: str, user: User) -> dict[str, Any]:
        now = dt.datetime.now(dt.UTC)
        if user.last is not None and now <= user.last:
            now = user.last + dt.timedelta(microseconds=1)
        user.last = now
        return {"event_id": self.next_id(path[0]), "user_id": user.name, "item_id": self.item(),
                "occurred_at": now.isoformat(), "watched_seconds": 60.0, "completed": True}  # fmt: skip

    def record(self, kind: str, **fields: Any) -> dict[str, Any]:
        entry = {"kind": kind, **fields}
        self.records.append(entry)
        return entry

    # --- operations -------------------------------------------------------------
    async def produce(self, key: bytes, value: bytes) -> bool:
        """Send one record; True once the broker acknowledged it within the deadline."""
        with anyio.move_on_after(SEND_DEADLINE):
            try:
                future = await self.producer.send(self.cfg.topic, value=value, key=key)
                await asyncio.shield(future)
            except Exception:  # noqa: BLE001 - whatever fails, the send is unacknowledged
                return False
            return True
        return False

    async def kafka_event(self) -> None:
        user = self.idle_user("kafka")
        if user is None:
            return
        user.busy = True
        event = self.event("kafka", user)
        entry = self.record("event", path="kafka", sent=time.time(), acked=False, **event)
        acked = await self.produce(user.name.encode(), json.dumps(event).encode())
        entry.update(acked=acked, ack=time.time())
        user.busy = False
        if acked:
            self.acked["kafka"].append(event)
        else:
            self.retire("kafka", user)

    async def post_events(self, events: list[dict[str, Any]]) -> tuple[str, int | None]:
        name, url = self.instance()
        try:
            response = await self.http.post(f"{url}/v1/events", json={"events": events})
        except httpx.HTTPError:
            return name, None
        return name, response.status_code

    async def http_events(self) -> None:
        user = self.idle_user("http")
        if user is None:
            return
        user.busy = True
        events = [self.event("http", user) for _ in range(self.rng.choice((1, 2)))]
        entries = [self.record("event", path="http", sent=time.time(), acked=False, **e)
                   for e in events]  # fmt: skip
        name, status = await self.post_events(events)
        for entry in entries:
            entry.update(acked=status == 202, ack=time.time(), status=status, instance=name)
        user.busy = False
        if status == 202:
            self.acked["http"] += events
        else:
            self.retire("http", user)

    async def duplicate(self) -> None:
        path = self.rng.choice(("kafka", "http"))
        if not self.acked[path]:
            return
        event = self.rng.choice(self.acked[path])
        if path == "kafka":
            acked = await self.produce(event["user_id"].encode(), json.dumps(event).encode())
            self.record("dup", path=path, event_id=event["event_id"], acked=acked)
        else:
            name, status = await self.post_events([event])
            self.record("dup", path=path, event_id=event["event_id"], acked=status == 202,
                        instance=name, status=status)  # fmt: skip

    async def bad(self) -> None:
        key = self.next_id("bad")
        entry = self.record("bad", key=key, sent=time.time(), acked=False)
        entry["acked"] = await self.produce(key.encode(), b"{not json")

    async def read(self) -> None:
        name, url = self.instance()
        choice = self.rng.random()
        if choice < 0.5:
            pool = self.users["kafka"] + self.users["http"]
            user = self.rng.choice(pool).name if pool else "nobody"
            endpoint, path = "recommendations", f"/v1/users/{user}/recommendations?limit=10"
        elif choice < 0.8:
            endpoint, path = "similar", f"/v1/items/{self.item()}/similar?limit=10"
        else:
            endpoint, path = "popular", "/v1/items/popular?limit=10"
        entry = self.record("read", endpoint=endpoint, instance=name, sent=time.time(),
                            status=None, rid=None)  # fmt: skip
        try:
            response = await self.http.get(url + path)
        except httpx.HTTPError:
            entry["done"] = time.time()
            return
        entry.update(status=response.status_code, done=time.time())
        if response.status_code == 200:
            entry["rid"] = response.json().get("recommendation_id")

    async def upsert_item(self) -> None:
        name, url = self.instance()
        item = self.item()
        body = {"title": f"title {item}", "genres": [self.rng.choice(("drama", "comedy"))],
                "active": True, "attributes": {}}  # fmt: skip
        try:
            response = await self.http.put(f"{url}/v1/items/{item}", json=body)
            status: int | None = response.status_code
        except httpx.HTTPError:
            status = None
        self.record("item", instance=name, status=status, sent=time.time())

    # --- the loop ---------------------------------------------------------------
    async def steady(self, rate: float, operation: Callable[[], Awaitable[None]],
                     tg: anyio.abc.TaskGroup, until: float) -> None:  # fmt: skip
        """Start ``operation`` ``rate`` times a second until ``until`` (monotonic)."""
        if rate <= 0:
            return
        tick = 1.0 / rate
        next_at = time.monotonic()
        while next_at < until:
            await anyio.sleep(max(0.0, next_at - time.monotonic()))
            next_at += tick
            if self.in_flight >= IN_FLIGHT:
                self.record("skipped", sent=time.time())
                continue
            self.in_flight += 1
            tg.start_soon(self._limited, operation)

    async def _limited(self, operation: Callable[[], Awaitable[None]]) -> None:
        try:
            await operation()
        finally:
            self.in_flight -= 1

    async def run(self) -> None:
        kafka = KafkaSettings(bootstrap=self.cfg.bootstrap, request_timeout=5.0)
        self.producer = clients.producer(kafka, linger=0.005)
        await self.producer.start()
        try:
            until = time.monotonic() + self.cfg.seconds
            # ops outlives loops: the operations in flight finish after the last tick.
            async with anyio.create_task_group() as ops, anyio.create_task_group() as loops:
                for rate, op in ((self.cfg.kafka_rate, self.kafka_event),
                                     (self.cfg.http_rate, self.http_events),
                                     (self.cfg.read_rate, self.read),
                                     (self.cfg.item_rate, self.upsert_item),
                                     (self.cfg.bad_rate, self.bad),
                                     (self.dup_rate(), self.duplicate)):  # fmt: skip
                    loops.start_soon(self.steady, rate, op, ops, until)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(SEND_DEADLINE):
                await self.producer.stop()
            await self.http.aclose()
            self.write()

    def dup_rate(self) -> float:
        return (self.cfg.kafka_rate + 1.5 * self.cfg.http_rate) * self.cfg.dup_share

    def write(self) -> None:
        with Path(self.cfg.output).open("w") as out:
            out.writelines(json.dumps(entry) + "\n" for entry in self.records)


def main(argv: list[str]) -> int:
    config = cattrs.Converter(forbid_extra_keys=True).structure(
        json.loads(Path(argv[0]).read_text()), Config
    )
    anyio.run(Workload(config).run, backend="asyncio")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
