"""The catalogue endpoints against a real database: auth, validation, upserts, deactivation."""

from __future__ import annotations

from collections.abc import AsyncIterator

import attrs
import pytest

from reco.db.pool import Database
from reco.settings import Settings
from tests.support.api import Api, assert_problem, item, put_items, running_api

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    async with running_api(settings) as running:
        yield running


WRITES = [
    ("PUT", "/v1/items/a", {"title": "A"}),
    ("POST", "/v1/items", {"items": [{"item_id": "a", "title": "A"}]}),
    ("DELETE", "/v1/items/a", None),
]


class TestAuth:
    @pytest.mark.parametrize(("method", "path", "body"), WRITES)
    async def test_no_token_is_401_with_challenge(
        self, api: Api, method: str, path: str, body: object
    ) -> None:
        """A write without credentials is 401 with WWW-Authenticate: Bearer."""
        response = await api.client.request(method, path, json=body)
        assert_problem(response, 401)
        assert response.headers["www-authenticate"].startswith("Bearer")

    @pytest.mark.parametrize(("method", "path", "body"), WRITES)
    async def test_wrong_token_is_403(self, api: Api, method: str, path: str, body: object) -> None:
        """A write with a token that matches none configured is 403."""
        headers = {"Authorization": "Bearer not-the-token"}
        response = await api.client.request(method, path, json=body, headers=headers)
        assert_problem(response, 403)

    async def test_other_scheme_is_401(self, api: Api) -> None:
        """Basic credentials are not a bearer token: 401."""
        headers = {"Authorization": "Basic dXNlcjpwYXNz"}
        response = await api.client.put("/v1/items/a", json={"title": "A"}, headers=headers)
        assert_problem(response, 401)

    async def test_reads_need_no_token(self, api: Api) -> None:
        """GET is open: an unknown item is a 404, not a 401."""
        assert_problem(await api.client.get("/v1/items/nope"), 404)


class TestPutItem:
    async def test_create_then_replace(self, api: Api) -> None:
        """The first PUT creates (201), the next replaces (200); GET reads the latest."""
        first = await api.client.put(
            "/v1/items/m1", json={"title": "One", "genres": ["Drama"]}, headers=api.auth
        )
        assert first.status_code == 201
        assert first.json()["active"] is True
        second = await api.client.put(
            "/v1/items/m1",
            json={"title": "Uno", "genres": [], "active": False, "attributes": {"year": 1995}},
            headers=api.auth,
        )
        assert second.status_code == 200
        body = (await api.client.get("/v1/items/m1")).json()
        assert body["title"] == "Uno"
        assert body["genres"] == []
        assert body["active"] is False
        assert body["attributes"] == {"year": 1995}

    async def test_unknown_fields_are_named(self, api: Api) -> None:
        """Unknown body fields are rejected with 422 naming each of them."""
        response = await api.client.put(
            "/v1/items/m1", json={"title": "T", "colour": "red", "size": 3}, headers=api.auth
        )
        body = assert_problem(response, 422)
        assert "colour" in body["detail"]
        assert "size" in body["detail"]

    @pytest.mark.parametrize(
        ("body", "pointer"),
        [
            ({}, "/title"),
            ({"title": 3}, "/title"),
            ({"title": "T", "genres": "Drama"}, "/genres"),
            ({"title": "T", "genres": ["Drama", 7]}, "/genres/1"),
            ({"title": "T", "active": "yes"}, "/active"),
            ({"title": "T", "attributes": [1]}, "/attributes"),
        ],
    )
    async def test_bad_fields_are_422(self, api: Api, body: object, pointer: str) -> None:
        """A field of the wrong type is 422 with a pointer to it."""
        response = await api.client.put("/v1/items/m1", json=body, headers=api.auth)
        problem = assert_problem(response, 422)
        assert pointer in [error["pointer"] for error in problem["errors"]]

    async def test_bad_json_is_400(self, api: Api) -> None:
        """A body that is not JSON is 400."""
        response = await api.client.put("/v1/items/m1", content=b"{nope", headers=api.auth)
        assert "not valid JSON" in assert_problem(response, 400)["detail"]

    async def test_non_object_is_422(self, api: Api) -> None:
        """A JSON body that is not an object is 422."""
        response = await api.client.put("/v1/items/m1", json=["title"], headers=api.auth)
        assert "expected a JSON object" in assert_problem(response, 422)["detail"]

    @pytest.mark.parametrize("item_id", ["x" * 129, "popular"])
    async def test_bad_item_id_is_400(self, api: Api, item_id: str) -> None:
        """An over-long or reserved item id in the path is 400."""
        response = await api.client.put(f"/v1/items/{item_id}", json={"title": "T"},
                                        headers=api.auth)  # fmt: skip
        assert "item_id" in assert_problem(response, 400)["detail"]


