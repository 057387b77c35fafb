"""The aiokafka edge: its exceptions translated into reco's vocabulary (:mod:`reco.errors`).

By exception class (and aiokafka's own ``retriable`` flag, which its error
classes set from the Kafka protocol's error table), never by message text:

- :class:`~reco.errors.RecordRejected` (permanent): the broker or the
  client refuses the record itself: larger than ``max.message.bytes`` or the
  request limit, corrupt, invalid. Sending it again cannot succeed.
- :class:`~reco.errors.BrokerUnavailable` (transient): no connection, a
  timeout, a leader moving, and every other error the protocol marks
  retriable.
- anything else (an authorization failure, an unsupported version, a closed
  client) is a deployment or code problem: :func:`translate` returns None and
  the caller lets it propagate.
"""

from __future__ import annotations

from aiokafka import errors as kafka

from reco.errors import BrokerUnavailable, RecoError, RecordRejected, TransientError

_REJECTED: tuple[type[Exception], ...] = (
    kafka.MessageSizeTooLargeError,
    kafka.RecordListTooLargeError,
    kafka.CorruptRecordException,
    kafka.InvalidMessageError,
)
_UNAVAILABLE: tuple[type[Exception], ...] = (
    kafka.KafkaConnectionError,
    kafka.NodeNotReadyError,
    kafka.KafkaTimeoutError,
    kafka.RequestTimedOutError,
    ConnectionError,
    TimeoutError,
    OSError,
)


def translate(exc: BaseException) -> RecoError | None:
    """The reco error for an aiokafka (or socket) exception, or None for anything else."""
    if isinstance(exc, RecoError):
        return exc
    if isinstance(exc, _REJECTED):
        return RecordRejected(type(exc).__name__)
    if isinstance(exc, _UNAVAILABLE) or getattr(exc, "retriable", False) is True:
        return BrokerUnavailable(type(exc).__name__)
    return None


def transient(exc: BaseException) -> TransientError | None:
    """``exc`` as a transient error (database errors arrive translated already), or None."""
    error = translate(exc)
    return error if isinstance(error, TransientError) else None


def is_transient(exc: BaseException) -> bool:
    """The predicate for stamina's ``on=`` (a non-bool answer would be read as a wait)."""
    return transient(exc) is not None


def rejected(exc: BaseException) -> bool:
    """Did the broker (or the client) refuse the record for good?"""
    return isinstance(translate(exc), RecordRejected)
