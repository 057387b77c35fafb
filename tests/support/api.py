"""A running service plus an httpx client, and small helpers for the API tests."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import httpx

from reco.engine.ingest import store_events
from reco.events import WatchEvent
from reco.folder import folding
from reco.settings import Settings
from tests.support.service import RunningService, running_service


@attrs.frozen
class Api:
    service: RunningService
    client: httpx.AsyncClient
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@asynccontextmanager
async def running_api(settings: Settings) -> AsyncIterator[Api]:
    async with (
        running_service(settings) as svc,
        httpx.AsyncClient(base_url=svc.base_url, timeout=10) as client,
    ):
        yield Api(svc, client, settings.api_tokens[0])


def item(
    item_id: str, *, genres: Sequence[str] = ("Drama",), active: bool = True
) -> dict[str, Any]:
    return {"item_id": item_id, "title": f"Title {item_id}", "genres": list(genres),
            "active": active}  # fmt: skip


async def put_items(api: Api, items: Iterable[dict[str, Any]]) -> None:
    response = await api.client.post("/v1/items", json={"items": list(items)}, headers=api.auth)
    assert response.status_code == 200, response.text


async def seed_popularity(api: Api, scores: dict[str, float]) -> None:
    """Watch events through the engine's write path: the higher the score, the more users."""
    ranked = sorted(scores, key=lambda item_id: -scores[item_id])
    now = dt.datetime.now(dt.UTC)
    events = [
        WatchEvent(f"seed-{item_id}-{n}", f"seed-user-{n}", item_id, now)
        for rank, item_id in enumerate(ranked)
        for n in range(len(ranked) - rank)
    ]
    assert api.service.state.database is not None
    async with api.service.state.database.connection() as conn:
        async with conn.transaction():  # one consumer batch
            await store_events(conn, events)
        async with conn.transaction():  # what the service's folder would do next
            await folding.fold(conn, statement_timeout=30)


async def seed_history(api: Api, user_id: str, item_ids: Iterable[str]) -> None:
    """Write a user's history rows directly (the engine's aggregate)."""
    now = dt.datetime.now(dt.UTC)
    assert api.service.state.database is not None
    async with api.service.state.database.connection() as conn:
        await conn.executemany(
            "INSERT INTO user_history (user_id, item_id, first_watched_at, last_watched_at)"
            " VALUES ($1, $2, $3, $3)",
            [(user_id, item_id, now) for item_id in item_ids],
        )


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert {"type", "title", "detail"} <= body.keys()
    return body
