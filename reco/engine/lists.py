"""The per-process cache of users' scored lists (reco/engine/recommender.py uses it).

A list is kept per request shape (user, limit, genres, exclude) with what it
was scored from, and served again only while all of these hold:

- the user's version stamp (``user_versions``, moved in the same transaction
  as any change of the user's history; sql/0004_user_versions.sql), read
  fresh with every request, is the one the list was scored at: a committed
  watch shows in the next list of every instance, exactly;
- no model sync since the list was scored reported a change of one of its
  seeds (their neighbour lists and counts) or of the inactive set
  (:meth:`~reco.engine.cache.ModelCache.unchanged_since`): within the model
  cache's ``ttl``, as for a list scored afresh;
- it is younger than its age bound: the trending part of a list and the
  counts of its candidates drift slowly. Past ``MAX_AGE`` (with the model
  cache's spread) a list is *due*: it is rescored when the refresh budget
  allows, else served as it is (and due again next time), and always
  rescored past ``HARD_AGE``. The budget lets ``len(cache) / MAX_AGE``
  rescores of due lists a second (at least one; a burst of a second's worth): a full
  cache refreshes about once per ``MAX_AGE``, but lists scored together (a
  warm-up, a restart's first minute) no longer all come due in the same
  half minute, with the model cache's neighbour lists, which are fetched
  with them and expire with them (docs/performance.md, "Read path": that
  window cost each bench run a third of its recommendation throughput). A
  due list taken for a rescore is deferred for ``RESCORE_GRACE`` meanwhile,
  so that concurrent requests for it are served the kept list rather than
  all rescore it.

The stamp need not be read for a user the stamp watch (reco/engine/stamps.py)
vouches for: :meth:`vouch` records the epoch of the watch and the stamp a
read saw, :meth:`forget` drops it when the user's stamp is notified to have
moved; the caller serves a kept list at a vouched stamp only while that
epoch's listener is current.

Entries are plain tuples of strings and floats, which CPython's collector
stops tracking after their first collection: a full cache adds nothing to
what a generation-2 collection walks (see reco/engine/cache.py). At most
``size`` entries and ``max_bytes`` are kept (an entry's cost from
reco/engine/sizes.py: up to 100 items with titles of up to 1000 characters,
so some hundreds of KB for the largest, about 3 KB for a usual one); the
least recently used go first.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable, Sequence

from reco.engine import sizes
from reco.engine.cache import MAX_AGE
from reco.engine.scoring import Reason, RecommendationList, ScoredItem
from reco.observability import metrics

Key = tuple[str, int, frozenset[str], frozenset[str]]  # user, limit, genres, exclude
_Item = tuple[str, str, float, str, str | None]  # item, title, score, reason type, reason item
_Unchanged = Callable[[int, Sequence[str]], bool]  # ModelCache.unchanged_since
# (version, sync, due, hard expiry, seeds, algorithm, items, cost)
_Entry = tuple[int, int, float, float, tuple[str, ...], str, tuple[_Item, ...], int]
_ENTRY = sys.getsizeof((0,) * 8) + 5 * sys.getsizeof(2**40)  # the entry tuple and its numbers
HARD_AGE = 3 * MAX_AGE  # a kept list older than this is rescored whatever the budget
RESCORE_GRACE = 5.0  # seconds a due list taken for a rescore is served to others meanwhile


class ListCache:
    def __init__(self, size: int, max_bytes: int) -> None:
        self.size = size
        self.max_bytes = max_bytes
        self._entries: dict[Key, _Entry] = {}
        self.bytes = 0  # what the kept entries cost (reco/engine/sizes.py)
        self._budget = 0.0  # rescores of due lists allowed now (see the module docstring)
        self._budget_at = time.monotonic()
        self.deferred = 0  # due lists served because the budget was spent
        self.hits = 0  # kept lists served (with or without a stamp read)
        self.misses = 0  # lists scored (counted by the caller)
        self.unread = 0  # of the hits, those served without a stamp read
        self._vouched: dict[str, tuple[int, int]] = {}  # user -> (watch epoch, stamp)

    def __len__(self) -> int:
        return len(self._entries)

    def candidate(self, key: Key, unchanged_since: _Unchanged) -> int | None:
        """The version stamp of a kept list still valid for the model, else None.

        ``unchanged_since(sync, seeds)`` is the model cache's check.
        """
        entry = self._entries.get(key)
        if entry is None:
            return None
        version, sync, due, expiry, seeds, _, _, _ = entry
        now = time.monotonic()
        if now >= expiry or not unchanged_since(sync, seeds):
            self._drop(key)
            return None
        if now >= due:
            if not self._may_rescore(now):
                self.deferred += 1
                return version
            # this request rescores (and puts a fresh entry); others get this one meanwhile
            self._entries[key] = (version, sync, now + RESCORE_GRACE, *entry[3:])
            return None
        return version

    def _may_rescore(self, now: float) -> bool:
        """Take one rescore of a due list from the budget, if there is one."""
        rate = max(len(self._entries) / MAX_AGE, 1.0)  # rescores a second
        self._budget = min(self._budget + (now - self._budget_at) * rate, rate)
        self._budget_at = now
        if self._budget < 1.0:
            return False
        self._budget -= 1.0
        return True

    def get(self, key: Key, version: int) -> RecommendationList | None:
        """The kept list, when it was scored at ``version``; counts a hit."""
        entry = self._entries.get(key)
        if entry is None or entry[0] != version:
            return None
        self.hits += 1
        del self._entries[key]  # re-insert: dict order is recency of use
        self._entries[key] = entry
        return _decode(entry[5], entry[6])

    def vouched(self, user_id: str) -> tuple[int, int] | None:
        """(epoch, stamp) the stamp watch vouched for ``user_id``, if it did."""
        return self._vouched.get(user_id)

    def vouch(self, user_id: str, epoch: int, version: int) -> None:
        vouched = self._vouched
        vouched.pop(user_id, None)  # re-insert: dict order is recency
        vouched[user_id] = (epoch, version)
        while len(vouched) > max(self.size, 1):
            del vouched[next(iter(vouched))]

    def forget(self, user_id: str) -> None:
        """The user's stamp moved (a notification): read it with the next request."""
        self._vouched.pop(user_id, None)

    def put(self, key: Key, version: int, sync: int, seeds: Sequence[str],
            recs: RecommendationList) -> None:  # fmt: skip
        if self.size <= 0:
            return
        self._drop(key)
        now = time.monotonic()
        due = now + MAX_AGE * random.uniform(0.75, 1.25)
        kept, items = tuple(seeds), tuple(_encode(item) for item in recs.items)
        cost = sizes.deep(key) + sizes.deep((kept, recs.algorithm, items)) + _ENTRY
        if cost > self.max_bytes:
            return
        self._entries[key] = (version, sync, due, now + HARD_AGE, kept, recs.algorithm, items, cost)
        self.bytes += cost
        while len(self._entries) > self.size or self.bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))
        metrics.list_cache_bytes.value = self.bytes

    def _drop(self, key: Key) -> None:
        if (entry := self._entries.pop(key, None)) is not None:
            self.bytes -= entry[7]


def _encode(item: ScoredItem) -> _Item:
    return (item.item_id, item.title, item.score, item.reason.type, item.reason.item_id)


def _decode(algorithm: str, items: tuple[_Item, ...]) -> RecommendationList:
    return RecommendationList(
        algorithm,
        tuple(
            ScoredItem(i, title, score, Reason(kind, seed)) for i, title, score, kind, seed in items
        ),
    )
