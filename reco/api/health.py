"""Liveness, readiness and the one Prometheus endpoint."""

from __future__ import annotations

from quart import Blueprint, Response, jsonify, request

from reco.api import validation
from reco.api.state import state
from reco.observability.metrics import render_metrics

blueprint = Blueprint("health", __name__)


@blueprint.get("/healthz")
async def healthz() -> Response:
    """Liveness: the process and its event loop answer. Never checks dependencies."""
    return Response(b'{"status":"ok"}', content_type="application/json")


READYZ_PARAMS = frozenset({"strict"})


@blueprint.get("/readyz")
async def readyz() -> tuple[Response, int]:
    """200 when this instance can serve traffic (``ready`` or ``degraded``), else 503.

    ``?strict=1``: 200 only when every check is ok (the conjunction, for operators).
    The body is the same either way.
    """
    validation.known_params(request.args.keys(), READYZ_PARAMS)
    strict = validation.flag(request.args.get("strict"), "strict")
    readiness = state().readiness
    ok = readiness.strict_ready if strict else readiness.ready
    return jsonify(readiness.snapshot()), (200 if ok else 503)


@blueprint.get("/metrics")
async def prometheus_metrics() -> Response:
    body, headers = render_metrics(request.headers.getlist("Accept"))
    return Response(body, headers=headers)
