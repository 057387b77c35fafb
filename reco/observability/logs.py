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

Our own events (structlog) are rendered by structlog alone and written as one
line to the stream the stdlib handler writes to, under that handler's lock:
going through stdlib ``logging`` (a LogRecord, then a copy of it in
ProcessorFormatter, the stdlib JSON encoder) made the access line the
largest part of what reco adds to a request (docs/performance.md, "Read
path (issue 13)"). Lines from stdlib loggers (hypercorn, aiokafka, asyncpg) still go
through the handler and its ProcessorFormatter, to the same shape.
"""

from __future__ import annotations

import logging
import sys
import threading
from typing import Any, TextIO

import orjson
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


def _dumps(value: Any, default: Any = None, **_: Any) -> str:
    """orjson for JSONRenderer: several times faster than the stdlib encoder."""
    return orjson.dumps(value, default=default, option=orjson.OPT_NON_STR_KEYS).decode()


class _LineLogger:
    """Writes each rendered event as one line (and a flush), as the stdlib handler does."""

    def __init__(self, name: str, stream: TextIO, lock: threading.RLock) -> None:
        self.name = name  # read by add_logger_name
        self._stream = stream
        self._lock = lock

    def msg(self, message: str) -> None:
        with self._lock:
            self._stream.write(message + "\n")
            self._stream.flush()

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


class _LineLoggerFactory:
    def __init__(self, stream: TextIO, lock: threading.RLock) -> None:
        self._stream = stream
        self._lock = lock

    def __call__(self, name: str = "", *_: Any) -> _LineLogger:
        return _LineLogger(name, self._stream, self._lock)


def wants_console(log_format: str, production: bool, stream: TextIO) -> bool:
    """Console lines for ``console``, or ``auto`` on a terminal; JSON always in production."""
    if production or log_format == "json":
        return False
    return log_format == "console" or stream.isatty()


def _renderer(console: bool) -> Any:
    if not console:
        return structlog.processors.JSONRenderer(serializer=_dumps)
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
    out = stream or sys.stdout
    handler = logging.StreamHandler(out)
    lock = handler.lock
    assert lock is not None  # made by Handler.__init__
    structlog.configure(
        processors=[*_SHARED, *([] if console else [_TRACEBACKS]), _renderer(console)],
        logger_factory=_LineLoggerFactory(out, lock),
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
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
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Hypercorn's own access log duplicates ours; aiokafka is chatty at INFO.
    logging.getLogger("hypercorn.access").disabled = True
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))


def get_logger(name: str) -> structlog.typing.FilteringBoundLogger:
    logger: structlog.typing.FilteringBoundLogger = structlog.get_logger(name)
    return logger
