"""Batch planning and progress tracking: plain functions over values, no I/O.

A fetched batch becomes a :class:`BatchPlan`: the valid events (unique by
``event_id``, the first occurrence kept), the rejected records (for the
dead-letter topic: invalid ones, and repeats of an ``event_id`` that describe
another watch), the number of exact repeats within the batch and, per
partition, the offset to commit once the batch is stored.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import attrs

from reco.consumer.decode import InvalidRecord, Reason, decode_value
from reco.events import DEFAULT_MAX_FUTURE, WatchEvent, same_watch


class Record(Protocol):
    """What the consumer reads from a Kafka record (aiokafka's ConsumerRecord has it)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]]: ...


@attrs.frozen
class Rejected:
    record: Record
    error: InvalidRecord


@attrs.frozen
class BatchPlan:
    events: tuple[WatchEvent, ...]
    rejected: tuple[Rejected, ...]
    duplicates: int
    next_offsets: Mapping[Any, int]  # TopicPartition -> last offset + 1
    size: int
    sources: Mapping[str, Record] = attrs.field(factory=dict)  # event_id -> its record

    def rejected_at_store(self, event: WatchEvent, error: InvalidRecord) -> Rejected:
        """The dead-letter entry of a valid event that could not be stored."""
        return Rejected(self.sources[event.event_id], error)


def plan_batch(
    records: Mapping[Any, Sequence[Record]],
    max_bytes: int,
    *,
    now: dt.datetime | None = None,
    max_future: float = DEFAULT_MAX_FUTURE,
) -> BatchPlan:
    """Decode, validate and de-duplicate one fetched batch (``getmany`` output)."""
    events: dict[str, WatchEvent] = {}
    sources: dict[str, Record] = {}
    rejected: list[Rejected] = []
    duplicates = size = 0
    next_offsets: dict[Any, int] = {}
    for tp, batch in records.items():
        for record in batch:
            size += 1
            next_offsets[tp] = max(next_offsets.get(tp, 0), record.offset + 1)
            try:
                event = decode_value(record.value, max_bytes, now=now, max_future=max_future)
            except InvalidRecord as exc:
                rejected.append(Rejected(record, exc))
                continue
            first = events.get(event.event_id)
            if first is None:
                events[event.event_id] = event
                sources[event.event_id] = record
            elif same_watch(first, event):
                duplicates += 1
            else:
                rejected.append(
                    Rejected(record, conflict(first.user_id, first.item_id, first.occurred_at))
                )
    return BatchPlan(
        tuple(events.values()), tuple(rejected), duplicates, next_offsets, size, sources
    )


def conflict(user_id: str, item_id: str, at: dt.datetime) -> InvalidRecord:
    """The rejection of an event whose id already names another watch (the first one kept)."""
    return InvalidRecord(
        Reason.CONFLICTING_DUPLICATE,
        f"event_id already names user {user_id!r}, item {item_id!r} at {at.isoformat()}",
    )


def merge(first: Mapping[Any, list[Any]], more: Mapping[Any, list[Any]]) -> dict[Any, list[Any]]:
    """Append ``more`` (a later ``getmany`` result) to ``first``, partition by partition."""
    merged = {tp: list(records) for tp, records in first.items()}
    for tp, records in more.items():
        merged.setdefault(tp, []).extend(records)
    return merged


def split_lanes(records: Mapping[Any, Sequence[Any]], lanes: int) -> dict[int, dict[Any, Any]]:
    """Records by lane: a partition always goes to lane ``partition % lanes``.

    One lane stores its batches one after the other, so a partition's batches
    are stored (and committed) in order while other lanes run concurrently.
    """
    split: dict[int, dict[Any, Any]] = {}
    for tp, batch in records.items():
        if batch:
            split.setdefault(tp.partition % lanes, {})[tp] = batch
    return split


def lag_of(highwater: int | None, position: int | None) -> int | None:
    """High-water mark minus position, never negative; None when either is unknown."""
    if highwater is None or position is None:
        return None
    return max(0, highwater - position)


@attrs.define
class Progress:
    """Is the consumer stuck? Lag above zero and no progress for ``stuck_after`` seconds.

    Progress is a stored batch, an observed lag of zero, or a new assignment.
    """

    stuck_after: float
    progress_at: float

    def advanced(self, now: float) -> None:
        self.progress_at = now

    def observe(self, total_lag: int, now: float) -> bool:
        """Record the lag seen at ``now``; True when the consumer is stuck."""
        if total_lag == 0:
            self.progress_at = now
            return False
        return now - self.progress_at > self.stuck_after
