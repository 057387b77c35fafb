"""Property tests (hypothesis) of the trending-score math over the whole range of years 1-9999.

Issue 10, finding 1: the decayed popularity must be representable for any
two watches the contract accepts, however far apart. These check the pure
Python half (reco/engine/aggregates.py); the SQL half, the upsert's log-add
in PostgreSQL, is tests/integration/test_scoring_sql.py.
"""

from __future__ import annotations

import datetime as dt
import math

from hypothesis import example, given, settings
from hypothesis import strategies as st

from reco.engine import scoring
from reco.engine.aggregates import log_add, trending_exponent

FIRST = dt.datetime(1, 1, 1, tzinfo=dt.UTC)
LAST = dt.datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=dt.UTC)
OFFSETS = st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(
    lambda minutes: dt.timezone(dt.timedelta(minutes=minutes))
)


@st.composite
def instants(draw: st.DrawFn) -> dt.datetime:
    """Any instant of years 1-9999 (UTC), seen from a random UTC offset when that stays in range."""
    naive = draw(
        st.datetimes(min_value=FIRST.replace(tzinfo=None), max_value=LAST.replace(tzinfo=None))
    )
    at = naive.replace(tzinfo=dt.UTC)
    try:
        return at.astimezone(draw(OFFSETS))
    except OverflowError:
        return at


PAIRS = settings(max_examples=500, derandomize=True, database=None, deadline=None)


class TestTrendingExponent:
    @PAIRS
    @given(instants())
    @example(FIRST)
    @example(LAST)
    def test_finite(self, at: dt.datetime) -> None:
        """Every accepted instant has a finite exponent."""
        assert math.isfinite(trending_exponent(at))

    @PAIRS
    @given(instants(), instants())
    def test_monotonic(self, a: dt.datetime, b: dt.datetime) -> None:
        """A later watch never weighs less than an earlier one."""
        if a <= b:
            assert trending_exponent(a) <= trending_exponent(b)


class TestLogAdd:
    @PAIRS
    @given(instants(), instants())
    @example(FIRST, LAST)
    @example(dt.datetime(1997, 9, 20, tzinfo=dt.UTC), dt.datetime(2026, 1, 5, tzinfo=dt.UTC))
    def test_finite_and_bounded(self, a: dt.datetime, b: dt.datetime) -> None:
        """log(exp(x) + exp(y)) of two watches is finite, within [max, max + log 2]."""
        x, y = trending_exponent(a), trending_exponent(b)
        total = log_add(x, y)
        assert math.isfinite(total)
        assert max(x, y) <= total <= max(x, y) + math.log(2) + 1e-9 * max(1.0, abs(total))

    @PAIRS
    @given(instants(), instants())
    def test_symmetric(self, a: dt.datetime, b: dt.datetime) -> None:
        x, y = trending_exponent(a), trending_exponent(b)
        assert log_add(x, y) == log_add(y, x)


# Any item ids (all of Unicode) and positive model weights, for the array form of the model part.
_ITEM_IDS = st.text(min_size=1, max_size=8)
_LISTS = st.dictionaries(
    _ITEM_IDS,
    st.dictionaries(_ITEM_IDS, st.floats(min_value=1e-300, max_value=1e300), max_size=12),
    max_size=12,
)


class TestModelArrays:
    """scoring.ModelArrays.summed (numpy, on the hot path) is scoring.summed, float for float."""

    @settings(max_examples=300, derandomize=True, database=None, deadline=None)
    @given(_LISTS, st.lists(_ITEM_IDS, max_size=16), st.integers(1, 4))
    def test_same_sums_as_the_reference(
        self, lists: dict[str, dict[str, float]], extra: list[str], size: int
    ) -> None:
        arrays = scoring.ModelArrays(1, size)  # a small bound: lists are evicted and rebuilt
        seeds = [*lists, *extra]
        for _ in range(2):  # the second time from the kept arrays
            got = arrays.summed(seeds, lists)
            want = scoring.summed([lists[s] for s in seeds if s in lists])
            assert got == want
        assert len(arrays) <= size
