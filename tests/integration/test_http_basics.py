"""The HTTP skeleton against a real database: errors, ids, metrics."""

from __future__ import annotations

import httpx
import pytest

from reco.settings import Settings
from tests.support.service import running_service

pytestmark = [pytest.mark.anyio, pytest.mark.integration]


class TestProblemDetails:
    async def test_unknown_path_is_404_problem(self, settings: Settings) -> None:
        """An unknown path answers 404 as application/problem+json."""
        async with (
            running_service(settings) as svc,
            httpx.AsyncClient(base_url=svc.base_url) as client,
        ):
            response = await client.get("/no/such/thing")
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
        body = response.json()
        assert {"type", "title", "status", "detail"} <= body.keys()
        assert body["status"] == 404

    async def test_wrong_method_is_405_problem(self, settings: Settings) -> None:
        """A wrong method answers 405 with an Allow header."""
        async with (
            running_service(settings) as svc,
            httpx.AsyncClient(base_url=svc.base_url) as client,
        ):
            response = await client.delete("/healthz")
        assert response.status_code == 405
        assert response.headers["content-type"] == "application/problem+json"
        assert "GET" in response.headers["allow"]


class TestRequestContext:
    async def test_ids_are_returned(self, settings: Settings) -> None:
        """A sane correlation id is echoed; a request id is generated."""
        async with (
            running_service(settings) as svc,
            httpx.AsyncClient(base_url=svc.base_url) as client,
        ):
            response = await client.get("/healthz", headers={"X-Correlation-ID": "abc.DEF-1_2"})
        assert response.headers["x-correlation-id"] == "abc.DEF-1_2"
        assert len(response.headers["x-request-id"]) == 32

    async def test_insane_correlation_id_is_replaced(self, settings: Settings) -> None:
        """A correlation id with odd characters is replaced by a generated one."""
        async with (
            running_service(settings) as svc,
            httpx.AsyncClient(base_url=svc.base_url) as client,
        ):
            response = await client.get("/healthz", headers={"X-Correlation-ID": "a b<script>"})
        assert response.headers["x-correlation-id"] != "a b<script>"


class TestReadiness:
    async def test_ready_with_database(self, settings: Settings) -> None:
        """/readyz is 200 and lists the database check."""
        async with (
            running_service(settings) as svc,
            httpx.AsyncClient(base_url=svc.base_url) as client,
        ):
            response = await client.get("/readyz")
        assert response.status_code == 200
        assert response.json()["checks"]["database"]["status"] == "ok"
