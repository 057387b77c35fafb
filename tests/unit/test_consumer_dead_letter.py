"""Dead-letter headers: the reason and where the record came from, after its own headers."""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from reco.consumer.batch import Rejected
from reco.consumer.dead_letter import dead_letter_headers
from reco.consumer.decode import InvalidRecord, Reason


@attrs.frozen
class FakeRecord:
    topic: str = "watch"
    partition: int = 2
    offset: int = 41
    value: bytes | None = b"{"
    key: bytes | None = b"u1"
    headers: Sequence[tuple[str, bytes]] = (("trace", b"abc"), ("reco.dlq.reason", b"old"))


class TestDeadLetterHeaders:
    def test_headers(self) -> None:
        """Own headers are kept (ours replaced), then reason, detail and the source position."""
        rejected = Rejected(FakeRecord(), InvalidRecord(Reason.NOT_JSON, "Expecting value"))
        headers = dead_letter_headers(rejected, "reco")
        assert headers == [
            ("trace", b"abc"),
            ("reco.dlq.reason", b"not_json"),
            ("reco.dlq.detail", b"Expecting value"),
            ("reco.dlq.topic", b"watch"),
            ("reco.dlq.partition", b"2"),
            ("reco.dlq.offset", b"41"),
            ("reco.dlq.group", b"reco"),
        ]
