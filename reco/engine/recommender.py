"""The read side of the engine: what HTTP handlers call.

Handlers depend on this interface only; how lists are scored (reco/engine/
scoring.py, pure) and which aggregates are read is the engine's business.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from reco.db.pool import Database
from reco.settings import Settings


@attrs.frozen
class Reason:
    type: str  # "because_you_watched" | "popular" | "trending"
    item_id: str | None = None


@attrs.frozen
class ScoredItem:
    item_id: str
    title: str
    score: float
    reason: Reason


@attrs.frozen
class RecommendationList:
    algorithm: str
    items: tuple[ScoredItem, ...]


class Recommender:
    """Per-user, similar-item and popular lists, read from PostgreSQL."""

    def __init__(self, database: Database, settings: Settings) -> None:
        self.database = database
        self.settings = settings

    async def for_user(
        self, user_id: str, *, limit: int, genres: Sequence[str] = (),
        exclude: frozenset[str] = frozenset(),
    ) -> RecommendationList:  # fmt: skip
        """Never an item the user watched, never an inactive one; popular for cold users."""
        async with self.database.connection() as conn:
            rows = await conn.fetch(
                """
                SELECT i.item_id, i.title, p.log_score
                FROM item_popularity p JOIN items i USING (item_id)
                WHERE i.active AND (cardinality($2::text[]) = 0 OR i.genres && $2::text[])
                  AND i.item_id <> ALL($3::text[])
                  AND NOT EXISTS (SELECT 1 FROM user_history h
                                  WHERE h.user_id = $1 AND h.item_id = i.item_id)
                ORDER BY p.log_score DESC, i.item_id
                LIMIT $4
                """,
                user_id, list(genres), list(exclude), limit,
            )  # fmt: skip
        items = tuple(
            ScoredItem(r["item_id"], r["title"], float(r["log_score"]), Reason("popular"))
            for r in rows
        )
        return RecommendationList("popular-fallback", items)

    async def similar(self, item_id: str, *, limit: int) -> RecommendationList | None:
        """Items watched together with ``item_id``; None when the item is unknown."""
        async with self.database.connection() as conn:
            if not await conn.fetchval("SELECT 1 FROM items WHERE item_id = $1", item_id):
                return None
            rows = await conn.fetch(
                """
                SELECT c.other_item_id AS item_id, i.title, c.weight
                FROM item_cooccurrence c JOIN items i ON i.item_id = c.other_item_id
                WHERE c.item_id = $1 AND i.active
                ORDER BY c.weight DESC, c.other_item_id LIMIT $2
                """,
                item_id, limit,
            )  # fmt: skip
        items = tuple(
            ScoredItem(r["item_id"], r["title"], float(r["weight"]),
                       Reason("because_you_watched", item_id))
            for r in rows
        )  # fmt: skip
        return RecommendationList("cooccurrence", items)

    async def popular(self, *, limit: int, genres: Sequence[str] = ()) -> RecommendationList:
        async with self.database.connection() as conn:
            rows = await conn.fetch(
                """
                SELECT i.item_id, i.title, p.log_score
                FROM item_popularity p JOIN items i USING (item_id)
                WHERE i.active AND (cardinality($1::text[]) = 0 OR i.genres && $1::text[])
                ORDER BY p.log_score DESC, i.item_id LIMIT $2
                """,
                list(genres), limit,
            )  # fmt: skip
        items = tuple(
            ScoredItem(r["item_id"], r["title"], float(r["log_score"]), Reason("popular"))
            for r in rows
        )
        return RecommendationList("popular", items)
