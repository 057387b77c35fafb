"""``python -m bench._stub_serve``: the real service with a zero-cost engine.

Used by ``python -m bench recommendations --stub-engine`` to measure the read
path the HTTP layer owns (routing, validation, impression, encoding) apart
from the engine: ``Recommender.for_user`` answers a fixed list at once.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import anyio

from reco import service
from reco.cli import LOOP_OPTIONS
from reco.engine.recommender import Reason, RecommendationList, Recommender, ScoredItem
from reco.observability.logs import configure_logging
from reco.settings import load_settings


class StubRecommender(Recommender):
    """Ten fixed items for every user, without touching the database."""

    LIST = RecommendationList(
        "stub",
        tuple(
            ScoredItem(str(i), f"Movie number {i} (1995)", 10.0 - i / 7, Reason("popular"))
            for i in range(1, 11)
        ),
    )

    def __init__(self) -> None:
        """No database, no settings: whatever the real engine's constructor needs."""

    async def for_user(
        self, user_id: str, *, limit: int, genres: Sequence[str] = (),
        exclude: frozenset[str] = frozenset(),
    ) -> RecommendationList:  # fmt: skip
        return RecommendationList(self.LIST.algorithm, self.LIST.items[:limit])


def main() -> int:
    settings = load_settings()
    configure_logging(settings.log_level)
    supervisor, app_state, _ = service.build(settings)
    app_state.recommender = StubRecommender()
    service.freeze_startup_objects()  # as `reco serve` does, on the same event loop
    return anyio.run(supervisor.run, backend="asyncio", backend_options=LOOP_OPTIONS)


if __name__ == "__main__":
    sys.exit(main())
