"""What a batch adds to the aggregates (reco/engine/aggregates.py): pure, no database."""

from __future__ import annotations

import datetime as dt
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reco.engine import aggregates
from reco.events import WatchEvent

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def ev(n: int, user: str, item: str, minutes: int = 0) -> WatchEvent:
    return WatchEvent(f"e{n}", user, item, T0 + dt.timedelta(minutes=minutes or n))


def near(pairs: dict[tuple[str, str], float]) -> object:
    """``pairs`` up to the time decay of a few minutes past PAIR_EPOCH (about 1e-5)."""
    return {pair: pytest.approx(w, rel=1e-4) for pair, w in pairs.items()}


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
        assert pairs == near({("a", "c"): 0.5, ("b", "c"): 1.0})

    def test_pairs_within_one_batch_follow_time_order(self) -> None:
        events = [ev(1, "u", "a"), ev(2, "u", "b"), ev(3, "u", "c")]
        new = frozenset({("u", "a"), ("u", "b"), ("u", "c")})
        pairs = aggregates.cooccurrence_pairs(events, {}, new, decay=0.5)
        assert pairs == near({("a", "b"): 1.0, ("a", "c"): 0.5, ("b", "c"): 1.0})

    def test_rewatch_pairs_nothing_but_refreshes_recency(self) -> None:
        """A re-watched item adds no pairs; it moves to the front of the window."""
        events = [ev(1, "u", "a"), ev(2, "u", "c")]
        pairs = aggregates.cooccurrence_pairs(events, {"u": ["b", "a"]},
                                              frozenset({("u", "c")}), decay=0.5)  # fmt: skip
        assert pairs == near({("a", "c"): 1.0, ("b", "c"): 0.5})

    def test_window_bounds_the_fan_out(self) -> None:
        window = [f"w{i}" for i in range(50)]
        pairs = aggregates.cooccurrence_pairs([ev(1, "u", "x")], {"u": window},
                                              frozenset({("u", "x")}), window=3)  # fmt: skip
        assert len(pairs) == 3

    def test_users_do_not_pair_across(self) -> None:
        events = [ev(1, "u1", "a"), ev(2, "u2", "b")]
        new = frozenset({("u1", "a"), ("u2", "b")})
        assert aggregates.cooccurrence_pairs(events, {}, new) == {}


class TestPairDecay:
    def test_an_old_pair_weighs_less_by_exp_of_its_age_over_tau(self) -> None:
        """Equal counts, one a TAU older: in the units of any instant, 1/e of the other."""
        tau = dt.timedelta(seconds=aggregates.PAIR_TAU_SECONDS)
        old = WatchEvent("o", "u1", "b", T0 + dt.timedelta(days=3))
        new = WatchEvent("n", "u2", "b", T0 + dt.timedelta(days=3) + tau)
        new_pairs = frozenset({("u1", "b"), ("u2", "b")})
        pairs = aggregates.cooccurrence_pairs([old, new], {"u1": ["a"], "u2": ["c"]}, new_pairs)
        assert pairs[("a", "b")] / pairs[("b", "c")] == pytest.approx(math.exp(-1), rel=1e-12)
        now = T0 + 5 * tau
        today = {p: w / aggregates.pair_scale(now) for p, w in pairs.items()}
        assert today[("b", "c")] == pytest.approx(
            math.exp(-4 + 3 * 86400 / aggregates.PAIR_TAU_SECONDS), rel=1e-9
        )

    def test_a_fresh_pair_reads_its_count_today(self) -> None:
        at = dt.datetime(2031, 6, 1, tzinfo=dt.UTC)
        pairs = aggregates.cooccurrence_pairs(
            [WatchEvent("e", "u", "b", at)], {"u": ["a"]}, frozenset({("u", "b")})
        )
        assert pairs[("a", "b")] / aggregates.pair_scale(at) == pytest.approx(1.0, rel=1e-12)

    @given(st.datetimes(timezones=st.just(dt.UTC)))
    def test_any_instant_gives_a_finite_positive_scale(self, at: dt.datetime) -> None:
        """Years 1 to 9999 are valid: the exponent is clamped, no overflow, no zero."""
        scale = aggregates.pair_scale(at)
        assert math.isfinite(scale)
        assert scale > 0
        assert abs(aggregates.pair_exponent(at)) <= aggregates.PAIR_EXPONENT_LIMIT
        # 1e40 increments at the cap still sum to a finite weight
        assert math.isfinite(scale * 1e40 * 10)

    def test_the_clamp_keeps_the_order_of_time(self) -> None:
        instants = [dt.datetime(y, 1, 1, tzinfo=dt.UTC) for y in (1, 100, 1997, 2026, 2500, 9999)]
        scales = [aggregates.pair_scale(at) for at in instants]
        assert scales == sorted(scales)
        assert scales[0] == scales[1] == math.exp(-aggregates.PAIR_EXPONENT_LIMIT)
        assert scales[-1] == math.exp(aggregates.PAIR_EXPONENT_LIMIT)


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
