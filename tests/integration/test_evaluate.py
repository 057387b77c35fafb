"""`reco evaluate` end to end on a small generated ratings file: service, Kafka, consumer, HTTP."""

from __future__ import annotations

import random
import socket
from pathlib import Path

import anyio
import pytest
from reco_dev.devstack.ports import free_port
from reco_dev.evaluation import cli
from reco_dev.evaluation.client import Client
from reco_dev.evaluation.service import ServiceFailed, service_process

from reco.settings import Settings, evolve
from tests.integration.consumer_harness import Store, fast
from tests.support.service import running_service

pytestmark = [pytest.mark.integration, pytest.mark.anyio]


def generate(tmp_path: Path) -> Path:
    """40 users watching runs of consecutive items: sequence matters, like real data."""
    rng = random.Random(3)
    lines = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    for user in range(40):
        start, t = rng.randrange(30), 1_000_000 + user * 50
        for step in range(10):
            lines.append(f"{user}\t{(start + step) % 30}\t4\t{t + step * 60}")
    path = tmp_path / "tiny.inter"
    path.write_text("\n".join(lines) + "\n")
    (tmp_path / "tiny.item").write_text(
        "item_id:token\tmovie_title:token_seq\tclass:token_seq\n"
        + "".join(f"{i}\tMovie {i}\tDrama\n" for i in range(30))
    )
    return path


def service_row(out: str) -> list[str]:
    return next(line for line in out.splitlines() if line.startswith("reco service")).split()


class TestEvaluate:
    def test_replays_through_kafka_into_a_service_process(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], kafka_settings: Settings
    ) -> None:
        """Exit 0; events produced to Kafka, stored by the consumer, `reco train`, lists over
        HTTP naming the model version; baselines."""
        status = cli.run(kafka_settings, generate(tmp_path), None, embedded=False)
        out, err = capsys.readouterr()
        assert status == 0, err
        row = service_row(out)
        assert row[:4] == ["reco", "service", "(events", "via"]
        assert float(row[-6]) > 0.5  # sequences are easy: the next items follow the last ones
        assert "\nmost popular " in out
        assert "\nEASE (lambda=500) " in out
        assert "\nimplicit ALS" in out
        assert "algorithms served: cooccurrence+ease@v1\n" in out  # reco train ran, and served
        assert "reco train: version 1 (ease, 30 items)" in err
        for phase in ("catalogue: 30/30", "produce: 320/320", "consumer stored: 320/320",
                      "recommend via HTTP"):  # fmt: skip
            assert phase in err

    async def test_url_posts_events_through_the_outbox(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], kafka_settings: Settings
    ) -> None:
        """--url without RECO_KAFKA_BOOTSTRAP: POST /v1/events, relay, Kafka, consumer, HTTP."""
        path = generate(tmp_path)
        async with running_service(fast(kafka_settings, relay_poll_interval=0.05)) as service:
            status = await anyio.to_thread.run_sync(
                lambda: cli.run(kafka_settings, path, service.base_url, environ={})
            )
        out, err = capsys.readouterr()
        assert status == 0, err
        assert " ".join(service_row(out)[:6]) == "reco service (events via POST /v1/events)"
        assert float(service_row(out)[-6]) > 0.5
        assert "post events: 320/320" in err
        assert "consumer stored: 320/320" in err

    async def test_url_with_kafka_bootstrap_produces_and_a_rerun_adds_nothing(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str], kafka_settings: Settings
    ) -> None:
        """--url with RECO_KAFKA_BOOTSTRAP produces to Kafka; replaying again stores no new event."""
        path = generate(tmp_path)
        environ = {"RECO_KAFKA_BOOTSTRAP": kafka_settings.kafka.bootstrap}
        async with running_service(fast(kafka_settings)) as service:
            for _ in range(2):
                status = await anyio.to_thread.run_sync(
                    lambda: cli.run(kafka_settings, path, service.base_url, environ=environ)
                )
                out, err = capsys.readouterr()
                assert status == 0, err
                assert " ".join(service_row(out)[:5]) == "reco service (events via Kafka)"
                assert float(service_row(out)[-6]) > 0.5
        assert await Store(kafka_settings.database.url).count() == 320


class TestUsage:
    def test_unreadable_file_is_a_usage_error(self, tmp_path: Path) -> None:
        """A missing ratings file exits 2 before starting anything."""
        assert cli.run(Settings(), tmp_path / "missing.inter", None) == cli.EXIT_USAGE

    def test_url_without_a_token_is_a_usage_error(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """--url needs RECO_API_TOKENS to load the catalogue."""
        status = cli.run(Settings(), generate(tmp_path), "http://127.0.0.1:9")
        assert status == cli.EXIT_USAGE
        assert "RECO_API_TOKENS" in capsys.readouterr().err


class TestServiceProcess:
    def test_a_service_that_cannot_start_reports_its_log(self, tmp_path: Path) -> None:
        """A child that exits at start-up raises ServiceFailed quoting the end of its log."""
        broken = Settings.from_flat(log_level="LOUD", http_bind=f"127.0.0.1:{free_port()}",
                          database_url="postgresql://nobody@127.0.0.1:9/none")  # fmt: skip
        with (
            pytest.raises(ServiceFailed, match=r"exited with status 2(.|\n)*RECO_LOG_LEVEL"),
            service_process(broken, tmp_path / "service.log"),
        ):
            pytest.fail("the service should not have started")

    def test_an_interrupted_evaluation_stops_the_service(
        self, tmp_path: Path, kafka_settings: Settings
    ) -> None:
        """Ctrl-C inside the block: the child gets its graceful stop and stops listening."""
        port = free_port()
        settings = evolve(kafka_settings, http_bind=f"127.0.0.1:{port}")
        with pytest.raises(KeyboardInterrupt):
            interrupt_while_serving(settings, tmp_path / "service.log")
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        log = (tmp_path / "service.log").read_text()
        assert "signal received; stopping" in log  # SIGTERM: the graceful path, not a kill


def interrupt_while_serving(settings: Settings, log: Path) -> None:
    """Start the service, check it answers, then raise KeyboardInterrupt inside the block."""
    with service_process(settings, log) as base_url:
        client = Client(base_url)
        try:
            assert client.request("GET", "/healthz")[0] == 200
        finally:
            client.close()
        raise KeyboardInterrupt
