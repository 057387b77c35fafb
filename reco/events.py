"""The watch-event contract, shared by the Kafka consumer and ``POST /v1/events``.

Validation is a pure function over values (no I/O): it takes the decoded
JSON object (and the time it is checked at) and returns a :class:`WatchEvent`
or raises :class:`~reco.errors.InvalidMessage` with a short reason. The rules
(docs/events.md): ids are 1 to 128 characters of storable text (UTF-8 without
NUL or a lone surrogate); ``occurred_at`` is an RFC 3339 timestamp with an
offset, any instant of the years 1 to 9999 in UTC, at most ``max_future``
seconds ahead of the clock; ``watched_seconds`` is a finite number from 0 to
:data:`MAX_WATCHED_SECONDS`; ``completed`` a boolean.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

import attrs

from reco.errors import InvalidMessage

MAX_ID_LENGTH = 128
# About 31 years: larger is a unit mistake (milliseconds?), not a watch.
MAX_WATCHED_SECONDS = 1_000_000_000
# RECO_EVENT_MAX_FUTURE: how far ahead of the clock an event may be dated (clock skew).
DEFAULT_MAX_FUTURE = 300.0


@attrs.frozen
class WatchEvent:
    event_id: str
    user_id: str
    item_id: str
    occurred_at: dt.datetime  # timezone-aware
    watched_seconds: float | None = None
    completed: bool | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "event_id": self.event_id, "user_id": self.user_id, "item_id": self.item_id,
            "occurred_at": self.occurred_at.isoformat(),
        }  # fmt: skip
        if self.watched_seconds is not None:
            out["watched_seconds"] = self.watched_seconds
        if self.completed is not None:
            out["completed"] = self.completed
        return out


def _identifier(obj: dict[str, Any], name: str) -> str:
    if name not in obj:
        raise InvalidMessage(f"missing field: {name}")
    value = obj[name]
    if not isinstance(value, str):
        raise InvalidMessage(f"{name}: expected a string, got {type(value).__name__}")
    if not value or len(value) > MAX_ID_LENGTH:
        raise InvalidMessage(f"{name}: must be 1 to {MAX_ID_LENGTH} characters")
    if not storable_text(value):
        raise InvalidMessage(f"{name}: contains NUL or a lone surrogate")
    return value


def storable_text(value: str) -> bool:
    """PostgreSQL text holds neither NUL nor (as UTF-8) a lone surrogate; JSON can spell both."""
    if "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _timestamp(obj: dict[str, Any], now: dt.datetime | None, max_future: float) -> dt.datetime:
    if "occurred_at" not in obj:
        raise InvalidMessage("missing field: occurred_at")
    value = obj["occurred_at"]
    if not isinstance(value, str):
        raise InvalidMessage("occurred_at: expected an RFC 3339 timestamp string")
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise InvalidMessage("occurred_at: not an RFC 3339 timestamp") from None
    if parsed.tzinfo is None:
        raise InvalidMessage("occurred_at: the timestamp needs a UTC offset")
    try:
        parsed.astimezone(dt.UTC)  # what the database driver does; year 1 or 9999 may overflow
    except OverflowError:
        raise InvalidMessage("occurred_at: out of range (years 1 to 9999 in UTC)") from None
    if now is not None and (parsed - now).total_seconds() > max_future:
        raise InvalidMessage(f"occurred_at: more than {max_future:g} s in the future")
    return parsed


def _optional_seconds(obj: dict[str, Any]) -> float | None:
    value = obj.get("watched_seconds")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidMessage("watched_seconds: expected a number")
    # Compared before any conversion: float() of a 400-digit int raises OverflowError.
    if not (0 <= value <= MAX_WATCHED_SECONDS):  # False for NaN too
        raise InvalidMessage(f"watched_seconds: must be a number from 0 to {MAX_WATCHED_SECONDS}")
    return float(value)


def _optional_bool(obj: dict[str, Any]) -> bool | None:
    value = obj.get("completed")
    if value is None or isinstance(value, bool):
        return value
    raise InvalidMessage("completed: expected true or false")


def parse_watch_event(
    obj: Any, *, now: dt.datetime | None = None, max_future: float = DEFAULT_MAX_FUTURE
) -> WatchEvent:
    """Validate one decoded JSON value; unknown fields are ignored.

    ``now`` is the clock the future bound is checked against (None: no bound,
    for tools replaying stored events).
    """
    if not isinstance(obj, dict):
        raise InvalidMessage("expected a JSON object")
    return WatchEvent(
        event_id=_identifier(obj, "event_id"), user_id=_identifier(obj, "user_id"),
        item_id=_identifier(obj, "item_id"), occurred_at=_timestamp(obj, now, max_future),
        watched_seconds=_optional_seconds(obj), completed=_optional_bool(obj),
    )  # fmt: skip


def same_watch(a: WatchEvent, b: WatchEvent) -> bool:
    """Do two events with one ``event_id`` describe the same watch (user, item, instant)?"""
    return (a.user_id, a.item_id, a.occurred_at) == (b.user_id, b.item_id, b.occurred_at)


def new_in_order(events: Iterable[WatchEvent], new_ids: Iterable[str]) -> list[WatchEvent]:
    """The events whose id is in ``new_ids``, ordered by ``occurred_at`` (then id)."""
    wanted = set(new_ids)
    chosen = [event for event in events if event.event_id in wanted]
    return sorted(chosen, key=lambda e: (e.occurred_at, e.event_id))
