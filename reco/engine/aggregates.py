"""What one batch of new watch events adds to the aggregates: pure functions, no I/O.

apply_events (reco/engine/ingest.py) reads the little state these need, calls
them, and writes one upsert row per distinct key, sorted, so that concurrent
consumers lock rows in the same order (no deadlocks) and every increment is
additive (``x = x + EXCLUDED.x`` under the row lock: no lost updates).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence

import attrs

from reco.events import WatchEvent

# A first watch pairs with the user's last WINDOW distinct items; the pair
# weight is DECAY ** distance (0 = the item watched just before). Bounded so a
# batch of 1000 events writes at most WINDOW * 1000 pair rows.
COOCCURRENCE_WINDOW = 10
COOCCURRENCE_DECAY = 0.95
# Time-decayed ("trending") popularity: each watch adds exp((t - EPOCH) / TAU).
TRENDING_EPOCH = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
TRENDING_TAU_SECONDS = 14 * 24 * 3600.0
# Time-decayed pair weights: an increment made by a watch at t is stored times
# exp((t - PAIR_EPOCH) / PAIR_TAU), relative to a fixed epoch so that no increment
# ever rescales another row; divided by the same factor of an instant (pair_scale),
# a weight reads in that instant's units, and a pair last fed a TAU before weighs
# 1/e of a fresh one of equal count. Rows written before decay existed
# read as if fed at the epoch (close to when decay shipped). A constant, not a
# setting: every stored weight is in these units, so changing TAU or the epoch
# means rescaling the table (one UPDATE), not a restart.
PAIR_EPOCH = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
# 365 days (a half-life of 253): on ML-100K the shipped lists kept their figures
# within noise; 3 years was no better there and makes the bound 3x looser
# (docs/performance.md, "Bounded co-occurrence"). The floor, a setting, is the
# knob for the table's size.
PAIR_TAU_SECONDS = 365 * 24 * 3600.0
# The exponent is clamped to +-PAIR_EXPONENT_LIMIT: years 1 to 9999 are all valid
# instants (tools replay stored events unchecked), and exp(8000) overflows. exp(600)
# is ~4e260, so even 1e40 increments at the cap still sum to a finite double; with
# TAU = 365 days the clamp bites only before 1426 or after 2626 (the epoch must move,
# by rescaling, before then). A watch older than that weighs exp(-600): nothing.
PAIR_EXPONENT_LIMIT = 600.0


@attrs.frozen
class HistoryRow:
    user_id: str
    item_id: str
    first_at: dt.datetime
    last_at: dt.datetime
    count: int


@attrs.frozen
class PopularityRow:
    """Increments for one watched item."""

    item_id: str
    watch_count: int
    user_count: int
    log_score: float
    last_at: dt.datetime


def trending_exponent(at: dt.datetime) -> float:
    """The log of one watch's contribution to the trending score."""
    return (at - TRENDING_EPOCH).total_seconds() / TRENDING_TAU_SECONDS


def pair_exponent(at: dt.datetime) -> float:
    """The log of the factor a pair increment made at ``at`` is stored with (clamped)."""
    exponent = (at - PAIR_EPOCH).total_seconds() / PAIR_TAU_SECONDS
    return min(max(exponent, -PAIR_EXPONENT_LIMIT), PAIR_EXPONENT_LIMIT)


def pair_scale(at: dt.datetime) -> float:
    """What a stored pair weight is divided by to read it in the units of ``at``."""
    return math.exp(pair_exponent(at))


def log_add(a: float, b: float) -> float:
    """log(exp(a) + exp(b)) without overflow (the SQL upsert does the same)."""
    high, low = max(a, b), min(a, b)
    return high + math.log1p(math.exp(low - high))


def history_rows(events: Sequence[WatchEvent]) -> list[HistoryRow]:
    """One row per (user, item), sorted by key."""
    rows: dict[tuple[str, str], HistoryRow] = {}
    for e in events:
        key = (e.user_id, e.item_id)
        old = rows.get(key)
        if old is None:
            rows[key] = HistoryRow(e.user_id, e.item_id, e.occurred_at, e.occurred_at, 1)
        else:
            rows[key] = HistoryRow(
                e.user_id, e.item_id, min(old.first_at, e.occurred_at),
                max(old.last_at, e.occurred_at), old.count + 1,
            )  # fmt: skip
    return [rows[k] for k in sorted(rows)]


def popularity_rows(
    events: Sequence[WatchEvent], new_pairs: frozenset[tuple[str, str]]
) -> list[PopularityRow]:
    """One row per watched item, sorted; user_count counts first watches ever (``new_pairs``)."""
    rows: dict[str, PopularityRow] = {}
    firsts: set[tuple[str, str]] = set()
    for e in events:
        key = (e.user_id, e.item_id)
        first = key in new_pairs and key not in firsts
        firsts.add(key)
        exponent = trending_exponent(e.occurred_at)
        old = rows.get(e.item_id)
        if old is None:
            rows[e.item_id] = PopularityRow(e.item_id, 1, int(first), exponent, e.occurred_at)
        else:
            rows[e.item_id] = PopularityRow(
                e.item_id, old.watch_count + 1, old.user_count + int(first),
                log_add(old.log_score, exponent), max(old.last_at, e.occurred_at),
            )  # fmt: skip
    return [rows[k] for k in sorted(rows)]


def cooccurrence_pairs(
    events: Sequence[WatchEvent],
    windows: Mapping[str, Sequence[str]],
    new_pairs: frozenset[tuple[str, str]],
    *,
    window: int = COOCCURRENCE_WINDOW,
    decay: float = COOCCURRENCE_DECAY,
) -> dict[tuple[str, str], float]:
    """Pair weights to add, one per unordered pair keyed (lower id, higher id).

    ``windows[user]`` is the user's distinct items before this batch, most
    recent first; ``events`` are in time order. Only a user's first watch of
    an item pairs (a re-watch only refreshes its place in the window), so a
    pair's weight approximates "users who watched both, close together";
    each increment is scaled by :func:`pair_scale` of the watch that makes it
    (time decay, see PAIR_EPOCH).
    This runs once per batch over ~10 pairs per event: it is written for speed
    (powers computed once, one dict lookup per pair). Unsorted: the
    increments are appended, and the fold sorts (reco/folder/folding.py).
    """
    weights: dict[tuple[str, str], float] = {}
    powers = [decay**distance for distance in range(window)]
    recent = {user: list(items[:window]) for user, items in windows.items()}
    paired: set[tuple[str, str]] = set()
    get = weights.get
    for e in events:
        item = e.item_id
        items = recent.setdefault(e.user_id, [])
        key = (e.user_id, item)
        if key in new_pairs and key not in paired:
            paired.add(key)
            scale = pair_scale(e.occurred_at)
            for other, power in zip(items, powers, strict=False):
                if other != item:
                    pair = (item, other) if item < other else (other, item)
                    weights[pair] = get(pair, 0.0) + power * scale
        if item in items:
            items.remove(item)
        items.insert(0, item)
        del items[window:]
    return weights
