"""Liveness, readiness and the one Prometheus endpoint."""

from __future__ import annotations

from quart import Blueprint, Response, jsonify, request

from reco.api.state import state
from reco.observability.metrics import render_metrics

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
async def healthz() -> Response:
    """Liveness: the process and its event loop answer. Never checks dependencies."""
    return Response(b'{"status":"ok"}', content_type="application/json")


@blueprint.get("/readyz")
async def readyz() -> tuple[Response, int]:
    readiness = state().readiness
    return jsonify(readiness.snapshot()), (200 if readiness.ready else 503)


@blueprint.get("/metrics")
async def prometheus_metrics() -> Response:
    body, headers = render_metrics(request.headers.getlist("Accept"))
    return Response(body, headers=headers)
