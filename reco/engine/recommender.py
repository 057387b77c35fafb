"""The read side of the engine: what HTTP handlers call.

Handlers depend on this interface only; how lists are scored (reco/engine/
scoring.py, pure) and which aggregates are read is the engine's business.

for_user costs one query on the hot path: the user's version stamp, read
fresh, so a committed watch shows in the next list; none while the stamp
watch (reco/engine/stamps.py) vouches that the stamp of the kept list has
not moved. With a trained model
active (``reco train``), the lists of the user's most recent items in that
version are read as well (cached per process until the version changes) and
mixed into the personal score (reco/engine/scoring.py); the list's
``algorithm`` names the version. While the stamp and
the model data of the user's seeds are unchanged, the list scored last time
is served again (reco/engine/lists.py); otherwise the same query returns the
history too, and the list is scored. Neighbour lists, the trending list and
the inactive set are model data, in a per-process cache (reco/engine/cache.py)
at most about ``recs_cache_ttl`` old; a seed whose list is not cached costs
one more query.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

import attrs

from reco.db.pool import Database
from reco.engine import aggregates, queries, scoring
from reco.engine import stamps as stamps_
from reco.engine.cache import ModelCache
from reco.engine.lists import ListCache
from reco.engine.scoring import Reason, RecommendationList, ScoredItem
from reco.settings import EngineSettings

__all__ = ["Reason", "RecommendationList", "Recommender", "ScoredItem"]


def algorithm_of(neighbours: dict[str, scoring.Neighbours],
                 trained: dict[str, scoring.Neighbours],
                 model: tuple[int, str] | None) -> str:  # fmt: skip
    """What a list was scored from: ``cooccurrence``, ``<method>@v<version>`` (the trained
    model version used), both joined by ``+``, or ``trending`` when neither had a say."""
    parts = []
    if any(neighbours.values()):
        parts.append("cooccurrence")
    if model is not None and any(trained.values()):
        parts.append(f"{model[1]}@v{model[0]}")
    return "+".join(parts) or "trending"


def algorithm_family(algorithm: str) -> str:
    """``algorithm`` without model versions: a bounded metric label."""
    return "+".join(part.split("@", 1)[0] for part in algorithm.split("+"))


# Trained lists kept as arrays (scoring.ModelArrays): about 1.2 KB each, so at most ~24 MB,
# outside RECO_RECS_MODEL_CACHE_BYTES (the dict form of the same lists is inside it).
TRAINED_ARRAYS_KEPT = 20_000


class Recommender:
    """Per-user, similar-item and popular lists, read from PostgreSQL."""

    def __init__(self, database: Database, settings: EngineSettings) -> None:
        self.database = database
        self.settings = settings
        self.cache = ModelCache(settings.cache_ttl, settings.model_cache_bytes)
        self.lists = ListCache(settings.list_cache_size, settings.list_cache_bytes)
        self._arrays = scoring.ModelArrays(-1, 0)  # the active model's lists as arrays
        self.stamps: stamps_.StampWatch | None = None  # set by reco/service.py: see stamps.py

    async def for_user(
        self, user_id: str, *, limit: int, genres: Sequence[str] = (),
        exclude: frozenset[str] = frozenset(),
    ) -> RecommendationList:  # fmt: skip
        """Never an item the user watched, never an inactive one; trending for cold users."""
        key = (user_id, limit, frozenset(genres), exclude)
        stamps = self.stamps
        rescore = False  # the list cache gave this request a due list to rescore
        if stamps is not None and (vouched := self.lists.vouched(user_id)) is not None:
            # The stamp watch vouches for the user's stamp: no round trip (stamps.py).
            epoch, version = vouched
            if stamps.current(epoch) and not self.cache.due():
                kept = self.lists.candidate(key, self.cache.unchanged_since)
                if kept == version and (found := self.lists.get(key, version)) is not None:
                    self.lists.unread += 1
                    return found
                rescore = kept is None
        mark = stamps.mark() if stamps is not None else None
        async with self.database.connection() as conn:
            await self.cache.refresh(conn)
            sync = self.cache.syncs  # before the neighbours are read: see lists.py
            kept = None if rescore else self.lists.candidate(key, self.cache.unchanged_since)
            version, history = await queries.history(conn, user_id, kept)
            if history is None:  # the stamp is the kept list's
                if (found := self.lists.get(key, version)) is not None:
                    self._vouch(mark, user_id, version)
                    return found
                # Replaced or evicted by another request meanwhile: read it all.
                version, history = await queries.history(conn, user_id)
                assert history is not None
            self.lists.misses += 1
            seeds = scoring.seeds_of(history)
            neighbours = await self.cache.neighbours(conn, seeds)
            model = self.cache.model if self.settings.trained_weight > 0 else None
            trained = {}
            if model is not None:
                trained = await self.cache.trained(conn, history[: scoring.TRAINED_SEEDS])
        recs = await self._score(history, neighbours, limit, genres, exclude, trained, model)
        self.lists.put(key, version, sync, seeds, recs)
        self._vouch(mark, user_id, version)
        return recs

    def _vouch(self, mark: stamps_.Mark | None, user_id: str, version: int) -> None:
        """A stamp read begun at ``mark`` saw ``version``: vouched, if the watch agrees."""
        if self.stamps is not None and (epoch := self.stamps.vouches(mark, user_id)) is not None:
            self.lists.vouch(user_id, epoch, version)

    async def _score(
        self, history: list[str], neighbours: dict[str, scoring.Neighbours], limit: int,
        genres: Sequence[str], exclude: frozenset[str],
        trained: dict[str, scoring.Neighbours], model: tuple[int, str] | None,
    ) -> RecommendationList:  # fmt: skip
        request = scoring.Request(limit, frozenset(genres), frozenset(exclude), self.cache.inactive)
        if model is not None and model[0] != self._arrays.version:
            self._arrays = scoring.ModelArrays(model[0], TRAINED_ARRAYS_KEPT)
        items = scoring.recommend(
            history, neighbours, self.cache.items, self.cache.trending, request,
            trained, self.settings.trained_weight, self._arrays,
        )  # fmt: skip
        if len(items) < limit:
            items = await self._fill(items, request, frozenset(history))
        return RecommendationList(algorithm_of(neighbours, trained, model), tuple(items))

    async def similar(self, item_id: str, *, limit: int) -> RecommendationList | None:
        """Items watched together with ``item_id``; None when the item is unknown."""
        async with self.database.connection() as conn:
            await self.cache.refresh(conn)
            if await queries.item_users(conn, item_id) is None:
                return None
            neighbours = await self.cache.neighbours(conn, [item_id])
        request = scoring.Request(limit, inactive=self.cache.inactive)
        items = scoring.similar(item_id, neighbours[item_id], self.cache.items, request)
        # Today's units (the lists are kept in PAIR_EPOCH's: see queries.neighbours).
        scale = aggregates.pair_scale(dt.datetime.now(dt.UTC))
        shown = tuple(attrs.evolve(item, score=item.score / scale) for item in items)
        return RecommendationList("cooccurrence", shown)

    async def popular(self, *, limit: int, genres: Sequence[str] = ()) -> RecommendationList:
        """Active items by how many users watched them."""
        async with self.database.connection() as conn:
            rows = await queries.popular(conn, genres=genres, limit=limit)
        items = tuple(ScoredItem(i.item_id, i.title, float(i.users), Reason("popular"))
                      for i in rows)  # fmt: skip
        return RecommendationList("popular", items)

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
