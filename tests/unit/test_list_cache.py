"""The kept lists' age bound (reco/engine/lists.py): due lists are rescored within a budget."""

from __future__ import annotations

import time
from collections.abc import Sequence

import pytest

from reco.engine.cache import MAX_AGE
from reco.engine.lists import HARD_AGE, RESCORE_GRACE, Key, ListCache
from reco.engine.scoring import Reason, RecommendationList, ScoredItem


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(time, "monotonic", fake)  # what reco.engine.lists reads
    return fake


def unchanged(sync: int, seeds: Sequence[str]) -> bool:
    return True


def key(n: int) -> Key:
    return (f"u{n}", 10, frozenset(), frozenset())


RECS = RecommendationList("cooccurrence", (ScoredItem("a", "A", 1.0, Reason("similar", "b")),))


def test_a_fresh_list_is_served_and_round_trips(clock: Clock) -> None:
    cache = ListCache(10, max_bytes=2**30)
    cache.put(key(1), 7, 0, ["b"], RECS)
    assert cache.candidate(key(1), unchanged) == 7
    assert cache.get(key(1), 7) == RECS
    assert cache.get(key(1), 8) is None


def test_due_lists_are_rescored_at_the_budgets_pace_and_served_meanwhile(clock: Clock) -> None:
    """1,000 lists scored together come due together: about len / MAX_AGE a second are
    rescored, the others served as kept until their turn (or HARD_AGE)."""
    cache = ListCache(2000, max_bytes=2**30)
    for n in range(1000):
        cache.put(key(n), n, 0, ["b"], RECS)
    clock.now += 1.25 * MAX_AGE  # every one is due
    rate = 1000 / MAX_AGE
    rescored = 0
    for second in range(10):
        clock.now += 1.0
        for n in range(100 * second, 100 * second + 100):  # 100 requests a second
            if cache.candidate(key(n), unchanged) is None:
                rescored += 1
                cache.put(key(n), n, 0, ["b"], RECS)
    assert rate * 9 <= rescored <= rate * 11  # without the budget: all 1,000
    assert cache.deferred == 1000 - rescored
    clock.now += HARD_AGE  # past the hard bound: rescored whatever the budget
    assert all(cache.candidate(key(n), unchanged) is None for n in range(1000))


def test_a_due_list_taken_for_a_rescore_is_served_to_the_others_meanwhile(clock: Clock) -> None:
    cache = ListCache(10, max_bytes=2**30)
    cache.put(key(1), 7, 0, ["b"], RECS)
    clock.now += 1.25 * MAX_AGE + 10  # due, and a budget to rescore it
    assert cache.candidate(key(1), unchanged) is None  # this request rescores
    assert cache.candidate(key(1), unchanged) == 7  # a concurrent one is served the kept list
    clock.now += RESCORE_GRACE + 10
    assert cache.candidate(key(1), unchanged) is None  # the rescore never came: due again


def test_a_model_change_drops_a_list_whatever_its_age(clock: Clock) -> None:
    cache = ListCache(10, max_bytes=2**30)
    cache.put(key(1), 7, 0, ["b"], RECS)
    assert cache.candidate(key(1), lambda sync, seeds: False) is None
    assert len(cache) == 0


def test_changes_are_remembered_longer_than_any_kept_list_lives() -> None:
    """A change the model cache forgot could let a stale kept list pass unchanged_since."""
    from reco.engine import cache, lists

    assert cache.FORGET > lists.HARD_AGE + lists.RESCORE_GRACE
