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

The cache holds at most ``max_bytes`` (``RECO_RECS_MODEL_CACHE_BYTES``):
the live and the trained lists and the ItemInfos they reference, each
costed by reco/engine/sizes.py (checked against tracemalloc in
tests/unit/test_cache_bytes.py). An ItemInfo is counted once and kept while
some kept list references it (a reference count per item); when a fetch
goes over the bound, the least recently used lists of either kind go
first, and with them the infos no other list references. A request's own
lists are used last, so they stay (and their infos with them) as long as
the bound holds more than one request's lists (a few MB).

Each sync has a number (``syncs``). The cache remembers, per item, the sync
that last reported it changed, and the last sync that changed the inactive
set or started from empty: :meth:`unchanged_since` tells the per-user list
cache (reco/engine/lists.py) whether lists scored at some sync still rest on
the same model data for their seeds. Changes older than ``FORGET`` (longer
than any kept list lives) are forgotten, so that record stays as small as
the items that changed recently.
"""

from __future__ import annotations

import collections
import datetime as dt
import itertools
import random
import time
from collections.abc import Iterable, Sequence

import anyio
import asyncpg
import attrs

from reco.engine import queries, scoring, sizes
from reco.engine.scoring import ItemInfo, Neighbours
from reco.observability import metrics

TRENDING_CACHED = 500  # items kept in the trending list
MAX_AGE = 60.0  # the kept user lists' (reco/engine/lists.py)
NEIGHBOURS_MAX_AGE = 600.0
# Longer than any kept scored list lives (reco/engine/lists.py: HARD_AGE = 3 * MAX_AGE,
# plus its RESCORE_GRACE): a forgotten change must not let a stale kept list pass.
FORGET = 4 * MAX_AGE
OVERLAP = dt.timedelta(seconds=5)  # a writer's changed_at may precede its commit


class ModelCache:
    def __init__(self, ttl: float, max_bytes: int) -> None:
        self.ttl = ttl
        self.max_bytes = max_bytes
        self.trending: list[ItemInfo] = []
        self.inactive: frozenset[str] = frozenset()
        self.items: dict[str, ItemInfo] = {}  # the infos of every cached neighbour
        self._neighbours: dict[str, _Entry] = {}  # seed -> its live list
        self._refs: dict[str, int] = {}  # item -> how many kept lists reference it
        self._uses = itertools.count()  # orders entries of both kinds by last use
        self.bytes = 0  # what the kept lists and infos cost (reco/engine/sizes.py)
        self.evictions = 0  # lists dropped to stay within max_bytes
        metrics.model_cache_max_bytes.value = max_bytes
        self._synced_at = -float("inf")
        self._mark: dt.datetime | None = None
        self._lock = anyio.Lock()
        self.syncs = 0  # syncs done so far
        self._changed_in: dict[str, int] = {}  # item -> the sync that last saw it change
        self._reset_in = 0  # the last sync that started afresh or changed the inactive set
        # Changes older than FORGET are dropped from _changed_in (kept in order of change):
        # no kept scored list is that old; one scored before _forgotten is deemed changed.
        self._sync_times: collections.deque[tuple[int, float]] = collections.deque()
        self._forgotten = 0  # the last sync whose changes were dropped
        self.model: tuple[int, str] | None = None  # the active trained model (version, method)
        self._trained: dict[str, _Entry] = {}  # seed -> its list in ``model``

    def unchanged_since(self, sync: int, seeds: Sequence[str]) -> bool:
        """True when no sync after ``sync`` changed the inactive set or one of ``seeds``."""
        if self._reset_in > sync or self._forgotten > sync:
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
        found = {s: e.weights for s in seeds if (e := self._neighbours.get(s)) and now < e.expiry}
        self._touch(self._neighbours, found)
        missing = [s for s in seeds if s not in found]
        if missing:
            fetched, infos = await queries.neighbours(conn, missing, scoring.NEIGHBOURS)
            self.put_neighbours(fetched, infos)
            found.update(fetched)
        return found

    def put_neighbours(self, fetched: dict[str, Neighbours], infos: dict[str, ItemInfo]) -> None:
        """Keep freshly fetched live lists and their neighbours' infos (within the bound)."""
        now = time.monotonic()
        for seed, weights in fetched.items():
            # Expiry spread around NEIGHBOURS_MAX_AGE: see the module docstring.
            self._put(self._neighbours, seed, weights, infos,
                      now + NEIGHBOURS_MAX_AGE * random.uniform(0.5, 1.5))  # fmt: skip
        self._evict()

    def put_trained(self, fetched: dict[str, Neighbours], infos: dict[str, ItemInfo]) -> None:
        """Keep the active model's lists for seeds and their neighbours' infos."""
        for seed, weights in fetched.items():
            self._put(self._trained, seed, weights, infos, float("inf"))
        self._evict()

    async def trained(
        self, conn: asyncpg.Connection, seeds: Sequence[str]
    ) -> dict[str, Neighbours]:
        """The active trained model's lists for ``seeds`` ({} each without a model).

        A version's lists never change, so they are kept until the version does.
        """
        if self.model is None:
            return {}
        version = self.model[0]
        found = {s: e.weights for s in seeds if (e := self._trained.get(s)) is not None}
        self._touch(self._trained, found)
        missing = [s for s in seeds if s not in found]
        if missing:
            fetched, infos = await queries.trained(conn, version, missing)
            if self.model is None or self.model[0] != version:
                return found  # switched meanwhile: the next request reads the new one
            self.put_trained(fetched, infos)
            found.update(fetched)
        return found

    async def _sync(self, conn: asyncpg.Connection) -> None:
        began = time.monotonic()
        since = None if self._mark is None else self._mark - OVERLAP
        changes = await queries.model_changes(conn, since)
        mark, changed, inactive = changes.now, changes.changed, changes.inactive
        self.trending = await queries.trending(conn, limit=TRENDING_CACHED)
        self.syncs += 1
        if since is None:
            for seed in list(self._neighbours):
                self._drop(self._neighbours, seed)
            self._changed_in.clear()
            self._reset_in = self.syncs
        for item in changed:
            self._drop(self._neighbours, item)
        self.note_changes(changed, began)
        if (now_inactive := frozenset(inactive)) != self.inactive:
            self._reset_in = self.syncs
        if changes.model != self.model:  # a new version: every kept list is stale
            for seed in list(self._trained):
                self._drop(self._trained, seed)
            self.model = changes.model
            self._reset_in = self.syncs
        self.inactive = now_inactive
        metrics.model_cache_bytes.value = self.bytes
        self._mark = mark
        self._synced_at = began

    def note_changes(self, changed: Iterable[str], began: float) -> None:
        """Remember that sync ``syncs`` (begun at monotonic ``began``) saw ``changed``
        change, and forget the changes of syncs older than FORGET."""
        changed_in, sync = self._changed_in, self.syncs
        for item in changed:
            changed_in.pop(item, None)  # re-insert: dict order is order of change
            changed_in[item] = sync
        times = self._sync_times
        times.append((sync, began))
        while times and times[0][1] < began - FORGET:
            self._forgotten = times.popleft()[0]
        while changed_in:
            oldest = next(iter(changed_in))
            if changed_in[oldest] > self._forgotten:
                break
            del changed_in[oldest]

    def _put(self, kind: dict[str, _Entry], seed: str, weights: Neighbours,
             infos: dict[str, ItemInfo], expiry: float) -> None:  # fmt: skip
        self._drop(kind, seed)  # re-insert: dict order is order of use
        refs, items = self._refs, self.items
        for item_id in weights:
            if (count := refs.get(item_id, 0)) == 0:
                self.bytes += sizes.SLOT
            refs[item_id] = count + 1
            if (info := infos.get(item_id)) is not None:  # refreshed whenever a fetch returns it
                old = items.get(item_id)
                self.bytes += sizes.info(info) - (0 if old is None else sizes.info(old))
                items[item_id] = info
        cost = sizes.neighbours(weights)
        kind[seed] = _Entry(next(self._uses), expiry, weights, cost)
        self.bytes += cost

    def _drop(self, kind: dict[str, _Entry], seed: str) -> None:
        entry = kind.pop(seed, None)
        if entry is None:
            return
        self.bytes -= entry.cost
        refs, items = self._refs, self.items
        for item_id in entry.weights:
            if (left := refs[item_id] - 1) > 0:
                refs[item_id] = left
                continue
            del refs[item_id]
            self.bytes -= sizes.SLOT
            if (info := items.pop(item_id, None)) is not None:
                self.bytes -= sizes.info(info)

    def _touch(self, kind: dict[str, _Entry], seeds: Iterable[str]) -> None:
        """Mark lists as just used: the request's own lists are evicted last."""
        for seed in seeds:
            entry = kind[seed] = kind.pop(seed)
            entry.used = next(self._uses)

    def _evict(self) -> None:
        """Drop the least recently used lists, of either kind, until within ``max_bytes``."""
        live, trained = self._neighbours, self._trained
        while self.bytes > self.max_bytes and (live or trained):
            oldest_live = live[next(iter(live))].used if live else None
            oldest_trained = trained[next(iter(trained))].used if trained else None
            if oldest_trained is None or (oldest_live is not None and oldest_live < oldest_trained):
                self._drop(live, next(iter(live)))
            else:
                self._drop(trained, next(iter(trained)))
            self.evictions += 1
            metrics.model_cache_evictions.inc()
        metrics.model_cache_bytes.value = self.bytes


@attrs.define
class _Entry:
    used: int  # order of last use across both kinds (the least recently used go first)
    expiry: float  # monotonic time; inf for a trained model's list
    weights: Neighbours
    cost: int  # bytes (reco/engine/sizes.py), without the infos
