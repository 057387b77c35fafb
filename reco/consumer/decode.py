"""Decode one Kafka record value into a :class:`~reco.events.WatchEvent` (pure, no I/O).

The checks that concern bytes (size, UTF-8, JSON syntax) are decided here,
before :func:`reco.events.parse_watch_event` checks the fields. Every
rejection is an :class:`InvalidRecord` carrying a bounded ``code`` (used as
a header on the dead-letter topic) and a human ``detail``.
"""

from __future__ import annotations

import datetime as dt
import enum
import json
from typing import Any

from reco.errors import InvalidMessage
from reco.events import DEFAULT_MAX_FUTURE, WatchEvent, parse_watch_event


class Reason(enum.StrEnum):
    """Why a record was dead-lettered (a bounded set: it is a header and a log field)."""

    NO_VALUE = "no_value"
    OVERSIZED = "oversized"
    NOT_UTF8 = "not_utf8"
    NOT_JSON = "not_json"
    INVALID_EVENT = "invalid_event"  # JSON, but a field is missing, of the wrong type or range
    CONFLICTING_DUPLICATE = "conflicting_duplicate"  # an event_id seen with another watch
    UNPROCESSABLE = "unprocessable"  # valid, but the database refuses it (detail: SQLSTATE)


class InvalidRecord(InvalidMessage):
    """A record that cannot become a watch event; ``code`` says which check failed."""

    def __init__(self, code: Reason, detail: str) -> None:
        super().__init__(f"{code.value}: {detail}")
        self.code = code
        self.detail = detail


def _reject_constant(name: str) -> Any:
    raise InvalidRecord(Reason.NOT_JSON, f"{name} is not JSON")


# one decoder for every record: json.loads(..., parse_constant=...) builds a new one per call
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def decode_value(
    value: bytes | None,
    max_bytes: int,
    *,
    now: dt.datetime | None = None,
    max_future: float = DEFAULT_MAX_FUTURE,
) -> WatchEvent:
    """The watch event in ``value``, or :class:`InvalidRecord` saying why not.

    Whatever the bytes, the answer is one of the two: a record can never make
    the consumer raise anything else (a crash would redeliver it, forever).
    """
    if value is None:
        raise InvalidRecord(Reason.NO_VALUE, "the record has no value")
    if len(value) > max_bytes:
        raise InvalidRecord(Reason.OVERSIZED, f"{len(value)} bytes > {max_bytes}")
    try:
        text = value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRecord(Reason.NOT_UTF8, f"invalid byte at {exc.start}") from None
    try:
        obj = _DECODER.decode(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError and the int digit limit
        raise InvalidRecord(Reason.NOT_JSON, _short(exc)) from None
    try:
        return parse_watch_event(obj, now=now, max_future=max_future)
    except InvalidMessage as exc:
        raise InvalidRecord(Reason.INVALID_EVENT, exc.reason) from None
    except (ArithmeticError, ValueError, TypeError, RecursionError) as exc:
        # a value the rules did not foresee: this record's fault, never the partition's
        raise InvalidRecord(Reason.INVALID_EVENT, type(exc).__name__) from None


def _short(exc: BaseException) -> str:
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
