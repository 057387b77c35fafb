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
