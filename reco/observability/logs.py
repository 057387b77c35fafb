"""Logging through structlog, with context bound per request/batch.

JSON lines, or (``console=True``: a development terminal, see :func:`wants_console`)
structlog's coloured console renderer with the same fields. Everything (our code and the stdlib loggers of hypercorn, aiokafka, asyncpg)
goes to stdout as one JSON object per line, with ``timestamp``, ``level``,
``logger`` and ``event``, plus whatever is bound in the current context
(``request_id``, ``correlation_id``, ``component`` ...).

Tracebacks are rendered as dicts **without frame locals**: structlog's
default ``dict_tracebacks`` shows them, and asyncpg's connect frames hold the
DSN and the password (``ConnectionParameters``, ``dsn``, ``password``). A
traceback keeps file, line, function and the exception's message.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog
from structlog.tracebacks import ExceptionDictTransformer

_SHARED: list[Any] = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
    structlog.processors.StackInfoRenderer(),
]

# Never show_locals: frame locals hold secrets (the DSN in asyncpg's connect frames).
_TRACEBACKS = structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False))


def wants_console(log_format: str, production: bool, stream: TextIO) -> bool:
    """Console lines for ``console``, or ``auto`` on a terminal; JSON always in production."""
    if production or log_format == "json":
        return False
    return log_format == "console" or stream.isatty()


def _renderer(console: bool) -> Any:
    if not console:
        return structlog.processors.JSONRenderer()
    # plain_traceback: never rich's or better-exceptions' formatters, which show frame
    # locals (and with them the DSN) when they are installed.
    return structlog.dev.ConsoleRenderer(
        colors=True, exception_formatter=structlog.dev.plain_traceback
    )


def configure_logging(
    level: str = "INFO", stream: TextIO | None = None, *, console: bool = False
) -> None:
    """Route structlog and stdlib logging to ``stream`` (stdout): JSON lines, or console
    lines when ``console``."""
    structlog.configure(
        processors=[
            *_SHARED,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            *([] if console else [_TRACEBACKS]),
            _renderer(console),
        ],
    )
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Hypercorn's own access log duplicates ours; aiokafka is chatty at INFO.
    logging.getLogger("hypercorn.access").disabled = True
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)
