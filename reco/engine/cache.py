"""The per-process cache of model data (never a user's history).

Neighbour lists are costly to read (an item's whole pair range) and change
only when events touch the item, so they are kept until invalidated: at most
every ``ttl`` seconds one query lists the items whose ``changed_at`` moved
since the last check (with an overlap for transactions that commit late),
and the lists of those items are dropped; the trending list and the set of
inactive items are re-read at the same time. Model data is thus at most
about ``ttl`` old; entries are refetched anyway after 0.5 to 1.5 times
``NEIGHBOURS_MAX_AGE`` (user counts of neighbours drift; the spread keeps lists
fetched together, at a cold start, from expiring and being refetched together;
at 60 s the refetches of every list cost a bench run's third slice most of
its throughput: docs/performance.md, "Read path").

Neighbour lists are dicts of item ids to weights, which CPython's collector
does not track, and each item's ItemInfo is kept once in ``items``
(refreshed whenever a fetch returns it): the cache adds almost nothing to
what a full garbage collection has to walk, so it cannot stall the event
loop for long.

Each sync has a number (``syncs``). The cache remembers, per item, the sync
that last reported it changed, and the last sync that changed the inactive
set or started from empty: :meth:`unchanged_since` tells the per-user list
cache (reco/engine/lists.py) whether lists scored at some sync still rest on
the same model data for their seeds.
"""

from __future__ import annotations

import datetime as dt
import itertools
import random
import time
from collections.abc import Sequence

import anyio
import asyncpg

from reco.engine import queries, scoring
from reco.engine.scoring import ItemInfo, Neighbours

TRENDING_CACHED = 500  # items kept in the trending list
NEIGHBOURS_CACHED = 50_000  # items whose lists a process keeps (oldest go first)
MAX_AGE = 60.0  # the kept user lists' (reco/engine/lists.py)
NEIGHBOURS_MAX_AGE = 600.0
OVERLAP = dt.timedelta(seconds=5)  # a writer's changed_at may precede its commit


class ModelCache:
    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self.trending: list[ItemInfo] = []
        self.inactive: frozenset[str] = frozenset()
        self.items: dict[str, ItemInfo] = {}  # the infos of every cached neighbour
        self._neighbours: dict[str, tuple[float, Neighbours]] = {}  # seed -> (expiry, list)
        self._synced_at = -float("inf")
        self._mark: dt.datetime | None = None
        self._lock = anyio.Lock()
        self.syncs = 0  # syncs done so far
        self._changed_in: dict[str, int] = {}  # item -> the sync that last saw it change
        self._reset_in = 0  # the last sync that started afresh or changed the inactive set
        self.model: tuple[int, str] | None = None  # the active trained model (version, method)
        self._trained: dict[str, Neighbours] = {}  # seed -> its list in ``model``

    def unchanged_since(self, sync: int, seeds: Sequence[str]) -> bool:
        """True when no sync after ``sync`` changed the inactive set or one of ``seeds``."""
        if self._reset_in > sync:
            return False
        changed_in = self._changed_in.get
        return all(changed_in(seed, 0) <= sync for seed in seeds)

    def due(self) -> bool:
        """True when :meth:`refresh` would sync (a request then needs a connection)."""
        return time.monotonic() - self._synced_at >= self.ttl

    async def refresh(self, conn: asyncpg.Connection) -> None:
        """Sync with the database when the last sync is older than ``ttl``.

        One caller syncs; the others go on with the current data, unless there
        is none yet.
        """
        if time.monotonic() - self._synced_at < self.ttl:
            return
        if self._lock.locked() and self._mark is not None:
            return
        async with self._lock:
            if time.monotonic() - self._synced_at >= self.ttl:
                await self._sync(conn)

    async def neighbours(
        self, conn: asyncpg.Connection, seeds: Sequence[str]
    ) -> dict[str, Neighbours]:
        """Lists for ``seeds``: cached ones, the rest in one query."""
        now = time.monotonic()
        found = {s: e[1] for s in seeds if (e := self._neighbours.get(s)) and now < e[0]}
        missing = [s for s in seeds if s not in found]
        if missing:
            fetched, infos = await queries.neighbours(conn, missing, scoring.NEIGHBOURS)
            self.items.update(infos)
            for seed, neighbours in fetched.items():
                self._neighbours.pop(seed, None)  # re-insert: dict order is fetch order
                # Expiry spread around MAX_AGE: see the module docstring.
                expiry = now + NEIGHBOURS_MAX_AGE * random.uniform(0.5, 1.5)
                self._neighbours[seed] = (expiry, neighbours)
            found.update(fetched)
            self._evict()
        return found

    async def trained(
        self, conn: asyncpg.Connection, seeds: Sequence[str]
    ) -> dict[str, Neighbours]:
        """The active trained model's lists for ``seeds`` ({} each without a model).

        A version's lists never change, so they are kept until the version does.
        """
        if self.model is None:
            return {}
        version = self.model[0]
        found = {s: n for s in seeds if (n := self._trained.get(s)) is not None}
        missing = [s for s in seeds if s not in found]
        if missing:
            fetched, infos = await queries.trained(conn, version, missing)
            if self.model is None or self.model[0] != version:
                return found  # switched meanwhile: the next request reads the new one
            self.items.update(infos)
            self._trained.update(fetched)
            found.update(fetched)
            excess = len(self._trained) - NEIGHBOURS_CACHED
            for seed in list(itertools.islice(self._trained, max(excess, 0))):
                del self._trained[seed]
        return found

    async def _sync(self, conn: asyncpg.Connection) -> None:
        began = time.monotonic()
        since = None if self._mark is None else self._mark - OVERLAP
        changes = await queries.model_changes(conn, since)
        mark, changed, inactive = changes.now, changes.changed, changes.inactive
        self.trending = await queries.trending(conn, limit=TRENDING_CACHED)
        self.syncs += 1
        if since is None:
            self._neighbours.clear()
            self.items.clear()
            self._changed_in.clear()
            self._reset_in = self.syncs
        for item in changed:
            self._neighbours.pop(item, None)
            self._changed_in[item] = self.syncs
        if (now_inactive := frozenset(inactive)) != self.inactive:
            self._reset_in = self.syncs
        if changes.model != self.model:  # a new version: every kept list is stale
            self._trained.clear()
            self.model = changes.model
            self._reset_in = self.syncs
        self.inactive = now_inactive
        self._mark = mark
        self._synced_at = began

    def _evict(self) -> None:
        excess = len(self._neighbours) - NEIGHBOURS_CACHED
        for seed in list(itertools.islice(self._neighbours, max(excess, 0))):
            del self._neighbours[seed]
