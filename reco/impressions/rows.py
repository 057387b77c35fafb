"""Impressions as database rows and outbox messages: pure functions, no I/O."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from reco.impressions.model import Impression
from reco.outbox.queries import NewRow

EVENT_TYPE = "impression"


def _dumps(value: Any) -> str:
    """Compact JSON text; orjson, as the writer encodes two documents per served list."""
    return orjson.dumps(value).decode()


def items_json(impression: Impression) -> list[dict[str, Any]]:
    return [
        {"item_id": i.item_id, "position": i.position, "score": i.score} for i in impression.items
    ]


def payload(impression: Impression) -> dict[str, Any]:
    """The message published to the impressions topic."""
    return {
        "recommendation_id": str(impression.recommendation_id),
        "user_id": impression.user_id,
        "endpoint": impression.endpoint,
        "algorithm": impression.algorithm,
        "items": items_json(impression),
        "served_at": impression.served_at.isoformat(),
    }


def message_key(impression: Impression) -> str:
    """The user id, or the recommendation id when the user is anonymous."""
    return impression.user_id or str(impression.recommendation_id)


def outbox_rows(impressions: Sequence[Impression], topic: str) -> list[NewRow]:
    return [
        NewRow(
            topic=topic,
            key=message_key(imp),
            event_id=str(imp.recommendation_id),
            event_type=EVENT_TYPE,
            payload=_dumps(payload(imp)),
        )
        for imp in impressions
    ]


def impression_columns(impressions: Sequence[Impression]) -> tuple[list[Any], ...]:
    """Column arrays for the ``unnest`` insert into ``impressions``."""
    return (
        [imp.recommendation_id for imp in impressions],
        [imp.user_id for imp in impressions],
        [imp.endpoint for imp in impressions],
        [imp.algorithm for imp in impressions],
        [_dumps(items_json(imp)) for imp in impressions],
        [imp.served_at for imp in impressions],
    )
