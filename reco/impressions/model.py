"""What an impression is, and the interface request handlers use to record one."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Protocol

import attrs


@attrs.frozen
class ServedItem:
    item_id: str
    position: int  # 1-based
    score: float


@attrs.frozen
class Impression:
    recommendation_id: uuid.UUID
    user_id: str | None
    endpoint: str  # "user_recommendations" | "similar" | "popular"
    algorithm: str
    items: tuple[ServedItem, ...]
    served_at: dt.datetime


class ImpressionSink(Protocol):
    """Hands impressions to the background writer; never waits for the database.

    ``submit`` raises :class:`reco.api.problems.Problem` (503) in ``sync`` mode
    when no room frees up within the bound; in ``drop`` mode it never waits.
    """

    async def submit(self, impression: Impression) -> None: ...


class DiscardingSink:
    """A sink that records nothing (until the impression writer is wired in)."""

    async def submit(self, impression: Impression) -> None:
        return None
