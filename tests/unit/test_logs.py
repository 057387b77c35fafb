"""The JSON-lines log output: tracebacks are rendered, frame locals never are."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from reco.observability.logs import configure_logging, get_logger, wants_console

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


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class TestFormat:
    @pytest.mark.parametrize(
        ("log_format", "production", "tty", "console"),
        [
            ("auto", False, True, True),
            ("auto", False, False, False),
            ("json", False, True, False),
            ("console", False, False, True),
            ("auto", True, True, False),
            ("console", True, True, False),
        ],
    )
    def test_console_only_for_a_development_terminal(
        self, log_format: str, production: bool, tty: bool, console: bool
    ) -> None:
        """auto: console lines on a terminal, JSON otherwise; production: always JSON."""
        stream = _Terminal() if tty else io.StringIO()
        assert wants_console(log_format, production, stream) is console

    def test_console_lines_are_readable_and_carry_no_frame_locals(
        self, stream: io.StringIO
    ) -> None:
        """The console renderer prints event and fields, and tracebacks without locals."""
        out = io.StringIO()
        configure_logging("INFO", out, console=True)
        get_logger("test").info("hello there", answer=42)
        try:
            _fail_with_a_secret_local()
        except ConnectionRefusedError:
            get_logger("test").exception("failed")
        text = out.getvalue()
        assert "hello there" in text
        assert "answer" in text
        assert "_fail_with_a_secret_local" in text
        assert SECRET not in text
        assert not text.lstrip().startswith("{")
