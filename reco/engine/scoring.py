"""Scoring: turn a user's history and the aggregates into a ranked, explained list.

Pure functions over values (no I/O, no clock), so the same state always gives
the same list. The model (docs/design.md, "Engine"):

- seeds are the user's SEEDS most recent distinct items; seed k (0 = latest)
  weighs RECENCY ** k;
- a candidate j scores sum_k RECENCY**k * w(s_k, j) / sqrt(n(s_k) * n(j)), where
  w is the proximity-weighted co-occurrence and n the number of users who
  watched the item (a cosine-like normalisation that stops blockbusters from
  being everyone's neighbour);
- with a trained model (``reco train``, reco/training/), a candidate's model
  score is the sum of the model's neighbour weights over the user's
  TRAINED_SEEDS most recent items (uniform: the trained model already weighs
  items against each other); both personal parts are scaled to [0, 1] over
  the allowed candidates and mixed, the model's share ``trained_weight``,
  the live co-occurrence's the rest: an item too new for the model still
  scores through co-occurrence;
- personal scores are scaled to [0, 1] and blended with trending popularity,
  weighted BLEND * PRIOR / (PRIOR + history length): strong for sparse users,
  a tie-breaker for heavy ones;
- the reason is the seed that contributed most, or "trending" when the
  popularity part outweighs the personal one;
- whatever is left is filled from the trending list, so a list is short only
  when the catalogue runs out.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet

import attrs
import numpy as np
import numpy.typing as npt

SEEDS = 10
RECENCY = 0.8
NEIGHBOURS = 100  # top-K neighbours read per seed (by raw co-occurrence weight)
BLEND = 0.5
PRIOR = 5.0
TRAINED_SEEDS = 200  # most recent history items the trained model's score sums over


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


@attrs.frozen
class ItemInfo:
    """What scoring needs to know about a recommendable item."""

    item_id: str
    title: str
    genres: frozenset[str]
    users: int  # distinct users who watched it
    log_score: float  # time-decayed popularity, log space


# A seed's neighbours: item id -> co-occurrence normalised by sqrt(n(seed) * n(item)),
# strongest first. A dict of floats, no object per neighbour: the per-process
# cache holds about a hundred per item, and an attrs instance each made every
# generation-2 collection walk them (100+ ms event-loop stalls); CPython's
# collector does not even track a dict of strs to floats. What scoring needs
# to know about the neighbour itself comes from an item-id -> ItemInfo mapping.
Neighbours = Mapping[str, float]
_NONE_LISTS: Mapping[str, Neighbours] = {}


@attrs.frozen
class Request:
    limit: int
    genres: frozenset[str] = frozenset()
    exclude: frozenset[str] = frozenset()
    inactive: frozenset[str] = frozenset()  # never recommended


def seeds_of(history: Sequence[str]) -> list[str]:
    """The most recent distinct items of a history given most recent first."""
    return list(dict.fromkeys(history))[:SEEDS]


def allowed(item: ItemInfo, request: Request, seen: frozenset[str]) -> bool:
    """Active, unseen, not excluded, and in one of the requested genres (if any)."""
    item_id = item.item_id
    if item_id in seen or item_id in request.exclude or item_id in request.inactive:
        return False
    return not request.genres or bool(item.genres & request.genres)


def normalise(seed_users: int, rows: Iterable[tuple[ItemInfo, float]]) -> dict[str, float]:
    """One seed's neighbours with raw weights -> normalised, strongest first."""
    found = [(item.item_id, weight / math.sqrt(max(seed_users, 1) * max(item.users, 1)))
             for item, weight in rows]  # fmt: skip
    found.sort(key=lambda n: (-n[1], n[0]))
    return dict(found)


def personal_scores(seeds: Sequence[str], lists: Sequence[Neighbours],
                    recency: float = RECENCY) -> dict[str, float]:  # fmt: skip
    """Candidate -> sum_k recency**k * w(s_k, j), seeds in order (0 = latest).

    The hot loop of a request (up to SEEDS * NEIGHBOURS steps): floats only,
    no per-candidate objects; filtering happens afterwards on key sets.
    """
    totals: dict[str, float] = {}
    get = totals.get
    for k, weights in enumerate(lists[: len(seeds)]):
        factor = recency**k
        for item_id, weight in weights.items():
            totals[item_id] = get(item_id, 0.0) + factor * weight
    return totals


