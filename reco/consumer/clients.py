"""The consumer's rebalance listener (its clients are built in reco.kafka.clients)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aiokafka import ConsumerRebalanceListener


class Listener(ConsumerRebalanceListener):  # type: ignore[misc]  # aiokafka is untyped
    """Forwards aiokafka's rebalance callbacks to the component."""

    def __init__(
        self,
        on_revoked: Callable[[Iterable[Any]], Awaitable[None]],
        on_assigned: Callable[[Iterable[Any]], None],
    ) -> None:
        self._on_revoked = on_revoked
        self._on_assigned = on_assigned

    async def on_partitions_revoked(self, revoked: Iterable[Any]) -> None:
        await self._on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: Iterable[Any]) -> None:
        self._on_assigned(assigned)
