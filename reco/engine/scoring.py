"""Scoring: turn a user's history and the aggregates into a ranked, explained list.

Pure functions over values (no I/O, no clock), so the same state always gives
the same list. The model (docs/design.md, "Engine"):

- seeds are the user's SEEDS most recent distinct items; seed k (0 = latest)
  weighs RECENCY ** k;
- a candidate j scores sum_k RECENCY**k * w(s_k, j) / sqrt(n(s_k) * n(j)), where
  w is the proximity-weighted co-occurrence and n the number of users who
  watched the item (a cosine-like normalisation that stops blockbusters from
  being everyone's neighbour);
- personal scores are scaled to [0, 1] and blended with trending popularity,
  weighted BLEND * PRIOR / (PRIOR + history length): strong for sparse users,
  a tie-breaker for heavy ones;
- the reason is the seed that contributed most, or "trending" when the
  popularity part outweighs the personal one;
- whatever is left is filled from the trending list, so a list is short only
  when the catalogue runs out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

SEEDS = 10
RECENCY = 0.8
NEIGHBOURS = 100  # top-K neighbours read per seed (by raw co-occurrence weight)
BLEND = 0.5
PRIOR = 5.0


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


@attrs.frozen
class Neighbour:
    item: ItemInfo
    weight: float  # co-occurrence normalised by sqrt(n(seed) * n(item))


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


def normalise(seed_users: int, rows: Iterable[tuple[ItemInfo, float]]) -> tuple[Neighbour, ...]:
    """One seed's neighbours with raw weights -> normalised, strongest first."""
    found = [Neighbour(item, weight / math.sqrt(max(seed_users, 1) * max(item.users, 1)))
             for item, weight in rows]  # fmt: skip
    found.sort(key=lambda n: (-n.weight, n.item.item_id))
    return tuple(found)


def personal_scores(
    history: Sequence[str], neighbours: Mapping[str, Sequence[Neighbour]],
    request: Request, seen: frozenset[str],
) -> dict[str, tuple[float, str, ItemInfo]]:  # fmt: skip
    """Allowed candidate -> (score, the seed that contributed most, its info)."""
    scores: dict[str, list[Any]] = {}
    for k, seed in enumerate(seeds_of(history)):
        recency = RECENCY**k
        for n in neighbours.get(seed, ()):
            part = recency * n.weight
            entry = scores.get(n.item.item_id)
            if entry is None:
                if allowed(n.item, request, seen):
                    scores[n.item.item_id] = [part, part, seed, n.item]
            else:
                entry[0] += part
                if part > entry[1]:  # ties keep the more recent seed
                    entry[1], entry[2] = part, seed
    return {item: (e[0], e[2], e[3]) for item, e in scores.items()}


def recommend(
    history: Sequence[str],
    neighbours: Mapping[str, Sequence[Neighbour]],
    trending: Sequence[ItemInfo],
    request: Request,
) -> list[ScoredItem]:
    """The ranked list for a user: personal candidates blended with trending, then fill.

    ``history`` is every item the user watched, most recent first;
    ``neighbours`` maps (at least) its seeds to their neighbours; ``trending``
    is the trending list (active items only), strongest first.
    """
    seen = frozenset(history)
    personal = personal_scores(history, neighbours, request, seen)
    top_personal = max((s for s, _, _ in personal.values()), default=0.0) or 1.0
    top_trend = max((i.log_score for i in trending), default=0.0)
    weight = BLEND * PRIOR / (PRIOR + len(seen))
    ranked = []
    for item_id, (score, seed, item) in personal.items():
        p = score / top_personal
        t = weight * _trend(item.log_score, top_trend)
        reason = Reason("because_you_watched", seed) if p >= t else Reason("trending")
        ranked.append(ScoredItem(item_id, item.title, p + t, reason))
    ranked.sort(key=lambda s: (-s.score, s.item_id))
    return fill(ranked[: request.limit], trending, request, seen, weight, top_trend)


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
            chosen.append(ScoredItem(item.item_id, item.title, score, Reason("trending")))
    return chosen


def similar(item_id: str, neighbours: Sequence[Neighbour], request: Request) -> list[ScoredItem]:
    """Neighbours of one item by normalised co-occurrence, strongest first."""
    reason = Reason("because_you_watched", item_id)
    seen = frozenset([item_id])
    ranked = [ScoredItem(n.item.item_id, n.item.title, n.weight, reason)
              for n in neighbours if allowed(n.item, request, seen)]  # fmt: skip
    ranked.sort(key=lambda s: (-s.score, s.item_id))
    return ranked[: request.limit]


def _trend(log_score: float, top: float) -> float:
    """Trending popularity relative to the top item, in (0, 1]."""
    return math.exp(min(log_score - top, 0.0))
