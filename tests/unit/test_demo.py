"""The demo data of ``reco dev --demo``: seeded, Zipf-popular, users with tastes; the banner."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest
from reco_dev.devstack import demo, welcome

from reco.events import parse_watch_event

NOW = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def data() -> demo.DemoData:
    return demo.generate(NOW)


class TestGenerate:
    def test_same_seed_same_data(self, data: demo.DemoData) -> None:
        """Generation depends on the seed and the clock only."""
        assert demo.generate(NOW) == data
        assert demo.generate(NOW, seed=demo.SEED + 1) != data

    def test_sizes(self, data: demo.DemoData) -> None:
        """A few hundred items and users, some thousands of events, every id distinct."""
        assert len(data.items) == demo.ITEMS
        assert len(data.users) == demo.USERS
        assert 3000 <= len(data.events) <= 12000
        assert len({e.event_id for e in data.events}) == len(data.events)
        assert {e.item_id for e in data.events} <= {i.item_id for i in data.items}

    def test_events_pass_the_contract_and_are_in_the_past(self, data: demo.DemoData) -> None:
        """Every event is valid by the watch-event contract and dated before now."""
        for event in data.events[:500]:
            assert parse_watch_event(event.to_json(), now=NOW) == event
        assert max(e.occurred_at for e in data.events) < NOW

    def test_popularity_is_long_tailed(self, data: demo.DemoData) -> None:
        """Zipf: the 10% most watched items take far more than 10% of the watches."""
        counts = sorted(Counter(e.item_id for e in data.events).values(), reverse=True)
        head = sum(counts[: demo.ITEMS // 10])
        assert head / sum(counts) > 0.3

    def test_users_mostly_watch_their_genres(self, data: demo.DemoData) -> None:
        """Most of a user's watches are within their favourite genres."""
        genres = {i.item_id: set(i.genres) for i in data.items}
        within = sum(1 for e in data.events if genres[e.item_id] & set(data.tastes[e.user_id]))
        assert within / len(data.events) > 0.7


class TestBanner:
    def test_prints_the_token_and_three_calls(self, data: demo.DemoData) -> None:
        """The banner has the token and the recommendations, similar and POST examples."""
        examples = welcome.Examples.of(data, NOW)
        text = welcome.banner("http://127.0.0.1:8080", "tok-123", examples, "summary")
        assert "development API token (this process only): tok-123" in text
        assert f"/v1/users/{examples.user_id}/recommendations" in text
        assert f"/v1/items/{examples.similar_to}/similar" in text
        assert "Authorization: Bearer tok-123" in text
        assert '"occurred_at":"2026-12-01T12:00:00Z"' in text

    def test_the_example_watch_is_new_to_the_user(self, data: demo.DemoData) -> None:
        """The POST example is an item the example user has not watched, in their genres."""
        examples = welcome.Examples.of(data, NOW)
        watched = {e.item_id for e in data.events if e.user_id == examples.user_id}
        assert examples.to_watch not in watched
        assert examples.similar_to in watched

    def test_without_demo_data(self) -> None:
        """Plain ``reco dev`` prints the token and how to get demo data."""
        text = welcome.banner("http://h:1", "tok", None, "an empty catalogue")
        assert "tok" in text
        assert "--demo" in text

    def test_development_token_is_long_enough_for_production_rules(self) -> None:
        """The generated token is random and at least 32 characters."""
        assert len(welcome.development_token()) >= 32
        assert welcome.development_token() != welcome.development_token()
