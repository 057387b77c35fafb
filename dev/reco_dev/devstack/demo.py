"""``reco dev --demo``: a synthetic catalogue and watch history, generated here and stored
through the engine's write path, so that the first request already has real lists.

Generation is a pure function of a seed and a clock (:func:`generate`): items with one or
two genres and a Zipf popularity (the item of rank r is watched in proportion to
``1 / r ** ZIPF_EXPONENT``), users with one or two favourite genres who mostly watch
within them. :func:`seed_if_empty` stores it on an empty database only, through the same
functions the consumer uses (:func:`reco.engine.ingest.store_events`: history,
popularity and co-occurrence increments), then folds the increments, so aggregates,
co-occurrence and the folds are the real ones. Nothing is read from the network.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence

import anyio
import asyncpg
import attrs

from reco.db import admin, migrations
from reco.db.pool import connect
from reco.db.queries.items import Item, upsert_items
from reco.engine import ingest
from reco.events import WatchEvent
from reco.folder import folding
from reco.settings import Settings

SEED = 16
ITEMS = 300
USERS = 300
ZIPF_EXPONENT = 1.1
TASTE_SHARE = 0.8  # a user's watches within their favourite genres
WATCHES_PER_USER = (4, 40)
HISTORY_DAYS = 30
STORE_CHUNK = 1000  # events per store_events call, as a consumer batch would be

GENRES = (
    "drama", "comedy", "thriller", "documentary", "animation", "sci-fi", "romance", "horror",
)  # fmt: skip
_ADJECTIVES = (
    "Silent", "Last", "Hidden", "Golden", "Broken", "Distant", "Electric", "Quiet", "Northern",
    "Lost", "Burning", "Secret", "Endless", "Crimson", "Winter", "Paper",
)  # fmt: skip
_NOUNS = (
    "Harbour", "Signal", "Garden", "Orbit", "Letters", "Empire", "Tide", "Machine", "Circus",
    "Frontier", "Kitchen", "Lighthouse", "Archive", "Parade", "Forest", "Station",
)  # fmt: skip


@attrs.frozen
class DemoData:
    """A generated catalogue and watch history; ``tastes`` maps each user to their genres."""

    items: tuple[Item, ...]
    events: tuple[WatchEvent, ...]
    tastes: dict[str, tuple[str, ...]]

    @property
    def users(self) -> list[str]:
        return sorted(self.tastes)


def item_id(n: int) -> str:
    return f"demo-i{n:03d}"


def user_id(n: int) -> str:
    return f"demo-u{n:03d}"


def generate(
    now: dt.datetime, *, seed: int = SEED, items: int = ITEMS, users: int = USERS
) -> DemoData:
    """The same catalogue and history for the same arguments (events end before ``now``)."""
    rng = random.Random(seed)
    catalogue = _catalogue(rng, items)
    weights = _zipf_weights(rng, items)
    tastes: dict[str, tuple[str, ...]] = {}
    events: list[WatchEvent] = []
    for n in range(1, users + 1):
        user = user_id(n)
        tastes[user] = tuple(rng.sample(GENRES, rng.choice((1, 2))))
        picks = _picks(rng, catalogue, weights, tastes[user])
        events.extend(_watches(rng, user, picks, now))
    return DemoData(tuple(catalogue), tuple(events), tastes)


def _catalogue(rng: random.Random, count: int) -> list[Item]:
    out = []
    for n in range(1, count + 1):
        title = f"The {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)}"
        genres = tuple(rng.sample(GENRES, rng.choice((1, 1, 2))))
        attributes = {"year": rng.randint(1970, 2026), "demo": True}
        out.append(Item(item_id(n), title, genres, True, attributes))
    return out


def _zipf_weights(rng: random.Random, count: int) -> list[float]:
    """Item i's weight is 1 / rank ** s, the ranks a random permutation (ids say nothing)."""
    ranks = list(range(1, count + 1))
    rng.shuffle(ranks)
    return [1.0 / rank**ZIPF_EXPONENT for rank in ranks]


