"""Recompute the aggregates from the events and compare: pure functions, no I/O.

Two modes. Exact: every stored row equals its recomputation. Lower bound, for
when retention may have dropped events (reco/audit.py decides): the stored
aggregates still count the dropped events, so each recomputed row must be
stored and be no less than the kept events imply (counts, ``log_score``,
``last_*`` at least, ``first_watched_at`` at most, pair weights at least but
for the pruned-pair excuse); a stored row no kept event implies is fine.
Pairs are not monotone in the events (a dropped first watch makes a later one
first, with another window), so there they come only from the users whose
stored history the kept events explain in full (``whole_users_pairs``).

``reco check-aggregates`` (reco/audit.py) reads ``watch_events`` and the
incrementally maintained tables in one snapshot and hands them here. The
recomputation replays each user's events in time order (``occurred_at``, then
``event_id``: the order the consumer applies a batch in) through the same
functions the consumer uses (reco/engine/aggregates.py), as if every event had
come in one batch: user history, popularity (watch and user counts, the trending
``log_score`` within a float tolerance, ``last_at``) and co-occurrence (the
pair window, first watches only).

Pairs are time-decayed (aggregates.pair_scale: the same function, so exact);
the folder deletes pairs whose decayed weight fell below the floor, so a pair
stored short of its recomputation by less than the floor (today's units) is
taken as pruned. A pair pruned twice within about a tau (fed again, then
decayed below the floor again) can fall short by more, and shows as drift
that is no fault.

The co-occurrence replay equals what the consumer built when each user's events
arrived in time order (Kafka keys by user, so a producer that sends in order
gets that): the consumer's window at the start of a batch is the user's stored
history by ``last_watched_at``, which is then also the arrival order. A user
whose events arrived out of time order gets pairs from the order they came in,
and shows here as co-occurrence drift that is no fault.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TypeVar

import attrs

from reco.engine import aggregates
from reco.engine.aggregates import HistoryRow, PopularityRow
from reco.events import WatchEvent

# Floats (log_score, pair weights) are sums taken in another order than the consumer's.
REL_TOLERANCE = 1e-9
ABS_TOLERANCE = 1e-9

K = TypeVar("K")
R = TypeVar("R")
HistoryKey = tuple[str, str]
Pair = tuple[str, str]


@attrs.frozen
class Aggregates:
    """One state of the three tables (co-occurrence: folded plus pending increments)."""

    history: Mapping[HistoryKey, HistoryRow]
    popularity: Mapping[str, PopularityRow]
    cooccurrence: Mapping[Pair, float]


@attrs.frozen
class Diff:
    """Every mismatch, as readable lines, and how many rows of each table differ."""

    lines: tuple[str, ...]
    counts: Mapping[str, int]

    @property
    def equal(self) -> bool:
        return not self.lines


def recompute(events: Iterable[WatchEvent]) -> Aggregates:
    """The aggregates ``events`` imply, replayed per user in time order."""
    ordered = sorted(events, key=lambda e: (e.occurred_at, e.event_id))
    firsts = frozenset((e.user_id, e.item_id) for e in ordered)
    history = {(r.user_id, r.item_id): r for r in aggregates.history_rows(ordered)}
    popularity = {r.item_id: r for r in aggregates.popularity_rows(ordered, firsts)}
    by_user: dict[str, list[WatchEvent]] = {}
    for e in ordered:
        by_user.setdefault(e.user_id, []).append(e)
    pairs: dict[Pair, float] = {}
    for user_events in by_user.values():
        for pair, weight in aggregates.cooccurrence_pairs(user_events, {}, firsts).items():
            pairs[pair] = pairs.get(pair, 0.0) + weight
    return Aggregates(history, popularity, pairs)


def whole_users_pairs(
    events: Sequence[WatchEvent], expected: Aggregates, stored: Aggregates
) -> Aggregates:
    """``expected`` with pairs recomputed from the users none of whose events were dropped.

    A user lost events when a stored history row of theirs counts more watches than
    the kept events do, or has none left; the others' pairs are a lower bound of the
    stored sums (every user adds weight >= 0).
    """
    partial = {
        user
        for (user, item), row in stored.history.items()
        if (user, item) not in expected.history or expected.history[(user, item)].count < row.count
    }
    pairs = recompute(e for e in events if e.user_id not in partial).cooccurrence
    return attrs.evolve(expected, cooccurrence=pairs)


def compare(
    expected: Aggregates, stored: Aggregates, pruned_below: float = 0.0, lower_bound: bool = False
) -> Diff:
    """What ``stored`` gets wrong, table by table (``expected`` is the recomputation).

    ``pruned_below`` (stored units: the floor times ``pair_scale`` of now, 0 when the
    folder never prunes) excuses a pair stored below its recomputed weight by less than
    that: the folder deleted it when its weight read below the floor (and whatever was
    stored since came after). Every other pair is compared exactly, as before.
    ``lower_bound``: stored only has to cover ``expected`` (module docstring).
    """
    history = _compare_rows(
        "user_history", expected.history, stored.history, _history_fields, lower_bound
    )
    popularity = _compare_rows(
        "item_popularity", expected.popularity, stored.popularity, _popularity_fields, lower_bound
    )
    pairs = _compare_pairs(expected.cooccurrence, stored.cooccurrence, pruned_below, lower_bound)
    counts = {"user_history": len(history), "item_popularity": len(popularity),
              "item_cooccurrence": len(pairs)}  # fmt: skip
    return Diff(tuple(history + popularity + pairs), counts)


def _history_fields(row: HistoryRow) -> dict[str, object]:
    return {"first_watched_at": row.first_at, "last_watched_at": row.last_at,
            "watch_count": row.count}  # fmt: skip


def _popularity_fields(row: PopularityRow) -> dict[str, object]:
    return {"watch_count": row.watch_count, "user_count": row.user_count,
            "log_score": row.log_score, "last_at": row.last_at}  # fmt: skip


def _same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=REL_TOLERANCE, abs_tol=ABS_TOLERANCE)
    return a == b


def _covers(name: str, want: object, have: object) -> bool:
    """``have`` (stored) accounts for at least what ``want`` (recomputed) does."""
    if _same(want, have):
        return True
    if name == "first_watched_at":
        return bool(have <= want)  # type: ignore[operator]
    return bool(have >= want)  # type: ignore[operator]


def _equals(_name: str, want: object, have: object) -> bool:
    """``have`` (stored) is ``want`` (recomputed): the exact mode's test."""
    return _same(want, have)


