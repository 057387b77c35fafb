"""``POST /v1/events``: watch events over HTTP, into the same path as Kafka.

The body ``{"events": [...]}`` (1 to ``MAX_EVENTS`` events; JSON read by the
catalogue's rules in :mod:`reco.api.validation`) is validated as a
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

from reco.api import validation
from reco.api.auth import require_bearer
from reco.api.dependencies import database, register_unavailable
from reco.api.problems import Problem
from reco.api.state import state
from reco.errors import InvalidMessage
from reco.events import DEFAULT_MAX_FUTURE, WatchEvent, parse_watch_event
from reco.outbox import queries as outbox

MAX_EVENTS = 1000
MAX_PROBLEMS = 100
EVENT_TYPE = "watch_event"

blueprint = Blueprint("events", __name__)
blueprint.before_request(require_bearer)
register_unavailable(blueprint, what="an event", pointer="/events")


def decode_body(raw: str | bytes) -> Any:
    """The decoded JSON body, or a 400 problem (the rules of :func:`validation.json_body`)."""
    return validation.json_body(raw)


def validate_batch(
    body: Any, *, now: dt.datetime | None = None, max_future: float = DEFAULT_MAX_FUTURE
) -> list[WatchEvent]:
    """Every event valid, or a 422 problem listing what is wrong (nothing is stored).

    ``now`` and ``max_future`` bound ``occurred_at`` as for the consumer.
    """
    items = _event_list(body)
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


def _event_list(body: Any) -> list[Any]:
    """The ``events`` list of ``{"events": [...]}`` with 1 to ``MAX_EVENTS`` entries, or a 422."""
    if not isinstance(body, dict):
        raise validation.unprocessable(
            [{"pointer": "", "detail": 'expected a JSON object {"events": [...]}'}]
        )
    unknown = sorted(set(body) - {"events"})
    if unknown:
        detail = f"unknown field(s): {', '.join(unknown)}; allowed: events"
        raise validation.unprocessable([{"pointer": "", "detail": detail}])
    items = body.get("events")
    if not isinstance(items, list):
        detail = "required (a list of events)" if "events" not in body else "expected a list"
        raise validation.unprocessable([{"pointer": "/events", "detail": detail}])
    if not 1 <= len(items) <= MAX_EVENTS:
        detail = f"must hold 1 to {MAX_EVENTS} events, got {len(items)}"
        raise validation.unprocessable([{"pointer": "/events", "detail": detail}])
    return items


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
    """Enqueue ``rows`` in one transaction (the blueprint's handlers answer a database that
    is away with 503, data it refuses with 422)."""
    async with database().connection() as conn, conn.transaction():
        return await outbox.enqueue(conn, rows)


@blueprint.post("/v1/events")
async def post_events() -> tuple[Response, int]:
    settings = state().settings
    body = decode_body(await request.get_data(cache=False, as_text=False))
    events = validate_batch(body, now=dt.datetime.now(dt.UTC), max_future=settings.event_max_future)
    inserted = await store(outbox_rows(events, settings.watch_events_topic))
    return jsonify({"accepted": len(events), "duplicates": len(events) - inserted}), 202
