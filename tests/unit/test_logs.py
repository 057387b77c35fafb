"""The JSON-lines log output: tracebacks are rendered, frame locals never are."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from reco.observability.logs import configure_logging, get_logger

SECRET = "Zq7-local-secret-Kp2"


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    previous = structlog.get_config()
    root, access, kafka = (logging.getLogger(n) for n in ("", "hypercorn.access", "aiokafka"))
    saved = (root.handlers[:], root.level, access.disabled, kafka.level)
    configure_logging("INFO", out)
    try:
        yield out
    finally:
        structlog.configure(**previous)
        root.handlers[:], root.level, access.disabled, kafka.level = saved


def _fail_with_a_secret_local() -> None:
    password = SECRET  # what asyncpg's connect frames hold
    raise ConnectionRefusedError(f"cannot connect ({len(password)} characters of password)")


class TestTracebacks:
    @pytest.mark.parametrize("source", ["structlog", "stdlib"])
    def test_tracebacks_carry_no_frame_locals(self, stream: io.StringIO, source: str) -> None:
        """A logged exception shows its frames and message, never the frames' variables."""
        try:
            _fail_with_a_secret_local()
        except ConnectionRefusedError:
            if source == "structlog":
                get_logger("test").exception("failed")
            else:
                logging.getLogger("test.stdlib").exception("failed")
        line = json.loads(stream.getvalue().splitlines()[-1])
        frames = line["exception"][0]["frames"]
        assert any(frame["name"] == "_fail_with_a_secret_local" for frame in frames)
        assert all("locals" not in frame for frame in frames)
        assert SECRET not in stream.getvalue()
