"""The ``reco`` command: serve, dev, migrate, check-migrations, check-aggregates, evaluate."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

import anyio
import attrs

from reco.errors import ConfigError, MigrationError, StartupError
from reco.observability.logs import configure_logging, get_logger
from reco.settings import Settings, load_settings, redact_dsn

log = get_logger("reco.cli")

EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reco", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the service (settings from RECO_* variables)")
    dev = sub.add_parser("dev", help="run the service on an embedded PostgreSQL and broker")
    dev.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="where PostgreSQL and the broker keep data (default: a temporary dir)",
    )
    sub.add_parser("migrate", help="apply pending migrations")
    sub.add_parser("check-migrations", help="check naming, order, checksums and drift")
    sub.add_parser(
        "check-aggregates",
        help="recompute history, popularity and co-occurrence from watch_events and compare",
    )
    evaluate = sub.add_parser("evaluate", help="offline quality evaluation on a ratings file")
    evaluate.add_argument("path", type=Path)
    evaluate.add_argument("--url", default=None, help="use a running service instead of dev")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"reco: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    # evaluate prints its report on stdout: its logs go to stderr.
    configure_logging(settings.log_level, sys.stderr if args.command == "evaluate" else None)
    try:
        return _dispatch(args, settings)
    except (StartupError, MigrationError) as exc:
        return _failed(exc)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED


def _failed(exc: StartupError | MigrationError) -> int:
    """Expected failures: the message says it all (tracebacks were logged where they arose)."""
    event = "start-up failed" if isinstance(exc, StartupError) else "migrations"
    log.error(event, error=str(exc))
    print(f"reco: {exc}", file=sys.stderr)
    return EXIT_FAILED


def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    if args.command == "serve":
        return _serve(settings)
    if args.command == "dev":
        return _dev(settings, args.data_dir)
    if args.command == "migrate":
        from reco.db import admin

        return anyio.run(admin.migrate_command, settings)
    if args.command == "check-migrations":
        from reco.db import admin

        return anyio.run(admin.check_command, settings)
    if args.command == "check-aggregates":
        from reco import audit

        return anyio.run(audit.check_command, settings)
    if args.command == "evaluate":
        return _evaluate(settings, args.path, args.url)
    raise AssertionError(args.command)


def _serve(settings: Settings) -> int:
    from reco import service

    if not settings.database_url:
        print("reco: RECO_DATABASE_URL is required (or run `reco dev`)", file=sys.stderr)
        return EXIT_CONFIG
    return anyio.run(service.serve, settings, backend="asyncio", backend_options=LOOP_OPTIONS)


# uvloop: the same asyncio API with the loop, sockets and timers in C (libuv);
# it cut the framework's per-request cost by about a third (docs/performance.md).
LOOP_OPTIONS = {"use_uvloop": True}


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _dev(settings: Settings, data_dir: Path | None) -> int:
    """The embedded stack, then the service; on the way out: service, broker, PostgreSQL."""
    from reco import service
    from reco.devstack.stack import DEV_DATABASE, embedded_stack
    from reco.devstack.topics import create_topics

    # Until the supervisor owns the signals, SIGTERM unwinds like Ctrl-C so that
    # the embedded servers started so far are stopped, never orphaned.
    signal.signal(signal.SIGTERM, _interrupt)
    with embedded_stack(data_dir) as (postgres, broker):
        try:
            assert broker is not None
            settings = attrs.evolve(
                settings, database_url=postgres.url(DEV_DATABASE),
                kafka_bootstrap=broker.bootstrap, migrate_on_start=True,
            )  # fmt: skip
            anyio.run(create_topics, settings, backend="asyncio")
            log.info(
                "embedded stack up", database_url=redact_dsn(settings.database_url),
                kafka_bootstrap=settings.kafka_bootstrap, http=f"http://{settings.http_bind}",
                postgres_pid=postgres.pid, broker_pid=broker.pid,
            )  # fmt: skip
            return anyio.run(service.serve, settings, backend="asyncio")
        finally:
            # Stopping the servers is bounded (their stop timeouts): a further
            # Ctrl-C must not cut it short and orphan one of them.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _evaluate(settings: Settings, path: Path, url: str | None) -> int:
    """Offline evaluation lives in reco.evaluation (an optional part, loaded on demand)."""
    try:
        evaluation = importlib.import_module("reco.evaluation.cli")
    except ModuleNotFoundError as exc:
        print(f"reco: evaluation is not available in this build ({exc})", file=sys.stderr)
        return EXIT_FAILED
    status: int = evaluation.run(settings, path, url)
    return status