def candidates(
    totals: Mapping[str, float] | AbstractSet[str], items: Mapping[str, ItemInfo], request: Request,
    seen: frozenset[str],
) -> set[str]:  # fmt: skip
    """The allowed candidates (see :func:`allowed`) that ``items`` knows about."""
    found = (totals if isinstance(totals, AbstractSet) else totals.keys()) - seen
    found -= request.exclude
    found -= request.inactive
    found &= items.keys()
    if request.genres:
        found = {c for c in found if items[c].genres & request.genres}
    return found


def best_seed(item_id: str, seeds: Sequence[str], lists: Sequence[Neighbours],
              recency: float = RECENCY) -> str | None:  # fmt: skip
    """The seed that contributed most to ``item_id`` (None: none did); ties keep the more
    recent seed."""
    best, seed = -1.0, None
    for k, weights in enumerate(lists[: len(seeds)]):
        weight = weights.get(item_id)
        if weight is not None and (part := recency**k * weight) > best:
            best, seed = part, seeds[k]
    return seed


def mix(live: dict[str, float], model: Mapping[str, float], share: float,
        allowed_ids: set[str]) -> dict[str, float]:  # fmt: skip
    """``(1 - share) * live / max + share * model / max`` over ``allowed_ids``.

    On the hot path (about a thousand candidates with a model): one pass to
    read both parts, one to mix; model weights are positive (reco/training/).
    """
    live_get, model_get = live.get, model.get
    parts = [(c, live_get(c, 0.0), model_get(c, 0.0)) for c in allowed_ids]
    top_live = max([p[1] for p in parts], default=0.0) or 1.0
    top_model = max([p[2] for p in parts], default=0.0) or 1.0
    a, b = (1.0 - share) / top_live, share / top_model
    return {c: a * x + b * y for c, x, y in parts}


def summed(lists: Sequence[Neighbours]) -> dict[str, float]:
    """Candidate -> the sum of its weights over ``lists`` (the model part: uniform).

    The reference for :meth:`ModelArrays.summed`, which the hot path uses.
    """
    totals: dict[str, float] = {}
    get = totals.get
    for weights in lists:
        for item_id, weight in weights.items():
            totals[item_id] = get(item_id, 0.0) + weight
    return totals


_Codes = npt.NDArray[np.intp]
_Weights = npt.NDArray[np.float64]


class ModelArrays:
    """A trained model version's lists as arrays over dense item codes.

    The model part of a score sums up to TRAINED_SEEDS lists of about a
    hundred neighbours: 20,000 dict updates in Python (most of a scored
    list's cost with a model, docs/performance.md "Engine write and read
    cost"). Each list is turned into a code array and a weight array once,
    the first time a user's history needs it, and the sum is one
    ``np.bincount`` over the concatenation: the same additions in the same
    order as :func:`summed`, so the same floats. A version's lists never
    change; the caller keeps one instance per model version. At most
    ``size`` lists are kept (the oldest go first); the codes are at most the
    catalogue.
    """

    def __init__(self, version: int, size: int) -> None:
        self.version = version
        self.size = size
        self._ids: list[str] = []  # code -> item id
        self._codes: dict[str, int] = {}  # item id -> code
        self._lists: dict[str, tuple[_Codes, _Weights]] = {}  # seed -> (codes, weights)

    def __len__(self) -> int:
        return len(self._lists)

    def _arrays(self, seed: str, weights: Neighbours) -> tuple[_Codes, _Weights]:
        found = self._lists.get(seed)
        if found is None:
            codes, ids = self._codes, self._ids
            for item_id in weights:
                if item_id not in codes:
                    codes[item_id] = len(ids)
                    ids.append(item_id)
            found = (np.fromiter(map(codes.__getitem__, weights), np.intp, len(weights)),
                     np.fromiter(weights.values(), np.float64, len(weights)))  # fmt: skip
            self._lists[seed] = found
            while len(self._lists) > max(self.size, 1):
                del self._lists[next(iter(self._lists))]
        return found

    def summed(self, seeds: Sequence[str], lists: Mapping[str, Neighbours]) -> dict[str, float]:
        """:func:`summed` over the lists of ``seeds`` in ``lists`` (a seed without one adds
        nothing)."""
        parts = [self._arrays(seed, weights) for seed in seeds if (weights := lists.get(seed))]
        if not parts:
            return {}
        codes = np.concatenate([p[0] for p in parts])
        totals = np.bincount(codes, weights=np.concatenate([p[1] for p in parts]))
        present = np.zeros(len(totals), dtype=bool)
        present[codes] = True
        found = np.flatnonzero(present)
        return dict(zip(map(self._ids.__getitem__, found.tolist()), totals[found].tolist(),
                        strict=True))  # fmt: skip


