"""The edges translate library exceptions into reco's vocabulary by class and SQLSTATE."""

from __future__ import annotations

import asyncpg
import asyncpg.exceptions as pgx
import asyncpg.exceptions._base as pg_base
import pytest
from aiokafka import errors as kafka

from reco.db import classify
from reco.errors import (
    BrokerUnavailable,
    DatabaseConflict,
    DatabaseUnavailable,
    RecordRejected,
    UnprocessableData,
)
from reco.kafka import errors as kafka_errors


class TestDatabaseEdge:
    @pytest.mark.parametrize(
        ("exc", "expected"),
        [
            (pgx.SerializationError(), DatabaseConflict),
            (pgx.DeadlockDetectedError(), DatabaseConflict),
            (pgx.QueryCanceledError(), DatabaseUnavailable),
            (pgx.AdminShutdownError(), DatabaseUnavailable),
            (asyncpg.ConnectionDoesNotExistError(), DatabaseUnavailable),
            (ConnectionResetError(), DatabaseUnavailable),
            (pgx.NumericValueOutOfRangeError(), UnprocessableData),
            (pgx.UntranslatableCharacterError(), UnprocessableData),
            (pgx.CheckViolationError(), UnprocessableData),
            (pgx.UniqueViolationError(), UnprocessableData),
            (pgx.ProgramLimitExceededError(), UnprocessableData),
            (pg_base.DataError("invalid input for query argument $1"), UnprocessableData),
        ],
    )
    def test_translated(self, exc: Exception, expected: type[Exception]) -> None:
        assert type(classify.translate(exc)) is expected

    def test_sqlstate_kept(self) -> None:
        error = classify.translate(pgx.UntranslatableCharacterError())
        assert isinstance(error, UnprocessableData)
        assert error.sqlstate == "22P05"

    @pytest.mark.parametrize("exc", [pgx.UndefinedColumnError(), pgx.PostgresSyntaxError(),
                                     KeyError("x")])  # fmt: skip
    def test_bugs_are_not_translated(self, exc: Exception) -> None:
        assert classify.translate(exc) is None
        assert not classify.is_transient(exc)

    def test_client_refusal_keeps_the_connection(self) -> None:
        assert not classify.breaks_connection(pg_base.DataError("bad argument"))
        assert classify.breaks_connection(ConnectionResetError())

    def test_a_broken_protocol_state_is_transient_and_closes_the_connection(self) -> None:
        """asyncpg's InternalClientError (neither an InterfaceError nor a server error), seen on
        a pooled connection after a PostgreSQL SIGKILL: read as a bug, it stopped the consumer
        and with it the instance (chaos suite, postgres-sigkill under load)."""
        exc = pg_base.InternalClientError(
            "cannot switch to state 15; another operation (2) is in progress"
        )
        assert type(classify.translate(exc)) is DatabaseUnavailable
        assert classify.is_transient(exc)
        assert classify.breaks_connection(exc)


class TestKafkaEdge:
    @pytest.mark.parametrize(
        ("exc", "expected"),
        [
            (kafka.MessageSizeTooLargeError(), RecordRejected),
            (kafka.RecordListTooLargeError(), RecordRejected),
            (kafka.CorruptRecordException(), RecordRejected),
            (kafka.KafkaConnectionError(), BrokerUnavailable),
            (kafka.KafkaTimeoutError(), BrokerUnavailable),
            (kafka.NotLeaderForPartitionError(), BrokerUnavailable),
            (TimeoutError(), BrokerUnavailable),
        ],
    )
    def test_translated(self, exc: Exception, expected: type[Exception]) -> None:
        assert type(kafka_errors.translate(exc)) is expected

    def test_authorization_is_not_retried(self) -> None:
        assert kafka_errors.translate(kafka.TopicAuthorizationFailedError()) is None
