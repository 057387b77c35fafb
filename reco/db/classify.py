"""Classify asyncpg errors by exception class, never by message text."""

from __future__ import annotations

import enum

import asyncpg
import asyncpg.exceptions as pgx


class ErrorKind(enum.StrEnum):
    RETRY = "retry"  # serialization failure, deadlock: run the transaction again
    DUPLICATE = "duplicate"  # unique violation: the row is already there
    UNAVAILABLE = "unavailable"  # connection lost, timeouts, server shutting down
    ERROR = "error"  # a bug or bad data: do not retry


_RETRY = (pgx.SerializationError, pgx.DeadlockDetectedError)
_UNAVAILABLE = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    pgx.QueryCanceledError,  # statement_timeout
    pgx.LockNotAvailableError,  # lock_timeout
    pgx.OperatorInterventionError,  # admin shutdown, crash shutdown, cannot connect now
    pgx.InsufficientResourcesError,
    pgx.IdleInTransactionSessionTimeoutError,
    ConnectionError,
    OSError,
    TimeoutError,
)


def classify(exc: BaseException) -> ErrorKind:
    if isinstance(exc, _RETRY):
        return ErrorKind.RETRY
    if isinstance(exc, pgx.UniqueViolationError):
        return ErrorKind.DUPLICATE
    if isinstance(exc, _UNAVAILABLE):
        return ErrorKind.UNAVAILABLE
    return ErrorKind.ERROR


_BROKEN = (
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    ConnectionError,
    OSError,
    TimeoutError,
)


def breaks_connection(exc: BaseException) -> bool:
    """After this error the connection's state is unknown: close it, do not reuse it.

    A server-side timeout (``statement_timeout``, ``lock_timeout``) leaves the
    connection usable; a client-side timeout or a lost connection does not.
    """
    return isinstance(exc, _BROKEN)


def is_transient(exc: BaseException) -> bool:
    """Worth retrying with backoff (the predicate given to stamina)."""
    return classify(exc) in (ErrorKind.RETRY, ErrorKind.UNAVAILABLE)
