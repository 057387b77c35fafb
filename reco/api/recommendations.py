"""The read API: per-user recommendations, similar items and popular items.

Each list served gets a fresh ``recommendation_id`` and is submitted as an
:class:`~reco.impressions.model.Impression` before it is answered (the sink
may answer 503 in ``sync`` mode when the writer cannot keep up; that problem
propagates). The three endpoints answer the same shape; ``user_id`` is null
for similar and popular lists.

``/v1/items/popular`` is registered before ``/v1/items/<item_id>`` (and
Werkzeug ranks static segments first anyway), so it is never read as an item
id; ``popular`` is a reserved item id for that reason.
"""

from __future__ import annotations

import datetime as dt
import uuid

import orjson
from quart import Blueprint, Response, request

from reco.api import validation
from reco.api.dependencies import recommender, register_unavailable
from reco.api.problems import Problem
from reco.api.state import state
from reco.engine.recommender import RecommendationList, ScoredItem, algorithm_family
from reco.impressions.model import Impression, ServedItem
from reco.observability import metrics

blueprint = Blueprint("recommendations", __name__)
register_unavailable(blueprint)

USER_PARAMS = frozenset({"limit", "genre", "exclude"})
SIMILAR_PARAMS = frozenset({"limit"})
POPULAR_PARAMS = frozenset({"limit", "genre"})


@blueprint.get("/v1/items/popular")
async def popular() -> Response:
    """The most popular active items, optionally within genres."""
    args = request.args
    validation.known_params(args.keys(), POPULAR_PARAMS)
    limit = validation.limit(args.get("limit"))
    genres = validation.filter_values(args.getlist("genre"), "genre")
    recs = await recommender().popular(limit=limit, genres=genres)
    return await _serve("popular", None, recs)


@blueprint.get("/v1/users/<user_id>/recommendations")
async def user_recommendations(user_id: str) -> Response:
    """Personal recommendations; popular items for a user without history."""
    args = request.args
    validation.known_params(args.keys(), USER_PARAMS)
    validation.identifier(user_id, "user_id")
    limit = validation.limit(args.get("limit"))
    genres = validation.filter_values(args.getlist("genre"), "genre")
    exclude = frozenset(validation.filter_values(args.getlist("exclude"), "exclude"))
    recs = await recommender().for_user(user_id, limit=limit, genres=genres, exclude=exclude)
    return await _serve("user_recommendations", user_id, recs)


@blueprint.get("/v1/items/<item_id>/similar")
async def similar(item_id: str) -> Response:
    """Items watched together with ``item_id``; 404 for an unknown item."""
    args = request.args
    validation.known_params(args.keys(), SIMILAR_PARAMS)
    validation.identifier(item_id, "item_id")
    limit = validation.limit(args.get("limit"))
    recs = await recommender().similar(item_id, limit=limit)
    if recs is None:
        raise Problem(404, f"no item {item_id!r}", slug="unknown-item")
    return await _serve("similar", None, recs)


async def _serve(endpoint: str, user_id: str | None, recs: RecommendationList) -> Response:
    """Record the impression, count the list, and answer it."""
    recommendation_id = uuid.uuid4()
    await state().impressions.submit(impression(recommendation_id, endpoint, user_id, recs))
    metrics.recommendations_served_tally.inc(endpoint, algorithm_family(recs.algorithm))
    body = encode_list(recommendation_id, user_id, recs)
    return Response(body, content_type="application/json")


def impression(
    recommendation_id: uuid.UUID, endpoint: str, user_id: str | None, recs: RecommendationList
) -> Impression:
    served = tuple(
        ServedItem(item.item_id, position, item.score)
        for position, item in enumerate(recs.items, start=1)
    )
    return Impression(recommendation_id, user_id, endpoint, recs.algorithm, served,
                      dt.datetime.now(dt.UTC))  # fmt: skip


def _item(item: ScoredItem) -> dict[str, object]:
    reason: dict[str, str] = {"type": item.reason.type}
    if item.reason.item_id is not None:
        reason["item_id"] = item.reason.item_id
    return {"item_id": item.item_id, "title": item.title, "score": item.score, "reason": reason}


def encode_list(recommendation_id: uuid.UUID, user_id: str | None,
                recs: RecommendationList) -> bytes:  # fmt: skip
    """The response body: the list, its id and who it was for.

    orjson: several times faster than the stdlib encoder on these small
    bodies, and it refuses nothing a score can be (scores are finite).
    """
    body = {
        "recommendation_id": str(recommendation_id), "user_id": user_id,
        "algorithm": recs.algorithm, "items": [_item(item) for item in recs.items],
    }  # fmt: skip
    return orjson.dumps(body)