def _picks(
    rng: random.Random, catalogue: Sequence[Item], weights: Sequence[float],
    taste: tuple[str, ...],
) -> list[Item]:  # fmt: skip
    """Distinct items for one user: mostly within their genres, by popularity."""
    liked = [i for i, item in enumerate(catalogue) if set(item.genres) & set(taste)]
    wanted = rng.randint(*WATCHES_PER_USER)
    chosen: dict[int, None] = {}
    for _ in range(wanted * 4):  # bounded: duplicates are skipped, not retried forever
        if len(chosen) >= wanted:
            break
        pool = liked if liked and rng.random() < TASTE_SHARE else range(len(catalogue))
        index = rng.choices(list(pool), weights=[weights[i] for i in pool])[0]
        chosen.setdefault(index)
    return [catalogue[i] for i in chosen]


def _watches(
    rng: random.Random, user: str, picks: Sequence[Item], now: dt.datetime
) -> list[WatchEvent]:
    """One or two watches of each pick, at times spread over the last HISTORY_DAYS."""
    out = []
    for n, item in enumerate(picks):
        for repeat in range(1 if rng.random() < 0.85 else 2):
            ago = dt.timedelta(seconds=rng.uniform(60, HISTORY_DAYS * 86400))
            seconds = round(rng.uniform(120, 7200), 1)
            out.append(
                WatchEvent(
                    f"demo-e-{user}-{n}-{repeat}", user, item.item_id, now - ago,
                    watched_seconds=seconds, completed=rng.random() < 0.6,
                )
            )  # fmt: skip
    return out


async def is_empty(conn: asyncpg.Connection) -> bool:
    empty: bool = await conn.fetchval(
        "SELECT NOT EXISTS (SELECT 1 FROM items) AND NOT EXISTS (SELECT 1 FROM watch_events)"
    )
    return empty


async def seed_if_empty(conn: asyncpg.Connection, data: DemoData, *, fold_timeout: float) -> bool:
    """Store ``data`` when the catalogue and history are empty; True when it did.

    One transaction (a crash half-way leaves an empty database, which the next start
    seeds again), the events in time order through the consumer's write path.
    """
    async with conn.transaction():
        await conn.execute("LOCK TABLE items IN SHARE ROW EXCLUSIVE MODE")  # one seeder at once
        if not await is_empty(conn):
            return False
        await upsert_items(conn, data.items)
        ordered = sorted(data.events, key=lambda e: e.occurred_at)
        for start in range(0, len(ordered), STORE_CHUNK):
            await ingest.store_events(conn, ordered[start : start + STORE_CHUNK])
    await folding.fold_all(conn, statement_timeout=fold_timeout)
    return True


def example_user(data: DemoData) -> str:
    return data.users[0]


def unwatched_favourite(data: DemoData, user: str) -> str:
    """An item in ``user``'s genres they have not watched (the banner's POST example)."""
    watched = {e.item_id for e in data.events if e.user_id == user}
    taste = set(data.tastes[user])
    counts: dict[str, int] = {}
    for event in data.events:
        counts[event.item_id] = counts.get(event.item_id, 0) + 1
    candidates = [i for i in data.items if i.item_id not in watched and set(i.genres) & taste]
    candidates = candidates or [i for i in data.items if i.item_id not in watched]
    return max(candidates, key=lambda i: (counts.get(i.item_id, 0), i.item_id)).item_id


def most_watched_by(data: DemoData, user: str) -> str:
    """Of the items ``user`` watched, the one most watched by everyone (the similar example)."""
    mine = {e.item_id for e in data.events if e.user_id == user}
    counts: dict[str, int] = {}
    for event in data.events:
        if event.item_id in mine:
            counts[event.item_id] = counts.get(event.item_id, 0) + 1
    return min(counts, key=lambda i: (-counts[i], i))


async def seed_database(settings: Settings, data: DemoData) -> bool:
    """Migrate ``settings.database_url`` and seed it with ``data`` when empty (``reco dev``)."""
    conn = await connect(settings, "reco-demo")
    try:
        await migrations.migrate(conn, admin.directory(settings))
        with anyio.fail_after(settings.startup_timeout):
            return await seed_if_empty(conn, data, fold_timeout=settings.cooccurrence_fold_timeout)
    finally:
        await conn.close()