class TestBatch:
    async def test_batch_upserts(self, api: Api) -> None:
        """A batch answers the count, and each item is readable."""
        items = [item(f"b{i}") for i in range(3)] + [item("b0", genres=["Comedy"])]
        response = await api.client.post("/v1/items", json={"items": items}, headers=api.auth)
        assert response.json() == {"upserted": 4}
        assert (await api.client.get("/v1/items/b0")).json()["genres"] == ["Comedy"]
        assert (await api.client.get("/v1/items/b2")).status_code == 200

    async def test_over_1000_is_422(self, api: Api) -> None:
        """More than 1000 items in one call is 422 and stores nothing."""
        items = [item(f"i{i}") for i in range(1001)]
        response = await api.client.post("/v1/items", json={"items": items}, headers=api.auth)
        assert "1001" in assert_problem(response, 422)["detail"]
        assert_problem(await api.client.get("/v1/items/i0"), 404)

    async def test_bad_entries_are_listed(self, api: Api) -> None:
        """Every bad entry is listed by pointer, and nothing is stored."""
        items = [item("ok"), {"title": "no id"}, {"item_id": "x", "title": 5}, "nope"]
        response = await api.client.post("/v1/items", json={"items": items}, headers=api.auth)
        pointers = [e["pointer"] for e in assert_problem(response, 422)["errors"]]
        assert pointers == ["/items/1/item_id", "/items/2/title", "/items/3"]
        assert_problem(await api.client.get("/v1/items/ok"), 404)

    async def test_empty_batch_is_422(self, api: Api) -> None:
        """An empty list is 422."""
        response = await api.client.post("/v1/items", json={"items": []}, headers=api.auth)
        assert_problem(response, 422)

    async def test_oversized_body_is_413(self, settings: Settings) -> None:
        """A body over RECO_MAX_BODY_BYTES is 413 as a problem."""
        async with running_api(attrs.evolve(settings, max_body_bytes=2048)) as small:
            items = [item(f"i{i}") for i in range(100)]
            response = await small.client.post(
                "/v1/items", json={"items": items}, headers=small.auth
            )
        assert_problem(response, 413)


class TestReadAndDelete:
    async def test_unknown_item_is_404(self, api: Api) -> None:
        """GET of an item never stored is a 404 problem."""
        assert_problem(await api.client.get("/v1/items/missing"), 404)

    async def test_delete_marks_inactive(self, api: Api) -> None:
        """DELETE answers 204 and the item stays readable, inactive."""
        await put_items(api, [item("d1")])
        response = await api.client.delete("/v1/items/d1", headers=api.auth)
        assert response.status_code == 204
        assert (await api.client.get("/v1/items/d1")).json()["active"] is False

    async def test_delete_unknown_is_404(self, api: Api) -> None:
        """DELETE of an unknown item is a 404 problem."""
        assert_problem(await api.client.delete("/v1/items/nope", headers=api.auth), 404)


class TestUnavailable:
    async def test_database_outage_is_503(self, api: Api) -> None:
        """Reads and writes answer 503 with Retry-After while the database is unreachable."""
        state = api.service.state
        # never opened: every connection() raises DatabaseUnavailable, as a pool that is down
        state.database = Database(state.settings, state.readiness)
        read = await api.client.get("/v1/items/a")
        write = await api.client.put("/v1/items/a", json={"title": "A"}, headers=api.auth)
        for response in (read, write):
            assert_problem(response, 503)
            assert response.headers["retry-after"] == "1"
