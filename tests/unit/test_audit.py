"""The recomputation behind ``reco check-aggregates`` (reco/engine/audit.py), without I/O."""

from __future__ import annotations

import datetime as dt

import pytest

from reco.engine import aggregates, audit
from reco.events import WatchEvent

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def watch(n: int, user: str, item: str) -> WatchEvent:
    return WatchEvent(f"e{n}", user, item, T0 + dt.timedelta(seconds=n))


EVENTS = [watch(0, "u", "a"), watch(1, "u", "b"), watch(2, "u", "a"), watch(3, "v", "a")]


class TestRecompute:
    def test_batches_in_time_order_add_up_to_the_replay(self) -> None:
        """Two batches, the second's window taken from the first's history, as the consumer does."""
        first, second = EVENTS[:2], EVENTS[2:]
        pairs = aggregates.cooccurrence_pairs(first, {}, frozenset({("u", "a"), ("u", "b")}))
        more = aggregates.cooccurrence_pairs(second, {"u": ["b", "a"]}, frozenset({("v", "a")}))
        assert {**pairs, **more} == audit.recompute(EVENTS).cooccurrence
        assert pairs == {("a", "b"): pytest.approx(1.0, rel=1e-6)}  # a second past PAIR_EPOCH

    def test_counts_and_history(self) -> None:
        result = audit.recompute(reversed(EVENTS))  # the input order does not matter
        assert result.history[("u", "a")].count == 2
        assert (result.popularity["a"].watch_count, result.popularity["a"].user_count) == (3, 2)


class TestCompare:
    def test_equal_within_the_float_tolerance(self) -> None:
        want = audit.recompute(EVENTS)
        row = want.popularity["a"]
        nudged = aggregates.PopularityRow(
            "a", row.watch_count, row.user_count, row.log_score * (1 + 1e-12), row.last_at
        )
        have = audit.Aggregates(want.history, {**want.popularity, "a": nudged}, want.cooccurrence)
        assert audit.compare(want, have).equal

    def test_a_pair_no_event_implies_is_reported(self) -> None:
        want = audit.recompute(EVENTS)
        have = audit.Aggregates(
            want.history, want.popularity, {**want.cooccurrence, ("b", "c"): 0.5}
        )
        diff = audit.compare(want, have)
        assert diff.lines == ("item_cooccurrence b/c: weight stored 0.5, recomputed 0.0",)
        assert audit.summary(diff, 4, 10)[1] == (
            "aggregates differ from a recomputation from 4 watch events (item_cooccurrence 1):"
        )

    def test_pending_increments_add_to_the_folded_weights(self) -> None:
        pairs = audit.stored_pairs([("a", "b", 1.0)], [("a", "b", 0.5), ("a", "c", 0.25)])
        assert pairs == {("a", "b"): 1.5, ("a", "c"): 0.25}
