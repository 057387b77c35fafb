"""The catalogue endpoints: upsert, batch upsert, read and deactivate items.

Writes need a bearer token (:func:`reco.api.auth.require_token`). Deleting
only marks an item inactive: it stays readable here and is never
recommended, and the watch history that mentions it keeps its meaning.
"""

from __future__ import annotations

import json
from typing import Any

from quart import Blueprint, Response, request

from reco.api import validation
from reco.api.auth import require_token
from reco.api.dependencies import database, register_unavailable
from reco.api.problems import Problem
from reco.db.queries import items as queries

blueprint = Blueprint("catalogue", __name__)
register_unavailable(blueprint)


def _json(body: Any, status: int = 200) -> Response:
    return Response(json.dumps(body, separators=(",", ":")), status=status,
                    content_type="application/json")  # fmt: skip


def path_item_id(item_id: str) -> str:
    """An item id from the path, for reads and writes alike."""
    problem = validation.item_id_problem(item_id)
    if problem is not None:
        raise Problem(400, f"item_id: {problem}")
    return item_id


def item_json(stored: queries.StoredItem) -> dict[str, Any]:
    item = stored.item
    return {
        "item_id": item.item_id, "title": item.title, "genres": list(item.genres),
        "active": item.active, "attributes": item.attributes,
        "created_at": stored.created_at.isoformat(), "updated_at": stored.updated_at.isoformat(),
    }  # fmt: skip


@blueprint.put("/v1/items/<item_id>")
@require_token()
async def put_item(item_id: str) -> Response:
    """Create or replace one item: 201 when new, 200 when replaced; the stored item."""
    item_id = path_item_id(item_id)
    item = validation.item_body(validation.json_body(await request.get_data()), item_id)
    async with database().connection() as conn:
        stored, created = await queries.upsert_item(conn, item)
    return _json(item_json(stored), 201 if created else 200)


@blueprint.post("/v1/items")
@require_token()
async def post_items() -> Response:
    """Create or replace up to 1000 items in one transaction; ``{"upserted": n}``."""
    items = validation.batch_body(validation.json_body(await request.get_data()))
    async with database().connection() as conn, conn.transaction():
        upserted = await queries.upsert_items(conn, items)
    return _json({"upserted": upserted})


@blueprint.get("/v1/items/<item_id>")
async def get_item(item_id: str) -> Response:
    async with database().connection() as conn:
        stored = await queries.get_item(conn, path_item_id(item_id))
    if stored is None:
        raise Problem(404, f"no item {item_id!r}", slug="unknown-item")
    return _json(item_json(stored))


@blueprint.delete("/v1/items/<item_id>")
@require_token()
async def delete_item(item_id: str) -> Response:
    """Mark the item inactive (204); 404 when it was never stored."""
    async with database().connection() as conn:
        found = await queries.deactivate_item(conn, path_item_id(item_id))
    if not found:
        raise Problem(404, f"no item {item_id!r}", slug="unknown-item")
    return Response(b"", status=204)
