"""The asyncpg edge: its exceptions translated into reco's vocabulary (:mod:`reco.errors`).

By exception class and SQLSTATE, never by message text:

- transient, :class:`~reco.errors.DatabaseConflict`: serialization failure,
  deadlock (run the transaction again);
- transient, :class:`~reco.errors.DatabaseUnavailable`: the connection is
  lost or unusable, a timeout (``statement_timeout``, ``lock_timeout``, the
  client's own), the server shutting down or out of resources; and asyncpg's
  ``InternalClientError`` (the client's protocol state for that connection
  is broken: "cannot switch to state 15; another operation (2) is in
  progress", seen on a pooled connection after a PostgreSQL SIGKILL; it
  derives from neither ``InterfaceError`` nor ``PostgresError``, and read as a
  bug it stopped the consumer, hence the whole instance). It is per
  connection: the connection is closed (:func:`breaks_connection`) and a
  retry gets a fresh one;
- permanent, :class:`~reco.errors.UnprocessableData`: the data itself is
  refused: SQLSTATE class 22 (data exception: out of range, untranslatable
  character, invalid text), 23 (integrity: every unique key reco relies on
  for idempotency is written ``ON CONFLICT``, so a violation that surfaces is
  about the data), 54 (program limit: a value too large to index), and the
  client's own refusal to encode an argument;
- anything else (an undefined column, a syntax error, ...) is a bug:
  :func:`translate` returns None and the caller lets it propagate.
"""

from __future__ import annotations

import enum

import asyncpg
import asyncpg.exceptions as pgx
import asyncpg.exceptions._base as pg_base

from reco.errors import (
    DatabaseConflict,
    DatabaseUnavailable,
    RecoError,
    TransientError,
    UnprocessableData,
)


class ErrorKind(enum.StrEnum):
    """A bounded label for ``reco_db_query_errors_total{class}``."""

    CONFLICT = "conflict"
    UNAVAILABLE = "unavailable"
    UNPROCESSABLE = "unprocessable"
    ERROR = "error"  # a bug: not retried


_CONFLICT = (pgx.SerializationError, pgx.DeadlockDetectedError)
# The client refuses to encode an argument (a datetime out of range, say): a ValueError
# and, unfortunately, an InterfaceError too, so it is tested before _UNAVAILABLE.
_UNPROCESSABLE = (
    pg_base.DataError,
    pgx.DataError,  # class 22
    pgx.IntegrityConstraintViolationError,  # class 23
    pgx.ProgramLimitExceededError,  # class 54
)
_UNAVAILABLE = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    pgx.QueryCanceledError,  # statement_timeout
    pgx.LockNotAvailableError,  # lock_timeout
    pgx.OperatorInterventionError,  # admin shutdown, crash shutdown, cannot connect now
    pgx.InsufficientResourcesError,
    pgx.IdleInTransactionSessionTimeoutError,
    pg_base.InternalClientError,  # the connection's protocol state is broken
    ConnectionError,
    OSError,
    TimeoutError,
)


def classify(exc: BaseException) -> ErrorKind:
    if isinstance(exc, _CONFLICT):
        return ErrorKind.CONFLICT
    if isinstance(exc, _UNPROCESSABLE):
        return ErrorKind.UNPROCESSABLE
    if isinstance(exc, (*_UNAVAILABLE, DatabaseUnavailable)):
        return ErrorKind.UNAVAILABLE
    return ErrorKind.ERROR


def sqlstate(exc: BaseException) -> str:
    """The SQLSTATE of a server error; ``22000`` for the client's refusal to encode."""
    code = getattr(exc, "sqlstate", None)
    return code if isinstance(code, str) and code else "22000"


def translate(exc: BaseException) -> RecoError | None:
    """The reco error for an asyncpg (or socket) exception, or None for a bug."""
    if isinstance(exc, RecoError):
        return exc
    kind = classify(exc)
    if kind is ErrorKind.CONFLICT:
        return DatabaseConflict(type(exc).__name__)
    if kind is ErrorKind.UNPROCESSABLE:
        return UnprocessableData(sqlstate(exc), type(exc).__name__)
    if kind is ErrorKind.UNAVAILABLE:
        return DatabaseUnavailable(type(exc).__name__)
    return None


_BROKEN = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    pg_base.InternalClientError,
    ConnectionError,
    OSError,
    TimeoutError,
)


def breaks_connection(exc: BaseException) -> bool:
    """After this error the connection's state is unknown: close it, do not reuse it.

    A server-side timeout (``statement_timeout``, ``lock_timeout``) leaves the
    connection usable; a client-side timeout or a lost connection does not.
    The client's refusal to encode an argument happens before anything is sent.
    """
    return isinstance(exc, _BROKEN) and not isinstance(exc, pg_base.DataError)


def is_transient(exc: BaseException) -> bool:
    """Worth retrying with backoff (the predicate given to stamina)."""
    return isinstance(exc, TransientError) or isinstance(translate(exc), TransientError)
