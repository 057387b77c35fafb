"""The ``reco`` command: serve, dev, migrate, check-migrations, evaluate."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import anyio
import attrs

from reco.errors import ConfigError, MigrationError, StartupError
from reco.observability.logs import configure_logging, get_logger
from reco.settings import Settings, load_settings

log = get_logger("reco.cli")

EXIT_CONFIG = 2


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
    configure_logging(settings.log_level)
    try:
        return _dispatch(args, settings)
    except StartupError as exc:
        log.error("start-up failed", error=str(exc))
        return 1
    except MigrationError as exc:
        log.error("migrations", error=str(exc))
        print(f"reco: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


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
    if args.command == "evaluate":
        from reco.evaluation import cli as evaluation

        return evaluation.run(settings, args.path, args.url)
    raise AssertionError(args.command)


def _serve(settings: Settings) -> int:
    from reco import service

    if not settings.database_url:
        print("reco: RECO_DATABASE_URL is required (or run `reco dev`)", file=sys.stderr)
        return EXIT_CONFIG
    return anyio.run(service.serve, settings, backend="asyncio")


def _dev(settings: Settings, data_dir: Path | None) -> int:
    from reco import service
    from reco.devstack.stack import DEV_DATABASE, embedded_stack

    with embedded_stack(data_dir) as (postgres, broker):
        assert broker is not None
        settings = attrs.evolve(
            settings, database_url=postgres.url(DEV_DATABASE), kafka_bootstrap=broker.bootstrap,
            migrate_on_start=True,
        )  # fmt: skip
        log.info("embedded stack up", database_url=settings.database_url,
                 kafka_bootstrap=settings.kafka_bootstrap,
                 http=f"http://{settings.http_bind}")  # fmt: skip
        return anyio.run(service.serve, settings, backend="asyncio")
