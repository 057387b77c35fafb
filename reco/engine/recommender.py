"""The read side of the engine: what HTTP handlers call.

Handlers depend on this interface only; how lists are scored (reco/engine/
scoring.py, pure) and which aggregates are read is the engine's business.

for_user costs one or two queries on the hot path: the user's history
(always read fresh, so a committed watch shows in the next list) and the
top-K neighbours of those seeds not in the per-process cache. Neighbour lists
and the trending list are model data, cached for at most ``recs_cache_ttl``
seconds.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence

import anyio
import asyncpg

from reco.db.pool import Database
from reco.engine import queries, scoring
from reco.engine.scoring import ItemInfo, Neighbour, Reason, RecommendationList, ScoredItem
from reco.settings import Settings

__all__ = ["Reason", "RecommendationList", "Recommender", "ScoredItem"]

TRENDING_CACHED = 500  # items kept in the per-process trending list
NEIGHBOURS_CACHED = 50_000  # items whose neighbour lists a process keeps (oldest go first)


class Recommender:
    """Per-user, similar-item and popular lists, read from PostgreSQL."""

    def __init__(self, database: Database, settings: Settings) -> None:
        self.database = database
        self.settings = settings
        self._trending: list[ItemInfo] = []
        self._trending_at = -float("inf")
        self._trending_lock = anyio.Lock()
        # item -> (fetched at, its normalised top-K neighbours); model data, so
        # up to recs_cache_ttl old. Never a user's history.
        self._neighbours: dict[str, tuple[float, tuple[Neighbour, ...]]] = {}

    async def for_user(
        self, user_id: str, *, limit: int, genres: Sequence[str] = (),
        exclude: frozenset[str] = frozenset(),
    ) -> RecommendationList:  # fmt: skip
        """Never an item the user watched, never an inactive one; trending for cold users."""
        request = scoring.Request(limit, frozenset(genres), frozenset(exclude))
        async with self.database.connection() as conn:
            history = await queries.history(conn, user_id)
            neighbours = await self._neighbours_of(conn, scoring.seeds_of(history))
        trending = await self._trending_list()
        items = scoring.recommend(history, neighbours, trending, request)
        if len(items) < limit:
            items = await self._fill(items, request, frozenset(history))
        algorithm = "cooccurrence" if any(neighbours.values()) else "trending"
        return RecommendationList(algorithm, tuple(items))

    async def similar(self, item_id: str, *, limit: int) -> RecommendationList | None:
        """Items watched together with ``item_id``; None when the item is unknown."""
        async with self.database.connection() as conn:
            if await queries.item_users(conn, item_id) is None:
                return None
            neighbours = await self._neighbours_of(conn, [item_id])
        items = scoring.similar(item_id, neighbours[item_id], limit)
        return RecommendationList("cooccurrence", tuple(items))

    async def popular(self, *, limit: int, genres: Sequence[str] = ()) -> RecommendationList:
        """Active items by how many users watched them."""
        async with self.database.connection() as conn:
            rows = await queries.popular(conn, genres=genres, limit=limit)
        items = tuple(ScoredItem(i.item_id, i.title, float(i.users), Reason("popular"))
                      for i in rows)  # fmt: skip
        return RecommendationList("popular", items)

    async def _neighbours_of(
        self, conn: asyncpg.Connection, seeds: Sequence[str]
    ) -> dict[str, tuple[Neighbour, ...]]:
        """Cached neighbour lists; the missing or stale ones in one query."""
        now = time.monotonic()
        ttl = self.settings.recs_cache_ttl
        found = {s: e[1] for s in seeds if (e := self._neighbours.get(s)) and now - e[0] < ttl}
        missing = [s for s in seeds if s not in found]
        if missing:
            fetched = await queries.neighbours(conn, missing, scoring.NEIGHBOURS)
            for seed, neighbours in fetched.items():
                self._neighbours.pop(seed, None)  # re-insert: dict order is fetch order
                self._neighbours[seed] = (now, neighbours)
            found.update(fetched)
            self._evict()
        return found

    def _evict(self) -> None:
        excess = len(self._neighbours) - NEIGHBOURS_CACHED
        for seed in list(itertools.islice(self._neighbours, max(excess, 0))):
            del self._neighbours[seed]

    async def _trending_list(self) -> list[ItemInfo]:
        """The cached trending list, refreshed by one caller when older than the TTL."""
        if time.monotonic() - self._trending_at < self.settings.recs_cache_ttl:
            return self._trending
        async with self._trending_lock:
            if time.monotonic() - self._trending_at >= self.settings.recs_cache_ttl:
                async with self.database.connection() as conn:
                    self._trending = await queries.trending(conn, limit=TRENDING_CACHED)
                self._trending_at = time.monotonic()
        return self._trending

    async def _fill(self, items: list[ScoredItem], request: scoring.Request,
                    seen: frozenset[str]) -> list[ScoredItem]:  # fmt: skip
        """Past the cached list: ask the database, trending first, then the catalogue."""
        taken = [s.item_id for s in items] + sorted(request.exclude)
        async with self.database.connection() as conn:
            for query in (queries.trending, queries.catalogue):
                more = await query(conn, genres=sorted(request.genres),
                                   exclude=[*taken, *sorted(seen)],
                                   limit=request.limit - len(items))  # fmt: skip
                items = scoring.fill(items, more, request, seen)
                taken = [s.item_id for s in items] + sorted(request.exclude)
                if len(items) >= request.limit:
                    break
        return items
