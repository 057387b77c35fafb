"""Partitioning of outbox rows, without a broker."""

from __future__ import annotations

from aiokafka.partitioner import DefaultPartitioner

from reco.outbox.publish import headers, partition_for
from reco.outbox.queries import PendingRow


class TestPartitionFor:
    def test_matches_the_default_partitioner(self) -> None:
        """A key lands where aiokafka's (and Java's) default partitioner puts it."""
        partitions = [0, 1, 2, 3]
        for key in (b"u1", b"u2", b"someone", b""):
            assert partition_for(key, partitions) == DefaultPartitioner()(key, partitions, [])

    def test_same_key_same_partition(self) -> None:
        """Every row of one key goes to one partition, so their order holds."""
        assert len({partition_for(b"u42", [0, 1, 2, 3]) for _ in range(10)}) == 1


class TestHeaders:
    def test_event_id_and_type(self) -> None:
        """Each message carries its event id and type as headers."""
        row = PendingRow(1, "t", "k", "e1", "impression", b"{}", 0.0)
        assert headers(row) == [("event_id", b"e1"), ("event_type", b"impression")]
