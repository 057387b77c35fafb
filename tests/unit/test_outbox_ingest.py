"""POST /v1/events without I/O: body validation, outbox rows and bearer tokens."""

from __future__ import annotations

import json
from typing import Any

import pytest

from reco.api.events import MAX_EVENTS, MAX_PROBLEMS, decode_body, outbox_rows, validate_batch
from reco.api.problems import Problem


def event(n: int = 1, **changes: Any) -> dict[str, Any]:
    return {
        "event_id": f"e{n}", "user_id": "u1", "item_id": "i1",
        "occurred_at": "2026-01-01T00:00:00Z", **changes,
    }  # fmt: skip


def problem(call: Any, *args: Any) -> Problem:
    with pytest.raises(Problem) as caught:
        call(*args)
    return caught.value


class TestValidateBatch:
    def test_valid_batch_is_parsed(self) -> None:
        """Every event of a valid batch comes back parsed, in order."""
        events = validate_batch({"events": [event(1), event(2)]})
        assert [e.event_id for e in events] == ["e1", "e2"]

    def test_one_bad_event_rejects_the_whole_batch_with_its_index(self) -> None:
        """A single invalid event answers 422 naming its index and reason."""
        p = problem(validate_batch, {"events": [event(1), event(2, user_id=7), event(3)]})
        assert p.status == 422
        assert p.extensions["errors"] == [
            {"pointer": "/events/1", "detail": "user_id: expected a string, got int"}
        ]

    def test_lists_at_most_the_first_hundred_problems(self) -> None:
        """Only the first MAX_PROBLEMS problems are listed; the count says how many."""
        p = problem(validate_batch, {"events": [{}] * 150})
        assert len(p.extensions["errors"]) == MAX_PROBLEMS
        assert p.extensions["invalid_count"] == 150

    @pytest.mark.parametrize(
        "body", [[], {"events": {}}, {"other": []}, {"events": [], "x": 1}, "x", None]
    )
    def test_wrong_shape_is_422(self, body: Any) -> None:
        """Anything but an object with only an events list answers 422 with errors."""
        p = problem(validate_batch, body)
        assert p.status == 422
        assert p.extensions["errors"]

    def test_empty_batch_is_rejected(self) -> None:
        """An empty events list answers 422 naming /events (the document says minItems 1)."""
        p = problem(validate_batch, {"events": []})
        assert p.status == 422
        assert p.extensions["errors"] == [
            {"pointer": "/events", "detail": "must hold 1 to 1000 events, got 0"}
        ]

    def test_too_many_events_is_rejected(self) -> None:
        """More than MAX_EVENTS events answers 422 without validating them."""
        p = problem(validate_batch, {"events": [event()] * (MAX_EVENTS + 1)})
        assert p.status == 422
        assert p.extensions["errors"][0]["pointer"] == "/events"

    @pytest.mark.parametrize("field", ["event_id", "user_id", "item_id"])
    @pytest.mark.parametrize("text", ["a\x00b", "a\ud800"])
    def test_unstorable_ids_are_422(self, field: str, text: str) -> None:
        """NUL or a lone surrogate in an id answers 422 naming the field."""
        changes: dict[str, Any] = {field: text}
        p = problem(validate_batch, {"events": [event(1, **changes)]})
        assert p.status == 422
        assert p.extensions["errors"][0]["detail"].startswith(field)

    def test_non_json_is_400(self) -> None:
        """A body that is not JSON answers 400."""
        assert problem(decode_body, b"{nope").status == 400
        assert problem(decode_body, b"\xff\xfe").status == 400

    @pytest.mark.parametrize(
        "raw", [b"[" * 100_000, b'{"events": [' + b"1" * 5000 + b"]}", b'{"events": [1e999]}']
    )
    def test_deep_or_huge_numbers_are_400(self, raw: bytes) -> None:
        """Deep nesting and numbers beyond a double's range answer 400, never a crash."""
        assert problem(decode_body, raw).status == 400


class TestOutboxRows:
    def test_rows_are_keyed_by_user_with_the_event_id(self) -> None:
        """Each event becomes one outbox row: key user id, event id, normalised JSON."""
        (row,) = outbox_rows(validate_batch({"events": [event(watched_seconds=3)]}), "t")
        assert (row.topic, row.key, row.event_id, row.event_type) == (
            "t",
            "u1",
            "e1",
            "watch_event",
        )
        assert json.loads(row.payload)["watched_seconds"] == 3.0
