"""The HTTP skeleton against a real database: errors, ids, metrics."""

from __future__ import annotations

import re
import shutil

import anyio
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


class TestMetrics:
    async def scrape(self, settings: Settings) -> str:
        async with (
            running_service(settings) as svc,
            httpx.AsyncClient(base_url=svc.base_url) as client,
        ):
            await client.get("/healthz")
            await client.get("/no/such/thing")
            await client.get("/readyz")
            response = await client.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        return response.text

    @pytest.mark.skipif(
        shutil.which("promtool") is None,
        reason="promtool not installed (Debian package `prometheus`; .ci/run installs it)",
    )
    async def test_exposition_passes_promtool(self, settings: Settings) -> None:
        """`promtool check metrics` accepts /metrics (names, types, help, histograms)."""
        text = await self.scrape(settings)
        with anyio.fail_after(30):
            done = await anyio.run_process(
                ["promtool", "check", "metrics"], input=text.encode(), check=False
            )
        output = (done.stdout + done.stderr).decode()
        assert done.returncode == 0, output
        assert output == ""  # no lint warnings either

    async def test_names_types_and_labels(self, settings: Settings) -> None:
        """Counters end in _total, histograms have +Inf buckets, labels are route templates."""
        text = await self.scrape(settings)
        types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))
        assert all(n.startswith("reco_") for n in types)
        assert all(n.endswith("_total") for n, t in types.items() if t == "counter")
        assert types["reco_http_request_duration_seconds"] == "histogram"
        assert (
            'reco_http_request_duration_seconds_bucket{le="+Inf",method="GET",route="/healthz"}'
            in text
        )
        assert 'reco_http_requests_total{method="GET",route="unmatched",status="404"} ' in text
        assert "/no/such/thing" not in text
        assert 'reco_api_check_status{check="database"} 1' in text
        assert 'reco_build_info{version="' in text
        for gauge in ("reco_http_requests_in_flight", "reco_db_pool_size", "reco_db_pool_in_use"):
            assert re.search(rf"^{gauge} \d", text, re.MULTILINE), gauge
        assert re.search(r"^reco_db_acquire_wait_seconds_count \d", text, re.MULTILINE)
