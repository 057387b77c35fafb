"""The read side of the engine: what HTTP handlers call.

Handlers depend on this interface only; how lists are scored (reco/engine/
scoring.py, pure) and which aggregates are read is the engine's business.

for_user costs two queries on the hot path: the user's history (always read
fresh, so a committed watch shows in the next list) and the seeds' top-K
neighbours. The trending list used to blend and fill is global data, cached
per process for at most ``recs_cache_ttl`` seconds.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import anyio

from reco.db.pool import Database
from reco.engine import queries, scoring
from reco.engine.scoring import ItemInfo, Reason, RecommendationList, ScoredItem
from reco.settings import Settings

__all__ = ["Reason", "RecommendationList", "Recommender", "ScoredItem"]

TRENDING_CACHED = 500  # items kept in the per-process trending list


class Recommender:
    """Per-user, similar-item and popular lists, read from PostgreSQL."""

    def __init__(self, database: Database, settings: Settings) -> None:
        self.database = database
        self.settings = settings
        self._trending: list[ItemInfo] = []
        self._trending_at = -float("inf")
        self._trending_lock = anyio.Lock()

    async def for_user(
        self, user_id: str, *, limit: int, genres: Sequence[str] = (),
        exclude: frozenset[str] = frozenset(),
    ) -> RecommendationList:  # fmt: skip
        """Never an item the user watched, never an inactive one; trending for cold users."""
        request = scoring.Request(limit, frozenset(genres), frozenset(exclude))
        async with self.database.connection() as conn:
            history = await queries.history(conn, user_id)
            seeds = scoring.seeds_of(history)
            neighbours, seed_users = (
                await queries.neighbours(conn, seeds, scoring.NEIGHBOURS) if seeds else ([], {})
            )
        trending = await self._trending_list()
        items = scoring.recommend(history, neighbours, seed_users, trending, request)
        if len(items) < limit:
            items = await self._fill(items, request, frozenset(history))
        algorithm = "cooccurrence" if neighbours else "trending"
        return RecommendationList(algorithm, tuple(items))

    async def similar(self, item_id: str, *, limit: int) -> RecommendationList | None:
        """Items watched together with ``item_id``; None when the item is unknown."""
        async with self.database.connection() as conn:
            users = await queries.item_users(conn, item_id)
            if users is None:
                return None
            neighbours, _ = await queries.neighbours(conn, [item_id], scoring.NEIGHBOURS)
        items = scoring.similar(item_id, neighbours, users, limit)
        return RecommendationList("cooccurrence", tuple(items))

    async def popular(self, *, limit: int, genres: Sequence[str] = ()) -> RecommendationList:
        """Active items by how many users watched them."""
        async with self.database.connection() as conn:
            rows = await queries.popular(conn, genres=genres, limit=limit)
        items = tuple(ScoredItem(i.item_id, i.title, float(i.users), Reason("popular"))
                      for i in rows)  # fmt: skip
        return RecommendationList("popular", items)

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
