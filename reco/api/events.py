"""``POST /v1/events``: watch events over HTTP, into the same path as Kafka.

The body ``{"events": [...]}`` (at most ``MAX_EVENTS``) is validated as a
whole with :func:`reco.events.parse_watch_event`: one bad event and nothing is
stored (422 listing the first ``MAX_PROBLEMS`` problems as ``errors``: JSON pointer and detail).
Valid events go to the outbox in one transaction (topic
``watch_events_topic``, key = user id, header ``event_id``); the relay
publishes them and the consumer stores them like any Kafka producer's.
Re-sending is harmless: an event already in the outbox is not enqueued again,
and the consumer deduplicates by ``event_id`` anyway.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import Any

from quart import Blueprint, Response, jsonify, request

from reco.api.auth import require_bearer
from reco.api.problems import Problem
from reco.api.state import state
from reco.db.classify import is_transient
from reco.errors import InvalidMessage, TransientError, UnprocessableData
from reco.events import DEFAULT_MAX_FUTURE, WatchEvent, parse_watch_event
from reco.outbox import queries as outbox

MAX_EVENTS = 1000
MAX_PROBLEMS = 100
EVENT_TYPE = "watch_event"

blueprint = Blueprint("events", __name__)
blueprint.before_request(require_bearer)


def decode_body(raw: str | bytes) -> Any:
    """The decoded JSON body, or a 400 problem."""
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise Problem(400, "the body is not valid JSON", slug="malformed-body") from None


def validate_batch(
    body: Any, *, now: dt.datetime | None = None, max_future: float = DEFAULT_MAX_FUTURE
) -> list[WatchEvent]:
    """Every event valid, or a 400 (wrong shape) / 422 (invalid events) problem.

    ``now`` and ``max_future`` bound ``occurred_at`` as for the consumer.
    """
    if not isinstance(body, dict) or not isinstance(body.get("events"), list):
        raise Problem(400, 'expected a JSON object {"events": [...]}', slug="malformed-body")
    items: list[Any] = body["events"]
    if len(items) > MAX_EVENTS:
        raise Problem(
            422, f"at most {MAX_EVENTS} events per request, got {len(items)}",
            slug="too-many-events", max_events=MAX_EVENTS,
        )  # fmt: skip
    events: list[WatchEvent] = []
    errors: list[dict[str, str]] = []
    for index, item in enumerate(items):
        try:
            events.append(parse_watch_event(item, now=now, max_future=max_future))
        except InvalidMessage as exc:
            errors.append({"pointer": f"/events/{index}", "detail": exc.reason})
    if errors:
        first = f"{errors[0]['pointer']}: {errors[0]['detail']}"
        raise Problem(
            422, f"{len(errors)} of {len(items)} events are invalid, nothing was stored; "
            f"first: {first}",
            slug="invalid-events", errors=errors[:MAX_PROBLEMS], invalid_count=len(errors),
        )  # fmt: skip
    return events


def outbox_rows(events: Sequence[WatchEvent], topic: str) -> list[outbox.NewRow]:
    return [
        outbox.NewRow(
            topic=topic,
            key=event.user_id,
            event_id=event.event_id,
            event_type=EVENT_TYPE,
            payload=json.dumps(event.to_json(), separators=(",", ":")),
        )
        for event in events
    ]


async def store(rows: Sequence[outbox.NewRow]) -> int:
    """Enqueue ``rows`` in one transaction; a 503 problem when the database is away."""
    database = state().database
    if database is None:
        raise Problem(503, "the database is not available", headers={"Retry-After": "1"})
    try:
        async with database.connection() as conn, conn.transaction():
            return await outbox.enqueue(conn, rows)
    except Exception as exc:
        if isinstance(exc, TransientError) or is_transient(exc):
            raise Problem(
                503, "the database is not available; retry shortly", headers={"Retry-After": "1"}
            ) from None
        if isinstance(exc, UnprocessableData):
            raise Problem(
                422, f"an event cannot be stored (SQLSTATE {exc.sqlstate}); nothing was stored",
                slug="unprocessable-data",
            ) from None  # fmt: skip
        raise


@blueprint.post("/v1/events")
async def post_events() -> tuple[Response, int]:
    settings = state().settings
    body = decode_body(await request.get_data(cache=False, as_text=False))
    events = validate_batch(body, now=dt.datetime.now(dt.UTC), max_future=settings.event_max_future)
    inserted = await store(outbox_rows(events, settings.watch_events_topic))
    return jsonify({"accepted": len(events), "duplicates": len(events) - inserted}), 202
