"""Decoding a record value: every rejection has its reason."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from reco.consumer.decode import InvalidRecord, Reason, decode_value

GOOD = {
    "event_id": "e1", "user_id": "u1", "item_id": "i1",
    "occurred_at": "2026-01-01T00:00:00Z", "watched_seconds": 3, "completed": True,
}  # fmt: skip


def raw(**changes: object) -> bytes:
    return json.dumps({**GOOD, **changes}).encode()


def reason(value: bytes | None, max_bytes: int = 1024) -> Reason:
    with pytest.raises(InvalidRecord) as info:
        decode_value(value, max_bytes)
    return info.value.code


class TestDecodeValue:
    def test_good_event(self) -> None:
        """A valid value decodes; unknown fields are ignored."""
        event = decode_value(raw(extra=[1, 2]), 1024)
        assert (event.event_id, event.watched_seconds, event.completed) == ("e1", 3.0, True)

    def test_missing_value(self) -> None:
        """A tombstone (no value) is rejected as no_value."""
        assert reason(None) is Reason.NO_VALUE

    def test_oversized(self) -> None:
        """A value over the limit is rejected before it is decoded."""
        assert reason(raw(), max_bytes=10) is Reason.OVERSIZED

    def test_size_limit_is_inclusive(self) -> None:
        """A value exactly at the limit is accepted."""
        value = raw()
        assert decode_value(value, len(value)).event_id == "e1"

    def test_not_utf8(self) -> None:
        """Bytes that are not UTF-8 are rejected as not_utf8."""
        assert reason(b'{"event_id": "\xff"}') is Reason.NOT_UTF8

    @pytest.mark.parametrize(
        "value", [b"{", b"", b"not json", b'{"a": NaN}', b"[" * 5000 + b"]" * 5000, b"1" * 5000]
    )
    def test_not_json(self, value: bytes) -> None:
        """Broken JSON, NaN, absurd nesting and absurd numbers are rejected as not_json."""
        assert reason(value, max_bytes=100_000) is Reason.NOT_JSON

    @pytest.mark.parametrize(
        "changes",
        [
            {"event_id": 5}, {"user_id": ""}, {"item_id": "x" * 129}, {"occurred_at": "yesterday"},
            {"occurred_at": "2026-01-01T00:00:00"}, {"watched_seconds": -1},
            {"watched_seconds": "3"}, {"completed": "yes"}, {"user_id": "a\u0000b"},
            {"item_id": "\ud800"}, {"occurred_at": "0001-01-01T00:00:00+05:00"},
        ],
    )  # fmt: skip
    def test_invalid_fields(self, changes: dict[str, object]) -> None:
        """Wrong types, bad values and unstorable text are rejected as invalid_event."""
        assert reason(raw(**changes)) is Reason.INVALID_EVENT

    def test_missing_field(self) -> None:
        """A missing required field is invalid_event and named in the detail."""
        obj = dict(GOOD)
        del obj["item_id"]
        with pytest.raises(InvalidRecord) as info:
            decode_value(json.dumps(obj).encode(), 1024)
        assert info.value.code is Reason.INVALID_EVENT
        assert "item_id" in info.value.detail

    def test_not_an_object(self) -> None:
        """A JSON array is not an event."""
        assert reason(b"[1, 2]") is Reason.INVALID_EVENT


class TestHostileValues:
    def test_huge_integer_seconds(self) -> None:
        """A 400-digit integer is out of range, not an OverflowError (finding 3 of issue 10)."""
        assert reason(raw(watched_seconds=10**400), max_bytes=4096) is Reason.INVALID_EVENT

    @pytest.mark.parametrize("seconds", [-1, 1e9 + 1, 1e308])
    def test_seconds_out_of_range(self, seconds: float) -> None:
        assert reason(raw(watched_seconds=seconds)) is Reason.INVALID_EVENT

    def test_nan_spelled_is_not_json(self) -> None:
        assert reason(raw().replace(b"3,", b"NaN,")) is Reason.NOT_JSON

    def test_too_far_in_the_future(self) -> None:
        """At most max_future seconds ahead of ``now``; any past instant is fine."""
        now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
        ahead = raw(occurred_at="2026-01-01T00:05:01Z")
        with pytest.raises(InvalidRecord) as info:
            decode_value(ahead, 1024, now=now, max_future=300)
        assert "future" in info.value.detail
        assert decode_value(raw(occurred_at="2026-01-01T00:05:00Z"), 1024, now=now, max_future=300)
        assert decode_value(raw(occurred_at="0001-01-01T00:00:00Z"), 1024, now=now)

    def test_year_one_east_of_utc_is_out_of_range(self) -> None:
        """0001-01-01T00:00+05:00 is in year 0 in UTC: outside the contract, said so."""
        assert reason(raw(occurred_at="0001-01-01T00:00:00+05:00")) is Reason.INVALID_EVENT

    def test_deep_nesting(self) -> None:
        assert reason(b"[" * 100_000 + b"]" * 100_000, max_bytes=1 << 20) is Reason.NOT_JSON
