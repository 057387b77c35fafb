"""The consumer's offset bookkeeping, per partition, free of I/O.

The component (reco/consumer/component.py) tells the ledger what happened;
the ledger answers what may be committed and where each partition stands:

- **held**: batches in hand, from the fetch until they are stored and
  committed (or given up). The consumer is *idle* when none is held; a
  rebalance waits for that before it lets revoked partitions go.
- **positions**: per partition, the next offset not yet stored (the first
  fetched offset until a batch is stored). Lag is measured from it, never
  from the fetch position, which runs ahead of what is stored.
- **abandoned**: partitions whose batch in hand was given up (revoked while
  storing, or cut at shutdown). Nothing is committed there until the
  partition is assigned anew: a later batch's commit would skip the records
  of the abandoned one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

import attrs


class Record(Protocol):
    @property
    def offset(self) -> int: ...


@attrs.define
class Ledger:
    held: int = 0
    positions: dict[Any, int] = attrs.field(factory=dict)
    abandoned: set[Any] = attrs.field(factory=set)

    @property
    def idle(self) -> bool:
        return self.held == 0

    def hold(self) -> None:
        self.held += 1

    def release(self) -> None:
        if self.held <= 0:
            raise RuntimeError("released a batch that was not held")
        self.held -= 1

    def fetched(self, records: Mapping[Any, Sequence[Record]]) -> None:
        """A partition first seen starts at the first offset fetched from it."""
        for tp, batch in records.items():
            if batch:
                self.positions.setdefault(tp, batch[0].offset)

    def stored(self, next_offsets: Mapping[Any, int]) -> None:
        """A batch is stored: its partitions (unless abandoned) stand past it."""
        for tp, offset in next_offsets.items():
            if tp not in self.abandoned:
                self.positions[tp] = offset

    def committable(
        self, next_offsets: Mapping[Any, int], assigned: Iterable[Any]
    ) -> dict[Any, int]:
        """The offsets to commit: partitions still assigned and not abandoned."""
        keep = set(assigned) - self.abandoned
        return {tp: offset for tp, offset in next_offsets.items() if tp in keep}

    def abandon(self, partitions: Iterable[Any]) -> None:
        self.abandoned |= set(partitions)

    def revoked(self, partitions: Iterable[Any]) -> None:
        """Partitions taken away: their positions are another consumer's now."""
        for tp in partitions:
            self.positions.pop(tp, None)

    def assigned(self, partitions: Iterable[Any]) -> None:
        """Ours again: batches fetched from now on commit."""
        self.abandoned -= set(partitions)

    def position(self, tp: Any) -> int | None:
        return self.positions.get(tp)
