"""What a batch adds to the aggregates (reco/engine/aggregates.py): pure, no database."""

from __future__ import annotations

import datetime as dt

import pytest

from reco.engine import aggregates
from reco.events import WatchEvent

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def ev(n: int, user: str, item: str, minutes: int = 0) -> WatchEvent:
    return WatchEvent(f"e{n}", user, item, T0 + dt.timedelta(minutes=minutes or n))


class TestHistoryRows:
    def test_one_row_per_user_item_sorted(self) -> None:
        rows = aggregates.history_rows([ev(1, "u2", "a"), ev(2, "u1", "b"), ev(3, "u2", "a")])
        assert [(r.user_id, r.item_id, r.count) for r in rows] == [("u1", "b", 1), ("u2", "a", 2)]
        assert rows[1].first_at == T0 + dt.timedelta(minutes=1)
        assert rows[1].last_at == T0 + dt.timedelta(minutes=3)


class TestCooccurrence:
    def test_first_watch_pairs_with_the_window_by_distance(self) -> None:
        """The item watched just before weighs 1, the one before DECAY, and so on."""
        events = [ev(1, "u", "c")]
        pairs = aggregates.cooccurrence_pairs(events, {"u": ["b", "a"]},
                                              frozenset({("u", "c")}), decay=0.5)  # fmt: skip
        assert pairs == {("a", "c"): 0.5, ("b", "c"): 1.0}

    def test_pairs_within_one_batch_follow_time_order(self) -> None:
        events = [ev(1, "u", "a"), ev(2, "u", "b"), ev(3, "u", "c")]
        new = frozenset({("u", "a"), ("u", "b"), ("u", "c")})
        pairs = aggregates.cooccurrence_pairs(events, {}, new, decay=0.5)
        assert pairs == {("a", "b"): 1.0, ("a", "c"): 0.5, ("b", "c"): 1.0}

    def test_rewatch_pairs_nothing_but_refreshes_recency(self) -> None:
        """A re-watched item adds no pairs; it moves to the front of the window."""
        events = [ev(1, "u", "a"), ev(2, "u", "c")]
        pairs = aggregates.cooccurrence_pairs(events, {"u": ["b", "a"]},
                                              frozenset({("u", "c")}), decay=0.5)  # fmt: skip
        assert pairs == {("a", "c"): 1.0, ("b", "c"): 0.5}

    def test_window_bounds_the_fan_out(self) -> None:
        window = [f"w{i}" for i in range(50)]
        pairs = aggregates.cooccurrence_pairs([ev(1, "u", "x")], {"u": window},
                                              frozenset({("u", "x")}), window=3)  # fmt: skip
        assert len(pairs) == 3

    def test_users_do_not_pair_across(self) -> None:
        events = [ev(1, "u1", "a"), ev(2, "u2", "b")]
        new = frozenset({("u1", "a"), ("u2", "b")})
        assert aggregates.cooccurrence_pairs(events, {}, new) == {}


class TestPopularity:
    def test_counts_watches_and_first_watchers(self) -> None:
        events = [ev(1, "u1", "a"), ev(2, "u1", "a"), ev(3, "u2", "a")]
        rows = aggregates.popularity_rows(events, frozenset({("u1", "a"), ("u2", "a")}))
        assert [(r.item_id, r.watch_count, r.user_count) for r in rows] == [("a", 3, 2)]

    def test_later_watches_count_more_in_trending(self) -> None:
        rows = aggregates.popularity_rows([ev(1, "u", "old", 1), ev(2, "u", "new", 60 * 24 * 30)],
                                          frozenset())  # fmt: skip
        by_id = {r.item_id: r for r in rows}
        assert by_id["new"].log_score > by_id["old"].log_score

    def test_one_row_per_watched_item_sorted(self) -> None:
        rows = aggregates.popularity_rows([ev(1, "u", "b"), ev(2, "u", "a")], frozenset())
        assert [r.item_id for r in rows] == ["a", "b"]
        assert rows[0].watch_count == 1
        assert rows[0].log_score == pytest.approx(aggregates.trending_exponent(rows[0].last_at))
