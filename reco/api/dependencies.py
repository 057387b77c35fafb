"""What the catalogue and read handlers need from the process, and how its outages answer.

A handler that finds the database or the engine missing, or hits a transient
database fault (pool exhausted, connection lost, statement timeout), answers
503 with ``Retry-After`` rather than a 500: the client did nothing wrong and
may simply retry. The handlers are registered per blueprint
(:func:`register_unavailable`), so other blueprints keep the app's defaults.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import asyncpg
import asyncpg.exceptions as pgx
from quart import Blueprint, Response

from reco.api.problems import Problem, problem_response
from reco.api.state import state
from reco.db.pool import Database
from reco.engine.recommender import Recommender
from reco.errors import TransientError, UnprocessableData
from reco.impressions.buffer import BufferFull
from reco.observability.logs import get_logger

log = get_logger("reco.api")

RETRY_AFTER_SECONDS = "1"
# The classes reco.db.classify counts as "unavailable" (OSError narrowed to its
# connection and timeout subclasses, so that a bug elsewhere stays a 500).
UNAVAILABLE: tuple[type[Exception], ...] = (
    TransientError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError,
    pgx.QueryCanceledError, pgx.LockNotAvailableError, pgx.OperatorInterventionError,
    pgx.InsufficientResourcesError, ConnectionError, TimeoutError,
)  # fmt: skip


def unavailable(detail: str) -> Problem:
    return Problem(503, detail, slug="unavailable", headers={"Retry-After": RETRY_AFTER_SECONDS})


def database() -> Database:
    handle = state().database
    if handle is None:
        raise unavailable("the database is not configured")
    return handle


def recommender() -> Recommender:
    handle = state().recommender
    if handle is None:
        raise unavailable("the recommender is not configured")
    return handle


async def _on_unavailable(exc: Exception) -> Response:
    log.warning("dependency unavailable", error=repr(exc))
    return problem_response(unavailable("the database is unavailable; retry shortly"))


def _on_unprocessable(
    what: str, pointer: str
) -> Callable[[UnprocessableData], Awaitable[Response]]:
    """The database refused a value our validation let through: the input's fault, a 422.

    Logged as a warning with the SQLSTATE: each one is a validation rule to add.
    """

    async def handler(exc: UnprocessableData) -> Response:
        log.warning("database refused the request's data", sqlstate=exc.sqlstate, error=exc.name)
        detail = f"{what} cannot be stored (SQLSTATE {exc.sqlstate}); nothing was stored"
        errors = [{"pointer": pointer, "detail": detail}]  # the document's 422 (ValidationProblem)
        return problem_response(Problem(422, detail, slug="unprocessable-data", errors=errors))

    return handler


async def on_buffer_full(exc: BufferFull) -> Response:
    """Serving would outrun the impression writer (``sync`` mode): back off briefly.
    Registered on the whole app (any route that serves a list records an impression)."""
    detail = f"the impression could not be recorded ({exc.reason}); retry shortly"
    return problem_response(
        Problem(503, detail, slug="busy", headers={"Retry-After": RETRY_AFTER_SECONDS})
    )


def register_unavailable(
    blueprint: Blueprint, *, what: str = "a value in the request", pointer: str = ""
) -> None:
    """503 for transient database faults, 422 for data the database refuses (``what``
    could not be stored; ``pointer`` locates it in the request body)."""
    for exc_class in UNAVAILABLE:
        blueprint.register_error_handler(exc_class, _on_unavailable)
    blueprint.register_error_handler(UnprocessableData, _on_unprocessable(what, pointer))
