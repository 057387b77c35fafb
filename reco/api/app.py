"""The Quart app factory: request context, access log, metrics and problem+json errors."""

from __future__ import annotations

import os
import re
import time
from typing import Any

import structlog
from quart import Quart, Response, current_app, g, request
from werkzeug.exceptions import HTTPException

from reco.api import health, validation
from reco.api.dependencies import on_buffer_full
from reco.api.problems import Problem, problem_response
from reco.api.state import AppState
from reco.impressions.buffer import BufferFull
from reco.observability import metrics
from reco.observability.logs import get_logger

log = get_logger("reco.api")
access_log = get_logger("reco.access")

CORRELATION_ID = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def create_app(app_state: AppState) -> Quart:
    app = Quart("reco")
    app.config["MAX_CONTENT_LENGTH"] = app_state.settings.http.max_body_bytes
    app.config["JSON_SORT_KEYS"] = False
    app.extensions["reco"] = app_state
    app.url_map.strict_slashes = False
    app.register_blueprint(health.blueprint)
    _register_blueprints(app)
    app.extensions["reco.methods"] = _routed_methods(app)
    app.before_request(_begin)
    app.before_request(_check_url_text)
    app.after_request(_finish)
    app.register_error_handler(Problem, _on_problem)
    app.register_error_handler(BufferFull, on_buffer_full)
    app.register_error_handler(HTTPException, _on_http_exception)
    app.register_error_handler(Exception, _on_unexpected)
    return app


def _register_blueprints(app: Quart) -> None:
    """The feature blueprints; each lives in its own module under reco/api/."""
    from reco.api import catalogue, events, openapi, recommendations

    # recommendations first: its GET /v1/items/popular must win over /v1/items/<item_id>.
    app.register_blueprint(recommendations.blueprint)
    app.register_blueprint(catalogue.blueprint)
    app.register_blueprint(openapi.blueprint)
    app.register_blueprint(events.blueprint)


def route_template() -> str:
    rule = request.url_rule
    return rule.rule if rule is not None else "unmatched"


def method_label() -> str:
    """The method when the app routes it anywhere, else ``other``: bounded by construction.

    The request line is the client's to choose (``FOO1``, ``FOO2``, ...); a
    label copied from it would add series without end.
    """
    routed: frozenset[str] = current_app.extensions["reco.methods"]
    return request.method if request.method in routed else "other"


def _routed_methods(app: Quart) -> frozenset[str]:
    return frozenset(m for rule in app.url_map.iter_rules() for m in rule.methods or ())


async def _begin() -> None:
    # The proxies resolved once each (a werkzeug LocalProxy lookup per attribute otherwise).
    ctx = g._get_current_object()
    ctx.started = time.perf_counter()
    ctx.request_id = request_id = new_id()
    req = request._get_current_object()  # type: ignore[attr-defined]
    supplied = req.headers.get("X-Correlation-ID", "")
    ctx.correlation_id = correlation_id = supplied if CORRELATION_ID.match(supplied) else new_id()
    structlog.contextvars.bind_contextvars(request_id=request_id, correlation_id=correlation_id)
    metrics.http_in_flight_level.value += 1
    ctx.in_flight = True


async def _check_url_text() -> None:
    """400 for NUL, lone surrogates or undecodable UTF-8 anywhere in the path or query.

    Once for every route: the server decodes the path with ``errors="replace"``
    and werkzeug keeps undecodable query bytes percent-encoded, so both are
    checked here on the bytes as sent, before any handler reads them.
    """
    rule = request.url_rule
    raw_path = request.scope.get("raw_path")
    validation.url_text(raw_path, rule.rule if rule is not None else None, request.query_string)


def new_id() -> str:
    """32 random hex digits (what ``uuid4().hex`` gave, without the UUID object: 6x faster)."""
    return os.urandom(16).hex()


async def _finish(response: Response) -> Response:
    ctx = g._get_current_object()
    if not getattr(ctx, "in_flight", False):
        return response  # _begin never ran (the request failed before it)
    ctx.in_flight = False
    metrics.http_in_flight_level.value -= 1
    duration = time.perf_counter() - ctx.started
    req = request._get_current_object()  # type: ignore[attr-defined]
    rule = req.url_rule
    route = rule.rule if rule is not None else "unmatched"
    routed: frozenset[str] = current_app.extensions["reco.methods"]
    method = req.method if req.method in routed else "other"  # as method_label()
    status = response.status_code
    metrics.http_requests_tally.inc(method, route, str(status))
    metrics.http_duration_observations.observe(duration, method, route)
    headers = response.headers
    headers["X-Request-ID"] = ctx.request_id
    headers["X-Correlation-ID"] = ctx.correlation_id
    access_log.info(
        "request", method=method, route=route, status=status,
        duration=round(duration, 6),
    )  # fmt: skip
    structlog.contextvars.unbind_contextvars("request_id", "correlation_id")
    return response


async def _on_problem(problem: Problem) -> Response:
    return problem_response(problem)


async def _on_http_exception(exc: HTTPException) -> Response:
    status = exc.code or 500
    detail = _http_detail(exc, status)
    headers: dict[str, Any] = {}
    if status == 405 and exc.valid_methods:  # type: ignore[attr-defined]
        headers["Allow"] = ", ".join(sorted(exc.valid_methods))  # type: ignore[attr-defined]
    return problem_response(Problem(status, detail, headers=headers))


def _http_detail(exc: HTTPException, status: int) -> str:
    if status == 404:
        return f"no resource at {request.path}"
    if status == 405:
        return f"{request.method} is not allowed on {request.path}"
    if status == 413:
        return f"the request body is larger than the limit of {request.max_content_length} bytes"
    return exc.description or "the request could not be handled"


async def _on_unexpected(exc: Exception) -> Response:
    log.error("unhandled error", error=repr(exc), exc_info=exc)
    return problem_response(
        Problem(500, "an unexpected error occurred; the request id identifies it in the logs",
                slug="internal-error")
    )  # fmt: skip
