"""Engine benchmark: apply_events throughput and for_user latency on a ratings file.

Usage: python bench/engine.py [RATINGS]  (default: ../shared/datasets/ml-100k/ml-100k.inter)

Starts an embedded PostgreSQL (fsync off), replays the file's training split
in 1000-event batches through the consumer's write path, and prints
per-statement timings of apply_events, then for_user latency percentiles
for every user, next to a trivial `SELECT 1` round trip measured in the same
run (the ceiling); then runs `reco train` on the replayed history and
measures for_user again with the trained model mixed in.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import anyio
import asyncpg
from reco_dev.devstack.stack import DEV_DATABASE, embedded_stack
from reco_dev.evaluation import data
from reco_dev.evaluation.replay import ITEMS_SQL, event_of

from reco.db import migrations
from reco.db.pool import Database
from reco.db.queries import watch_events
from reco.engine import ingest, queries, scoring
from reco.engine.recommender import Recommender
from reco.folder import folding
from reco.observability.readiness import Readiness
from reco.settings import Settings
from reco.training import job

DEFAULT = Path(__file__).resolve().parents[3] / "shared/datasets/ml-100k/ml-100k.inter"
BATCH = 1000


class Timed:
    """Wraps a connection and accumulates time per SQL statement (first line as a label)."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self.times: dict[str, list[float]] = defaultdict(list)

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.conn, name)
        if name not in {"fetch", "execute", "fetchrow", "fetchval"}:
            return method

        async def timed(sql: str, *args: Any) -> Any:
            began = time.perf_counter()
            try:
                return await method(sql, *args)
            finally:
                label = " ".join(sql.split())[:60]
                self.times[label].append(time.perf_counter() - began)

        return timed


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def main(url: str, path: Path) -> None:
    conn = await asyncpg.connect(url)
    await migrations.migrate(conn, migrations.default_dir())
    ratings = data.read_ratings(path)
    split = data.split(ratings)
    items = data.catalogue(ratings, data.read_items(data.items_path(path)))
    await conn.execute(
        ITEMS_SQL,
        [i.item_id for i in items],
        [i.title for i in items],
        [json.dumps(list(i.genres)) for i in items],
    )
    events = [event_of(r) for r in data.replay_order(split.train)]
    timed = Timed(conn)
    batch_times, ceiling = [], []
    for start in range(0, len(events), BATCH):
        chunk = events[start : start + BATCH]
        async with conn.transaction():
            began = time.perf_counter()
            await watch_events.insert_new(conn, chunk)
            stored = time.perf_counter()
            await ingest.apply_events(timed, chunk)  # type: ignore[arg-type]
            ceiling.append(stored - began)
            batch_times.append(time.perf_counter() - stored)
    began = time.perf_counter()
    await folding.fold_all(conn, statement_timeout=600)
    fold_seconds = time.perf_counter() - began
    total = sum(batch_times)
    print(
        f"apply_events: {len(events)} events in {len(batch_times)} batches of {BATCH}: "
        f"{total:.2f} s, {len(events) / total:,.0f} events/s; per batch "
        f"p50 {pct(batch_times, 0.5):.1f} ms p99 {pct(batch_times, 0.99):.1f} ms"
    )
    print(f"  then one fold of every batch's co-occurrence increments: {fold_seconds:.2f} s")
    print(
        f"  ceiling, the consumer's own INSERT of the same batch into watch_events: "
        f"p50 {pct(ceiling, 0.5):.1f} ms; apply_events / insert = "
        f"{statistics.median(batch_times) / statistics.median(ceiling):.1f}x"
    )
    for label, values in timed.times.items():
        print(f"  {sum(values) / len(values) * 1000:7.1f} ms mean  {label}")
    stats = await conn.fetch(
        "SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables"
        " WHERE relname IN ('user_history', 'item_popularity', 'item_cooccurrence')"
        " ORDER BY relname"
    )
    for r in stats:
        print(
            f"  {r['relname']}: {r['n_tup_ins']} inserts, {r['n_tup_upd']} updates "
            f"({r['n_tup_hot_upd']} HOT)"
        )
    await read_side(conn, url, sorted(split.train))
    await conn.close()


async def read_side(conn: asyncpg.Connection, url: str, users: list[str]) -> None:
    ceiling, hist, neigh, score = [], [], [], []
    trending = await queries.trending(conn, limit=500)
    for user in users:
        t0 = time.perf_counter()
        await conn.fetchval("SELECT 1")
        t1 = time.perf_counter()
        _, read = await queries.history(conn, user)
        history = read or []
        t2 = time.perf_counter()
        found, infos = await queries.neighbours(conn, scoring.seeds_of(history), scoring.NEIGHBOURS)
        t3 = time.perf_counter()
        scoring.recommend(history, found, infos, trending, scoring.Request(10))
        t4 = time.perf_counter()
        ceiling.append(t1 - t0)
        hist.append(t2 - t1)
        neigh.append(t3 - t2)
        score.append(t4 - t3)
    for name, values in [
        ("SELECT 1 (ceiling)", ceiling),
        ("history query", hist),
        ("neighbours (uncached)", neigh),
        ("scoring (Python)", score),
    ]:
        report(name, values)
    await for_user(url, users)
    await for_user(url, users, "live only, every list scored", list_cache=0)
    t0 = time.perf_counter()
    trained = await job.train(conn, Settings(database_url=url, train_evaluate=False))
    assert trained is not None
    print(f"  reco train (in process, one fit): {time.perf_counter() - t0:.1f} s, "
          f"version {trained.version}, {trained.items} items")  # fmt: skip
    await for_user(url, users, "with the trained model")
    await for_user(url, users, "with the trained model, every list scored", list_cache=0)


async def for_user(url: str, users: list[str], label: str = "", list_cache: int = 20_000) -> None:
    """Recommender.for_user end to end (with its per-process caches), random users;
    ``list_cache=0`` scores every list (the cost of a user whose history just changed)."""
    settings = Settings.from_flat(
        database_url=url, recs_cache_ttl=1.0, recs_list_cache_size=list_cache
    )
    database = Database(settings.database, Readiness(), migrate=settings.should_migrate_on_start)
    await database.open()
    recommender = Recommender(database, settings.engine)
    rng = random.Random(7)
    took = []
    began = time.perf_counter()
    for _ in range(5000):
        t0 = time.perf_counter()
        await recommender.for_user(rng.choice(users), limit=10)
        took.append(time.perf_counter() - t0)
    elapsed = time.perf_counter() - began
    name = f"for_user x{len(took)} ({len(took) / elapsed:,.0f}/s, 1 client)"
    report(f"{name} {label}".strip(), took)
    await database.aclose()


def report(name: str, values: list[float]) -> None:
    print(
        f"  {name:<40} p50 {pct(values, 0.5):6.2f} ms  p99 {pct(values, 0.99):6.2f} ms  "
        f"mean {statistics.fmean(values) * 1000:6.2f} ms"
    )


if __name__ == "__main__":
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT
    with embedded_stack(durable=False, broker=False) as (postgres, _):
        anyio.run(main, postgres.url(DEV_DATABASE), path)
