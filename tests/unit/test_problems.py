"""Every HTTP error is RFC 9457 problem+json; request context and access log."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from quart import Quart, request

from reco.api.app import create_app
from reco.api.problems import CONTENT_TYPE, Problem
from reco.api.state import AppState
from reco.observability.logs import get_logger
from reco.observability.readiness import Readiness
from reco.settings import Settings
from tests.support.logs import Logs, captured_logs

pytestmark = pytest.mark.anyio

LIMIT = 1024


@pytest.fixture
def app() -> Quart:
    app = create_app(AppState(Settings.from_flat(max_body_bytes=LIMIT), Readiness()))

    @app.get("/boom")
    async def boom() -> str:
        get_logger("test").info("about to fail")
        raise RuntimeError("secret internals: password=hunter2")

    @app.post("/echo")
    async def echo() -> str | bytes:
        return await request.get_data(as_text=False)

    @app.get("/items/<item_id>")
    async def item(item_id: str) -> str:
        raise Problem(404, f"no item {item_id}", slug="item-not-found", item_id=item_id)

    return app


@pytest.fixture
def logs() -> Iterator[Logs]:
    with captured_logs() as captured:
        yield captured


def assert_problem(body: dict[str, Any], status: int) -> None:
    assert {"type", "title", "status", "detail"} <= body.keys()
    assert body["status"] == status
    assert body["type"].startswith("https://")


class TestProblemDetails:
    async def test_404(self, app: Quart) -> None:
        """An unknown path answers a 404 problem."""
        response = await app.test_client().get("/nowhere")
        assert response.status_code == 404
        assert response.content_type == CONTENT_TYPE
        assert_problem(await response.get_json(), 404)

    async def test_405_lists_allowed_methods(self, app: Quart) -> None:
        """A wrong method answers 405 with an Allow header."""
        response = await app.test_client().put("/healthz")
        assert response.status_code == 405
        assert response.content_type == CONTENT_TYPE
        assert "GET" in response.headers["Allow"]
        assert_problem(await response.get_json(), 405)

    async def test_413_over_the_body_limit(self, app: Quart) -> None:
        """A body over the configured limit answers 413, naming the limit."""
        response = await app.test_client().post("/echo", data=b"x" * (LIMIT + 1))
        assert response.status_code == 413
        assert response.content_type == CONTENT_TYPE
        body = await response.get_json()
        assert_problem(body, 413)
        assert str(LIMIT) in body["detail"]

    async def test_body_within_the_limit_is_accepted(self, app: Quart) -> None:
        """A body at the limit goes through."""
        response = await app.test_client().post("/echo", data=b"x" * LIMIT)
        assert response.status_code == 200

    async def test_500_logs_the_traceback_and_returns_none(self, app: Quart, logs: Logs) -> None:
        """An unexpected exception answers a bare 500 problem; the traceback goes to the log."""
        response = await app.test_client().get("/boom")
        assert response.status_code == 500
        assert response.content_type == CONTENT_TYPE
        text = await response.get_data(as_text=True)
        assert "Traceback" not in text
        assert "hunter2" not in text
        assert_problem(await response.get_json(), 500)
        error = next(e for e in logs if e["event"] == "unhandled error")
        assert isinstance(error["exc_info"], RuntimeError)
        assert error["request_id"] == response.headers["X-Request-ID"]

    async def test_raised_problem_carries_extensions(self, app: Quart) -> None:
        """A handler's Problem keeps its slug and extension members."""
        response = await app.test_client().get("/items/abc")
        body = await response.get_json()
        assert body["type"].endswith("/item-not-found")
        assert body["item_id"] == "abc"


class TestRequestContext:
    async def test_ids_are_bound_for_every_log_line(self, app: Quart, logs: Logs) -> None:
        """Lines logged while handling a request carry its request and correlation ids."""
        response = await app.test_client().get("/boom", headers={"X-Correlation-ID": "corr-1"})
        line = next(e for e in logs if e["event"] == "about to fail")
        assert line["correlation_id"] == "corr-1"
        assert line["request_id"] == response.headers["X-Request-ID"]

    @pytest.mark.parametrize("supplied", ["x" * 129, "a b", "", "ünï"])
    async def test_unsafe_correlation_id_is_replaced(self, app: Quart, supplied: str) -> None:
        """A correlation id that is too long or has odd characters is replaced."""
        response = await app.test_client().get("/healthz", headers={"X-Correlation-ID": supplied})
        assert response.headers["X-Correlation-ID"] != supplied
        assert len(response.headers["X-Correlation-ID"]) == 32

    async def test_access_log_line(self, app: Quart, logs: Logs) -> None:
        """One access line per request: method, route template, status, duration."""
        await app.test_client().get("/items/abc")
        access = [e for e in logs if e["event"] == "request"]
        assert len(access) == 1
        line = access[0]
        assert line["method"] == "GET"
        assert line["route"] == "/items/<item_id>"
        assert line["status"] == 404
        assert isinstance(line["duration"], float)
        assert line["request_id"]

    async def test_unmatched_path_is_not_a_label(self, app: Quart, logs: Logs) -> None:
        """An unknown path is logged and counted as `unmatched`, never the raw path."""
        await app.test_client().get("/users/12345/secret")
        line = next(e for e in logs if e["event"] == "request")
        assert line["route"] == "unmatched"


class TestHostileUrls:
    # Quart's test client re-encodes the path from its decoded form (undecodable
    # bytes become U+FFFD), so only NUL survives it; tests/unit/test_api_validation.py
    # covers the bytes and tests/integration/test_hostile_input.py real HTTP.
    async def test_path_segment_named(self, app: Quart) -> None:
        """NUL in a path segment: 400 naming the route's parameter."""
        response = await app.test_client().get("/items/a%00b")
        assert response.status_code == 400
        assert response.content_type == CONTENT_TYPE
        body = await response.get_json()
        assert_problem(body, 400)
        assert body["detail"].startswith("item_id: must be UTF-8 text")

    @pytest.mark.parametrize("query", ["genre=%00", "genre=a%ED%A0%80", "genre=%C3"])
    async def test_query_value_named(self, app: Quart, query: str) -> None:
        """The same in a query value, on any route: 400 naming the parameter."""
        response = await app.test_client().get(f"/healthz?{query}")
        assert response.status_code == 400
        assert (await response.get_json())["detail"].startswith("genre: must be UTF-8 text")

    async def test_ordinary_text_passes(self, app: Quart) -> None:
        """Non-ASCII that is valid UTF-8 is ordinary text."""
        response = await app.test_client().get("/items/%C3%A9t%C3%A9?genre=%E2%9C%93+x")
        assert response.status_code == 404  # the test route's own answer


class TestMetricLabels:
    async def test_invented_method_is_other(self, app: Quart, logs: Logs) -> None:
        """A method the app routes nowhere is labelled and logged as `other`."""
        client: Any = app.test_client()  # quart.typing's open() wrongly requires json=
        response = await client.open("/healthz", method="FOO1")
        assert response.status_code == 405
        line = next(e for e in logs if e["event"] == "request")
        assert line["method"] == "other"

    async def test_routed_method_is_kept(self, app: Quart, logs: Logs) -> None:
        """A routed method keeps its name, even on a route that does not allow it."""
        await app.test_client().delete("/healthz")
        assert next(e for e in logs if e["event"] == "request")["method"] == "DELETE"