def _compare_rows(
    table: str,
    expected: Mapping[K, R],
    stored: Mapping[K, R],
    fields: Callable[[R], dict[str, object]],
    lower_bound: bool = False,
) -> list[str]:
    agrees = _covers if lower_bound else _equals
    lines = []
    for key in sorted(set(expected) | set(stored), key=repr):
        if lower_bound and key not in expected:
            continue  # built from events retention dropped
        if key not in stored:
            lines.append(f"{table} {_key(key)}: missing (recomputed {_row(fields(expected[key]))})")
        elif key not in expected:
            lines.append(
                f"{table} {_key(key)}: stored {_row(fields(stored[key]))}, no event implies it"
            )
        else:
            wanted, had = fields(expected[key]), fields(stored[key])
            lines += [
                f"{table} {_key(key)}: {name} stored {_show(had[name])}, recomputed {_show(value)}"
                for name, value in wanted.items()
                if not agrees(name, value, had[name])
            ]
    return lines


def _compare_pairs(
    expected: Mapping[Pair, float],
    stored: Mapping[Pair, float],
    pruned_below: float,
    lower_bound: bool = False,
) -> list[str]:
    lines = []
    for pair in sorted(set(expected) | set(stored)):
        want, have = expected.get(pair, 0.0), stored.get(pair, 0.0)
        if lower_bound and have >= want:
            continue
        # Relative only: weights are in PAIR_EPOCH's units (1e-13 for a pair of 1997), and
        # a sum of positive terms has a relative error whatever its order.
        if not math.isclose(want, have, rel_tol=REL_TOLERANCE) and not (
            have < want < have + pruned_below
        ):
            lines.append(
                f"item_cooccurrence {_key(pair)}: weight stored {have!r}, recomputed {want!r}"
            )
    return lines


def _show(value: object) -> str:
    return value.isoformat() if isinstance(value, dt.datetime) else repr(value)


def _row(fields: dict[str, object]) -> str:
    return ", ".join(f"{name}={_show(value)}" for name, value in fields.items())


def _key(key: object) -> str:
    return "/".join(key) if isinstance(key, tuple) else str(key)


def stored_pairs(
    folded: Iterable[tuple[str, str, float]], pending: Iterable[tuple[str, str, float]]
) -> dict[Pair, float]:
    """``item_cooccurrence`` with every pending increment added (what a fold would leave)."""
    pairs: dict[Pair, float] = {}
    for item, other, weight in [*folded, *pending]:
        pairs[(item, other)] = pairs.get((item, other), 0.0) + weight
    return pairs


def summary(diff: Diff, events: int, limit: int, lower_bound: bool = False) -> Sequence[str]:
    """The report ``reco check-aggregates`` prints: mode, counts, the first ``limit`` lines."""
    mode = (
        "mode: lower bound (retention may have dropped events; stored must cover the rest)"
        if lower_bound
        else "mode: exact (watch_events holds the full history)"
    )
    return [mode, *_verdict(diff, events, limit)]


def _verdict(diff: Diff, events: int, limit: int) -> Sequence[str]:
    if diff.equal:
        return [f"aggregates match a recomputation from {events} watch events"]
    counts = ", ".join(f"{table} {n}" for table, n in diff.counts.items() if n)
    shown = list(diff.lines[:limit])
    more = len(diff.lines) - len(shown)
    tail = [f"... and {more} more"] if more else []
    return [f"aggregates differ from a recomputation from {events} watch events ({counts}):",
            *(f"  {line}" for line in shown), *tail]  # fmt: skip
