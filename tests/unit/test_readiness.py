"""Readiness means "this instance can serve HTTP": critical checks gate it, others degrade it."""

from __future__ import annotations

from typing import Any

import attrs
import pytest

from reco.api.app import create_app
from reco.api.state import AppState
from reco.observability import metrics
from reco.observability.readiness import Readiness
from reco.settings import Settings

pytestmark = pytest.mark.anyio


def degraded() -> Readiness:
    readiness = Readiness()
    readiness.set("database", True)
    readiness.set("kafka_consumer", False, "connecting to the broker", lag=3)
    return readiness


class TestReadiness:
    def test_a_failing_component_degrades_but_stays_ready(self) -> None:
        """Database ok, consumer failing: ready, not strictly ready, status degraded."""
        readiness = degraded()
        assert readiness.ready
        assert not readiness.strict_ready
        snapshot = readiness.snapshot()
        assert snapshot["status"] == "degraded"
        assert snapshot["checks"]["kafka_consumer"] == {
            "status": "degraded", "critical": False,
            "detail": "connecting to the broker", "lag": 3,
        }  # fmt: skip
        assert snapshot["checks"]["database"]["status"] == "ok"
        assert metrics.api_ready.get({}) == 1

    def test_a_failing_database_is_not_ready(self) -> None:
        """The database check is critical: failing, it makes the instance not ready."""
        readiness = degraded()
        readiness.set("database", False, "no answer within 1 s")
        assert not readiness.ready
        snapshot = readiness.snapshot()
        assert snapshot["status"] == "not ready"
        assert snapshot["checks"]["database"]["status"] == "failing"
        assert snapshot["checks"]["database"]["critical"] is True
        assert metrics.api_ready.get({}) == 0

    def test_shutting_down_is_not_ready(self) -> None:
        """From the first moment of shutdown: not ready, strictly or not."""
        readiness = Readiness()
        readiness.set("database", True)
        readiness.shutting_down = True
        assert not readiness.ready
        assert not readiness.strict_ready
        assert readiness.snapshot()["checks"]["shutdown"]["status"] == "failing"
        assert metrics.api_ready.get({}) == 0

    def test_critical_checks_are_configurable(self) -> None:
        """Which checks are critical is the registry's choice (default: the database)."""
        readiness = Readiness(critical=frozenset({"database", "kafka_consumer"}))
        readiness.set("database", True)
        readiness.set("kafka_consumer", False)
        assert not readiness.ready


@attrs.frozen
class Answer:
    status_code: int
    body: Any
    content_type: str


async def readyz(readiness: Readiness, query: str = "") -> Answer:
    app = create_app(AppState(Settings(), readiness))
    response = await app.test_client().get(f"/readyz{query}")
    return Answer(response.status_code, await response.get_json(), response.content_type)


class TestReadyzEndpoint:
    async def test_degraded_answers_200_and_strict_503(self) -> None:
        """/readyz is 200 while a component is degraded; /readyz?strict=1 is 503."""
        readiness = degraded()
        relaxed, strict = await readyz(readiness), await readyz(readiness, "?strict=1")
        assert (relaxed.status_code, strict.status_code) == (200, 503)
        assert relaxed.body == strict.body
        assert relaxed.body["status"] == "degraded"

    @pytest.mark.parametrize("query", ["", "?strict=0", "?strict=false", "?strict=true"])
    async def test_all_ok_answers_200(self, query: str) -> None:
        """Every check ok: 200 in both modes, status ready."""
        readiness = Readiness()
        readiness.set("database", True)
        response = await readyz(readiness, query)
        assert response.status_code == 200
        assert response.body["status"] == "ready"

    async def test_database_down_answers_503(self) -> None:
        readiness = degraded()
        readiness.set("database", False)
        assert (await readyz(readiness)).status_code == 503

    @pytest.mark.parametrize("query", ["?strict=yes", "?strict=", "?verbose=1"])
    async def test_bad_query_is_a_400(self, query: str) -> None:
        """An unknown value or parameter is a 400 problem, never silently ignored."""
        response = await readyz(Readiness(), query)
        assert response.status_code == 400
        assert response.content_type == "application/problem+json"
