"""Findings 4, 5 and 6 of issue 10, black-box over HTTP against the running service.

4: text PostgreSQL refuses, deep JSON and over-long numbers answer 4xx
   problems naming the parameter or field, never a 500;
5: ``{"events": []}`` is refused (the document says minItems 1);
6: invented request methods add no metric series.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from reco.settings import Settings
from tests.support.api import Api, assert_problem, running_api
from tests.support.metrics_text import samples

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

JSON = {"Content-Type": "application/json"}


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[Api]:
    async with running_api(settings) as running:
        yield running


async def server_errors(api: Api) -> float:
    text = (await api.client.get("/metrics")).text
    return sum(v for s, v in samples(text).items()
               if s.startswith("reco_http_requests_total{") and 'status="5' in s)  # fmt: skip


# Percent-encoded NUL, an encoded surrogate (ED A0 80), undecodable UTF-8 (FF, a cut C3).
BAD_SEGMENTS = ["a%00b", "a%ED%A0%80", "%FF", "x%C3"]
URLS = [
    ("/v1/users/{}/recommendations", "user_id"), ("/v1/items/{}/similar", "item_id"),
    ("/v1/items/{}", "item_id"), ("/v1/items/popular?genre={}", "genre"),
    ("/v1/users/u/recommendations?exclude={}", "exclude"),
    ("/v1/users/u/recommendations?limit=3&genre=ok&genre={}", "genre"),
]  # fmt: skip


HUGE_BODIES = [
    b"[" * 100_000, b'{"title": "T", "attributes": {"n": ' + b"7" * 5000 + b"}}",
    b'{"events": [{"watched_seconds": -' + b"9" * 400 + b"}]}",
    b'{"title": "T", "attributes": {"n": 1e999}}', b'{"items": [' * 40 + b"]}" * 40,
]  # fmt: skip


class TestFinding4UnstorableText:
    async def test_url_text_is_a_400_naming_the_parameter(self, api: Api) -> None:
        """NUL, a surrogate or bad UTF-8 in a path segment or query value: 400 naming it."""
        for template, name in URLS:
            for segment in BAD_SEGMENTS:
                response = await api.client.get(template.format(segment))
                body = assert_problem(response, 400)
                assert body["detail"].startswith(f"{name}: must be UTF-8 text"), response.url

    async def test_url_text_on_write_routes(self, api: Api) -> None:
        """The same for PUT and DELETE, before the token is even looked at."""
        put = await api.client.put("/v1/items/a%00", json={"title": "T"}, headers=api.auth)
        delete = await api.client.delete("/v1/items/%ED%A0%80", headers=api.auth)
        assert assert_problem(put, 400)["detail"].startswith("item_id:")
        assert assert_problem(delete, 400)["detail"].startswith("item_id:")

    @pytest.mark.parametrize(
        ("body", "pointer"),
        [
            (rb'{"title": "a\u0000b"}', "/title"),
            (rb'{"title": "T", "genres": ["ok", "\ud800"]}', "/genres/1"),
            (rb'{"title": "T", "attributes": {"k\u0000": 1}}', "/attributes/k\\x00"),
            (rb'{"title": "T", "attributes": {"a": [{"b": "\udfff"}]}}', "/attributes/a/0/b"),
        ],
    )
    async def test_body_text_is_a_422_naming_the_field(
        self, api: Api, body: bytes, pointer: str
    ) -> None:
        """NUL or a lone surrogate in a title, genre, attribute key or nested value: 422."""
        response = await api.client.put("/v1/items/i", content=body, headers={**api.auth, **JSON})
        problem = assert_problem(response, 422)
        assert [e["pointer"] for e in problem["errors"]] == [pointer]

    async def test_batch_item_ids_and_event_ids(self, api: Api) -> None:
        """Ids in POST /v1/items and POST /v1/events follow the same rule (422)."""
        items = rb'{"items": [{"item_id": "a\u0000", "title": "T"}]}'
        event = (rb'{"events": [{"event_id": "e\ud800", "user_id": "u", "item_id": "i",'
                 rb' "occurred_at": "2024-01-01T00:00:00Z"}]}')  # fmt: skip
        headers = {**api.auth, **JSON}
        first = await api.client.post("/v1/items", content=items, headers=headers)
        second = await api.client.post("/v1/events", content=event, headers=headers)
        assert assert_problem(first, 422)["errors"][0]["pointer"] == "/items/0/item_id"
        assert assert_problem(second, 422)["errors"][0]["pointer"] == "/events/0"

    async def test_deep_or_huge_bodies_are_400(self, api: Api) -> None:
        """100,000 '[', a 5000-digit integer, 1e999, 80 levels: 400 on every body."""
        headers = {**api.auth, **JSON}
        for method, path in [("PUT", "/v1/items/i"), ("POST", "/v1/items"), ("POST", "/v1/events")]:
            for body in HUGE_BODIES:
                response = await api.client.request(method, path, content=body, headers=headers)
                assert_problem(response, 400)

    async def test_attributes_nest_at_most_16_levels(self, api: Api) -> None:
        """Stored attributes are bounded in depth: 16 levels pass, 17 are a 422."""
        ok: Any = {}
        for _ in range(15):
            ok = {"x": ok}
        stored = await api.client.put("/v1/items/i", json={"title": "T", "attributes": ok},
                                      headers=api.auth)  # fmt: skip
        deeper = await api.client.put("/v1/items/i", json={"title": "T", "attributes": {"x": ok}},
                                      headers=api.auth)  # fmt: skip
        assert stored.status_code == 201
        assert assert_problem(deeper, 422)["errors"][0]["detail"].startswith("attributes nest")

    async def test_none_of_it_is_a_500(self, api: Api) -> None:
        """A sweep of the hostile requests above adds no 5xx to the metrics."""
        before = await server_errors(api)  # the registry is the process's: other tests count too
        for template, _ in URLS:
            for segment in BAD_SEGMENTS:
                await api.client.get(template.format(segment))
        await api.client.put("/v1/items/i", content=b'{"title": "\\u0000"}', headers=api.auth)
        await api.client.post("/v1/events", content=b"[" * 100_000, headers=api.auth)
        assert await server_errors(api) == before


class TestFinding5EmptyEventBatch:
    async def test_empty_events_is_422(self, api: Api) -> None:
        """{"events": []} answers 422 naming /events; nothing reaches the outbox."""
        response = await api.client.post("/v1/events", json={"events": []}, headers=api.auth)
        problem = assert_problem(response, 422)
        assert problem["errors"] == [
            {"pointer": "/events", "detail": "must hold 1 to 1000 events, got 0"}
        ]
        assert api.service.state.database is not None
        async with api.service.state.database.connection() as conn:
            assert await conn.fetchval("SELECT count(*) FROM outbox") == 0


def http_series(text: str) -> set[str]:
    return {series for series in samples(text) if series.startswith("reco_http_")}


def counted_as_other(text: str) -> float:
    return sum(value for series, value in samples(text).items()
               if series.startswith("reco_http_requests_total{") and 'method="other"' in series)  # fmt: skip


class TestFinding6BoundedMethodLabel:
    async def test_a_thousand_invented_methods_add_no_series(self, api: Api) -> None:
        """FOO1..FOO1000 answer 405 and are all counted under method="other"."""
        assert_problem(await api.client.request("FOO0", "/healthz"), 405)  # the "other" series
        await api.client.get("/metrics")  # and the series of GET /metrics itself
        before = (await api.client.get("/metrics")).text
        for n in range(1, 1001):
            response = await api.client.request(f"FOO{n}", "/healthz")
            assert response.status_code == 405
        after = (await api.client.get("/metrics")).text
        assert http_series(after) == http_series(before)
        assert "FOO" not in after
        assert counted_as_other(after) - counted_as_other(before) == 1000