def recommend(
    history: Sequence[str],
    neighbours: Mapping[str, Neighbours],
    items: Mapping[str, ItemInfo],
    trending: Sequence[ItemInfo],
    request: Request,
    trained: Mapping[str, Neighbours] = _NONE_LISTS,
    trained_weight: float = 0.0,
    arrays: ModelArrays | None = None,
) -> list[ScoredItem]:
    """The ranked list for a user: personal candidates blended with trending, then fill.

    ``history`` is every item the user watched, most recent first;
    ``neighbours`` maps (at least) its seeds to their neighbours, whose infos
    are in ``items``; ``trending`` is the trending list (active items only),
    strongest first; ``trained`` maps (at least) the user's TRAINED_SEEDS most
    recent items to their lists in the active trained model, which ``arrays``
    (the caller's, kept per model version; a fresh one when None) holds as
    arrays between calls.

    Only candidates that can still reach the top ``limit`` get a blended score
    (the trending part is at most ``weight``), and only the chosen ones become
    ScoredItems: a heavy user has about a thousand candidates.
    """
    seen = frozenset(history)
    seeds = seeds_of(history)
    lists = [neighbours.get(seed, _NONE) for seed in seeds]
    totals = personal_scores(seeds, lists)
    recent = list(history[:TRAINED_SEEDS])
    model_lists = [trained.get(item, _NONE) for item in recent]
    if trained_weight > 0 and any(model_lists):
        if arrays is None:
            arrays = ModelArrays(0, len(recent))
        model = arrays.summed(recent, trained)
        allowed_ids = candidates(totals.keys() | model.keys(), items, request, seen)
        totals = mix(totals, model, trained_weight, allowed_ids)
    else:
        model_lists = []
        allowed_ids = candidates(totals, items, request, seen)
    top_trend = trending[0].log_score if trending else 0.0  # strongest first
    weight = BLEND * PRIOR / (PRIOR + len(seen))
    chosen = []
    if allowed_ids:
        top_personal = max(map(totals.__getitem__, allowed_ids)) or 1.0
        kth = heapq.nlargest(request.limit, map(totals.__getitem__, allowed_ids))[-1]
        cut = kth - weight * top_personal
        blended = [
            (-(totals[c] / top_personal + weight * _trend(items[c].log_score, top_trend)), c)
            for c in allowed_ids if totals[c] >= cut
        ]  # fmt: skip
        for negative, item_id in heapq.nsmallest(request.limit, blended):
            p = totals[item_id] / top_personal
            t = weight * _trend(items[item_id].log_score, top_trend)
            seed = (best_seed(item_id, seeds, lists)
                    or best_seed(item_id, recent, model_lists, recency=1.0) or seeds[0])  # fmt: skip
            reason = Reason("because_you_watched", seed)
            chosen.append(ScoredItem(item_id, items[item_id].title, -negative,
                                     reason if p >= t else _TRENDING))  # fmt: skip
    return fill(chosen, trending, request, seen, weight, top_trend)


def fill(
    chosen: list[ScoredItem],
    trending: Sequence[ItemInfo],
    request: Request,
    seen: frozenset[str],
    weight: float = 1.0,
    top_trend: float = 0.0,
) -> list[ScoredItem]:
    """Append trending items (allowed, not chosen yet) until ``limit``."""
    taken = {s.item_id for s in chosen}
    for item in trending:
        if len(chosen) >= request.limit:
            break
        if item.item_id not in taken and allowed(item, request, seen):
            taken.add(item.item_id)
            score = weight * _trend(item.log_score, top_trend)
            if chosen:  # keep scores non-increasing down the list
                score = min(score, chosen[-1].score)
            chosen.append(ScoredItem(item.item_id, item.title, score, _TRENDING))
    return chosen


def similar(
    item_id: str, neighbours: Neighbours, items: Mapping[str, ItemInfo], request: Request
) -> list[ScoredItem]:
    """Neighbours of one item by normalised co-occurrence, strongest first."""
    reason = Reason("because_you_watched", item_id)
    seen = frozenset([item_id])
    ranked = [ScoredItem(other, info.title, weight, reason)
              for other, weight in neighbours.items()
              if (info := items.get(other)) is not None and allowed(info, request, seen)]  # fmt: skip
    ranked.sort(key=lambda s: (-s.score, s.item_id))
    return ranked[: request.limit]


_NONE: Neighbours = {}
_TRENDING = Reason("trending")  # immutable: one instance serves every list


def _trend(log_score: float, top: float) -> float:
    """Trending popularity relative to the top item, in (0, 1]."""
    return math.exp(min(log_score - top, 0.0))
