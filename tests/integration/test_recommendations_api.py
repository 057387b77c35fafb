"""The read API against a real database: shape, filters, validation, impressions."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest

from reco.api.problems import Problem
from reco.engine.recommender import RecommendationList, Recommender
from reco.errors import DatabaseUnavailable
from reco.impressions.model import Impression
from reco.settings import Settings
from tests.support.api import (
    Api,
    assert_problem,
    item,
    put_items,
    running_api,
    seed_history,
    seed_popularity,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

# p0 is the most popular; p0..p5 are Drama, p6..p11 Comedy.
CATALOGUE = [item(f"p{i}", genres=["Drama" if i < 6 else "Comedy"]) for i in range(12)]
SCORES = {f"p{i}": 100.0 - i for i in range(12)}


class RecordingSink:
    """Keeps every impression submitted."""

    def __init__(self) -> None:
        self.impressions: list[Impression] = []

    async def submit(self, impression: Impression) -> None:
        self.impressions.append(impression)


class FullSink:
    """A sink in sync mode that found no room in time."""

    async def submit(self, impression: Impression) -> None:
        raise Problem(503, "the impression buffer is full", slug="overloaded")


class DownRecommender(Recommender):
    """An engine whose database is unreachable."""

    async def for_user(self, user_id: str, **kwargs: object) -> RecommendationList:
        raise DatabaseUnavailable("no pool connection within 2 s")


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    async with running_api(settings) as running:
        await put_items(running, CATALOGUE)
        await seed_popularity(running, SCORES)
        yield running


def ids(response_body: dict[str, object]) -> list[str]:
    items = response_body["items"]
    assert isinstance(items, list)
    return [entry["item_id"] for entry in items]


class TestUserRecommendations:
    async def test_cold_user_gets_popular(self, api: Api) -> None:
        """A user without history gets 200 with popular items, in the documented shape."""
        response = await api.client.get("/v1/users/newcomer/recommendations")
        assert response.status_code == 200
        body = response.json()
        assert set(body) == {"recommendation_id", "user_id", "algorithm", "items"}
        uuid.UUID(body["recommendation_id"])
        assert body["user_id"] == "newcomer"
        assert ids(body) == [f"p{i}" for i in range(10)]
        assert {entry["reason"]["type"] for entry in body["items"]} <= {"popular", "trending"}

    async def test_watched_items_never_returned(self, api: Api) -> None:
        """Items in the user's history are never recommended."""
        await seed_history(api, "u1", ["p0", "p2", "p7"])
        body = (await api.client.get("/v1/users/u1/recommendations?limit=100")).json()
        assert not {"p0", "p2", "p7"} & set(ids(body))
        assert len(ids(body)) == 9  # fewer than limit only because the catalogue ran out

    async def test_inactive_items_never_returned(self, api: Api) -> None:
        """An item marked inactive is in no list."""
        assert (await api.client.delete("/v1/items/p1", headers=api.auth)).status_code == 204
        for path in ("/v1/users/u2/recommendations?limit=100", "/v1/items/popular?limit=100"):
            assert "p1" not in ids((await api.client.get(path)).json())

    async def test_exclude_and_genre(self, api: Api) -> None:
        """exclude= removes items; genre= keeps only items of that genre."""
        path = "/v1/users/u3/recommendations?genre=Comedy&exclude=p6&exclude=p8&limit=3"
        body = (await api.client.get(path)).json()
        assert ids(body) == ["p7", "p9", "p10"]

    @pytest.mark.parametrize("limit", ["0", "101", "abc", "1.5", "-1", ""])
    async def test_bad_limit_is_400(self, api: Api, limit: str) -> None:
        """A limit outside 1..100 or not an integer is a 400 problem naming limit."""
        response = await api.client.get(f"/v1/users/u/recommendations?limit={limit}")
        assert "limit" in assert_problem(response, 400)["detail"]

    async def test_unknown_parameter_is_400(self, api: Api) -> None:
        """A misspelt query parameter is named in a 400 problem."""
        response = await api.client.get("/v1/users/u/recommendations?limt=5")
        assert "limt" in assert_problem(response, 400)["detail"]

    async def test_long_user_id_is_400(self, api: Api) -> None:
        """A user id over 128 characters is a 400 problem."""
        response = await api.client.get(f"/v1/users/{'u' * 129}/recommendations")
        assert "user_id" in assert_problem(response, 400)["detail"]


class TestSimilarAndPopular:
    async def test_popular_is_not_an_item_id(self, api: Api) -> None:
        """/v1/items/popular is the popular list, not a lookup of item 'popular'."""
        body = (await api.client.get("/v1/items/popular?limit=3")).json()
        assert body["user_id"] is None
        assert ids(body) == ["p0", "p1", "p2"]

    async def test_popular_genre(self, api: Api) -> None:
        """genre= restricts the popular list."""
        body = (await api.client.get("/v1/items/popular?genre=Comedy&limit=2")).json()
        assert ids(body) == ["p6", "p7"]

    async def test_similar_unknown_item_is_404(self, api: Api) -> None:
        """Similar items of an unknown item is a 404 problem."""
        assert_problem(await api.client.get("/v1/items/nope/similar"), 404)

    async def test_similar_known_item(self, api: Api) -> None:
        """Similar items of a known item is a list without a user."""
        response = await api.client.get("/v1/items/p0/similar?limit=5")
        assert response.status_code == 200
        assert response.json()["user_id"] is None
        assert "p0" not in ids(response.json())

    async def test_similar_bad_limit_is_400(self, api: Api) -> None:
        """The similar endpoint checks limit like the others."""
        assert_problem(await api.client.get("/v1/items/p0/similar?limit=1000"), 400)


class TestImpressions:
    async def test_every_list_is_submitted(self, api: Api) -> None:
        """Each served list is submitted once, with its id, positions and scores."""
        sink = RecordingSink()
        api.service.state.impressions = sink
        user = (await api.client.get("/v1/users/u9/recommendations?limit=3")).json()
        await api.client.get("/v1/items/popular?limit=2")
        await api.client.get("/v1/items/p0/similar")
        assert [i.endpoint for i in sink.impressions] == [
            "user_recommendations", "popular", "similar",
        ]  # fmt: skip
        first = sink.impressions[0]
        assert str(first.recommendation_id) == user["recommendation_id"]
        assert first.user_id == "u9"
        assert first.algorithm == user["algorithm"]
        assert [(s.item_id, s.position, s.score) for s in first.items] == [
            (entry["item_id"], n, entry["score"]) for n, entry in enumerate(user["items"], 1)
        ]
        assert sink.impressions[1].user_id is None

    async def test_full_sink_answers_503(self, api: Api) -> None:
        """A 503 from the sink (sync mode, no room) reaches the client as a problem."""
        api.service.state.impressions = FullSink()
        assert_problem(await api.client.get("/v1/users/u/recommendations"), 503)


class TestUnavailable:
    async def test_transient_database_fault_is_503(self, api: Api) -> None:
        """A database outage answers 503 with Retry-After, not 500."""
        assert api.service.state.database is not None
        api.service.state.recommender = DownRecommender(
            api.service.state.database, api.service.state.settings.engine
        )
        response = await api.client.get("/v1/users/u/recommendations")
        assert_problem(response, 503)
        assert response.headers["retry-after"] == "1"
