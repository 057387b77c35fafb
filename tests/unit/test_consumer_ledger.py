"""The consumer's offset ledger: held batches, stored positions, abandoned partitions."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reco.consumer.ledger import Ledger


@attrs.frozen
class Rec:
    offset: int


class TestHeld:
    def test_idle_until_a_batch_is_held_and_again_once_released(self) -> None:
        ledger = Ledger()
        assert ledger.idle
        ledger.hold()
        ledger.hold()
        ledger.release()
        assert not ledger.idle
        ledger.release()
        assert ledger.idle

    def test_releasing_more_than_held_is_a_bug(self) -> None:
        with pytest.raises(RuntimeError):
            Ledger().release()


class TestPositions:
    def test_a_new_partition_starts_at_its_first_fetched_offset(self) -> None:
        ledger = Ledger()
        ledger.fetched({"p0": [Rec(5), Rec(6)], "p1": []})
        ledger.fetched({"p0": [Rec(7)]})  # the fetch runs ahead: the position does not
        assert ledger.positions == {"p0": 5}

    def test_stored_moves_past_the_batch(self) -> None:
        ledger = Ledger()
        ledger.fetched({"p0": [Rec(5)]})
        ledger.stored({"p0": 9})
        assert ledger.position("p0") == 9

    def test_revoked_partitions_forget_their_position(self) -> None:
        ledger = Ledger(positions={"p0": 3, "p1": 4})
        ledger.revoked(["p0"])
        assert ledger.positions == {"p1": 4}


class TestAbandoned:
    def test_abandoned_partitions_are_never_committed_nor_advanced(self) -> None:
        ledger = Ledger(positions={"p0": 1, "p1": 1})
        ledger.abandon(["p1"])
        ledger.stored({"p0": 10, "p1": 10})
        assert ledger.positions == {"p0": 10, "p1": 1}
        assert ledger.committable({"p0": 10, "p1": 10}, assigned={"p0", "p1"}) == {"p0": 10}

    def test_assigned_anew_they_commit_again(self) -> None:
        ledger = Ledger()
        ledger.abandon(["p1"])
        ledger.assigned(["p1"])
        assert ledger.committable({"p1": 3}, assigned={"p1"}) == {"p1": 3}

    def test_skips_revoked_and_unassigned(self) -> None:
        """No commit for a partition revoked while the batch was stored, or not assigned."""
        ledger = Ledger(abandoned={1})
        assert ledger.committable({0: 5, 1: 7, 2: 9}, assigned={0, 1}) == {0: 5}

    @given(
        st.dictionaries(st.integers(0, 7), st.integers(0, 2**63 - 1)),
        st.sets(st.integers(0, 7)),
        st.sets(st.integers(0, 7)),
    )
    def test_committable_is_assigned_minus_abandoned(
        self, offsets: dict[int, int], assigned: set[int], abandoned: set[int]
    ) -> None:
        ledger = Ledger(abandoned=set(abandoned))
        out = ledger.committable(offsets, assigned)
        assert set(out) == set(offsets) & (assigned - abandoned)
        assert all(out[tp] == offsets[tp] for tp in out)
