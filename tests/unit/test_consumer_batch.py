"""Batch planning, commit selection, lag and stuck detection (pure functions)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence

import attrs

from reco.consumer.batch import Progress, lag_of, merge, plan_batch, split_lanes
from reco.consumer.decode import Reason
from reco.events import WatchEvent, new_in_order

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


@attrs.frozen
class FakeRecord:
    topic: str
    partition: int
    offset: int
    value: bytes | None
    key: bytes | None = b"u"
    headers: Sequence[tuple[str, bytes]] = ()


def value(event_id: str, seconds: int = 0) -> bytes:
    return json.dumps({
        "event_id": event_id, "user_id": "u", "item_id": "i",
        "occurred_at": (T0 + dt.timedelta(seconds=seconds)).isoformat(),
    }).encode()  # fmt: skip


def records(partition: int, *values: bytes | None, start: int = 0) -> list[FakeRecord]:
    return [FakeRecord("t", partition, start + n, v) for n, v in enumerate(values)]


class TestPlanBatch:
    def test_conflicting_repeat_is_rejected(self) -> None:
        """The same id for another instant is a conflict (first kept); an exact repeat is not."""
        plan = plan_batch({0: records(0, value("a"), value("a", 5), value("a"))}, 1024)
        assert [e.occurred_at for e in plan.events] == [T0]
        assert [r.error.code for r in plan.rejected] == [Reason.CONFLICTING_DUPLICATE]
        assert (plan.duplicates, plan.rejected[0].record.offset) == (1, 1)
        assert plan.sources["a"].offset == 0

    def test_dedupes_within_batch(self) -> None:
        """The same event three times in one batch is planned once, two duplicates counted."""
        plan = plan_batch({0: records(0, value("a"), value("a")), 1: records(1, value("a"))}, 1024)
        assert [e.event_id for e in plan.events] == ["a"]
        assert plan.duplicates == 2
        assert plan.size == 3

    def test_invalid_records_are_rejected_not_dropped(self) -> None:
        """Invalid records are kept for the dead-letter topic, good ones around them planned."""
        plan = plan_batch({0: records(0, value("a"), b"{", None, value("b"))}, 1024)
        assert [e.event_id for e in plan.events] == ["a", "b"]
        assert [(r.record.offset, r.error.code) for r in plan.rejected] == [
            (1, Reason.NOT_JSON), (2, Reason.NO_VALUE),
        ]  # fmt: skip

    def test_next_offsets_cover_invalid_records(self) -> None:
        """The offset to commit is one past the last record of each partition, valid or not."""
        plan = plan_batch({0: records(0, value("a"), start=5), 3: records(3, b"x", start=9)}, 1024)
        assert plan.next_offsets == {0: 6, 3: 10}


class TestMerge:
    def test_appends_per_partition(self) -> None:
        """A later fetch is appended after the earlier one, partition by partition."""
        assert merge({0: [1], 1: [2]}, {0: [3], 2: [4]}) == {0: [1, 3], 1: [2], 2: [4]}


class TestSplitLanes:
    def test_a_partition_always_goes_to_the_same_lane(self) -> None:
        """Partition p goes to lane p % lanes, so one lane stores its batches in order."""
        tps = {p: FakeRecord("t", p, 0, None) for p in range(5)}
        split = split_lanes({tp: [tp] for tp in tps.values()}, 2)
        assert {lane: sorted(tp.partition for tp in part) for lane, part in split.items()} == {
            0: [0, 2, 4],
            1: [1, 3],
        }

    def test_empty_partitions_and_lanes_are_left_out(self) -> None:
        """A partition with no records gives no lane work."""
        tp = FakeRecord("t", 1, 0, None)
        assert split_lanes({tp: []}, 2) == {}


class TestNewInOrder:
    def test_only_new_sorted_by_time(self) -> None:
        """Only the newly stored events are applied, oldest first."""
        events = [WatchEvent(f"e{n}", "u", "i", T0 + dt.timedelta(seconds=-n)) for n in range(4)]
        chosen = new_in_order(events, ["e0", "e2", "e3"])
        assert [e.event_id for e in chosen] == ["e3", "e2", "e0"]


class TestLag:
    def test_lag(self) -> None:
        """Lag is the high-water mark minus the position, never negative, None when unknown."""
        assert lag_of(10, 4) == 6
        assert lag_of(3, 4) == 0
        assert lag_of(None, 4) is None
        assert lag_of(10, None) is None


class TestProgress:
    def test_stuck_after_bound_with_lag(self) -> None:
        """Lag with no progress beyond the bound is stuck; within it, not yet."""
        progress = Progress(stuck_after=10, progress_at=0)
        assert not progress.observe(5, now=9)
        assert progress.observe(5, now=11)

    def test_progress_resets(self) -> None:
        """A stored batch or an observed zero lag resets the clock."""
        progress = Progress(stuck_after=10, progress_at=0)
        progress.advanced(8)
        assert not progress.observe(5, now=15)
        assert not progress.observe(0, now=30)
        assert not progress.observe(5, now=39)
        assert progress.observe(5, now=41)

    def test_idle_is_not_stuck(self) -> None:
        """No lag is never stuck, however long nothing happens."""
        assert not Progress(stuck_after=1, progress_at=0).observe(0, now=1000)
