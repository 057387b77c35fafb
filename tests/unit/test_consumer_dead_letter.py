"""Dead-letter headers: the reason and where the record came from, after its own headers."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import attrs
import pytest
from aiokafka.errors import MessageSizeTooLargeError

from reco.consumer.batch import Rejected
from reco.consumer.dead_letter import dead_letter_headers, send_all
from reco.consumer.decode import InvalidRecord, Reason
from reco.observability import metrics

TOPIC, GROUP = "reco.watch-events.dlq", "reco"


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


class FakeProducer:
    """Refuses (like a broker whose max.message.bytes is smaller) values above ``limit``."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.sent: list[tuple[bytes | None, list[tuple[str, bytes]]]] = []

    async def send(self, topic: str, *, value: bytes | None, key: bytes | None,
                   headers: list[tuple[str, bytes]]) -> asyncio.Future[None]:  # fmt: skip
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        size = len(value or b"") + sum(len(k) + len(v) for k, v in headers)
        if size > self.limit:
            future.set_exception(MessageSizeTooLargeError())
        else:
            self.sent.append((value, headers))
            future.set_result(None)
        return future


@pytest.mark.anyio
class TestSendAll:
    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    async def test_refused_value_is_dropped_then_the_record(self) -> None:
        """Refused with its value: sent without it; refused again: dropped and counted."""
        small = Rejected(FakeRecord(value=b"x" * 10), InvalidRecord(Reason.NOT_JSON, "x"))
        large = Rejected(FakeRecord(value=b"x" * 500), InvalidRecord(Reason.NOT_JSON, "x"))
        producer = FakeProducer(limit=400)
        await send_all(producer, [small, large], topic=TOPIC, group=GROUP)
        assert [value for value, _ in producer.sent] == [b"x" * 10, None]
        assert ("reco.dlq.value_dropped_bytes", b"500") in producer.sent[1][1]
        before = metrics.consumer_dead_letter_dropped.values.get({}, 0)
        await send_all(FakeProducer(limit=10), [large], topic=TOPIC, group=GROUP)
        assert metrics.consumer_dead_letter_dropped.values.get({}, 0) == before + 1
