"""The ``reco`` command: serve, dev, migrate, check-migrations, check-aggregates, evaluate, train."""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import anyio
import attrs

from reco.errors import ConfigError, MigrationError, StartupError
from reco.observability.logs import configure_logging, get_logger, wants_console
from reco.settings import AppEnv, Settings, load_settings, redact_dsn

if TYPE_CHECKING:
    from reco.devstack.welcome import Welcome

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
    dev.add_argument(
        "--demo",
        action="store_true",
        help="seed an empty database with a synthetic catalogue and watch history",
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
    evaluate.add_argument("--protocol", action="append", default=None,
                          help="per-user, time-80, time-90 or last-one (repeatable; "
                               "default: all, or per-user with --url)")  # fmt: skip
    sub.add_parser(
        "train", help="fit item neighbours from the watch history; store a model version"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"reco: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    # evaluate prints its report on stdout: its logs go to stderr.
    stream = sys.stderr if args.command in ("evaluate", "train") else sys.stdout
    production = settings.app_env is AppEnv.PRODUCTION
    console = wants_console(settings.log_format, production, stream)
    configure_logging(settings.log_level, stream, console=console)
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
        return _dev(settings, args.data_dir, demo=args.demo)
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
        return _evaluate(settings, args.path, args.url, args.protocol)
    if args.command == "train":
        from reco.training import job

        return anyio.run(job.train_command, settings, backend="asyncio")
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


def _dev(settings: Settings, data_dir: Path | None, *, demo: bool = False) -> int:
    """The embedded stack, then the service; on the way out: service, broker, PostgreSQL."""
    from reco import service
    from reco.devstack.stack import DEV_DATABASE, embedded_stack
    from reco.devstack.topics import create_topics

    # Until the supervisor owns the signals, SIGTERM unwinds like Ctrl-C so that
    # the embedded servers started so far are stopped, never orphaned.
    signal.signal(signal.SIGTERM, _interrupt)
    settings, token = _with_dev_token(settings)
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
            welcome = _welcome(settings, token, demo)
            return anyio.run(service.serve, settings, [welcome], backend="asyncio")
        finally:
            # Stopping the servers is bounded (their stop timeouts): a further
            # Ctrl-C must not cut it short and orphan one of them.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _with_dev_token(settings: Settings) -> tuple[Settings, str | None]:
    """A generated API token when none is set, so the dev stack's writes work (never in
    production, where the settings refuse an empty token list anyway)."""
    from reco.devstack.welcome import development_token

    if settings.api_tokens or settings.app_env is AppEnv.PRODUCTION:
        return settings, None
    token = development_token()
    log.info("generated a development API token (printed once the service is up)")
    return attrs.evolve(settings, api_tokens=(token,)), token


def _welcome(settings: Settings, token: str | None, demo: bool) -> Welcome:
    """Seed the demo data (with --demo, on an empty database); the banner to print."""
    import datetime as dt

    from reco.devstack import demo as demo_data
    from reco.devstack.welcome import Examples, Welcome, banner

    base_url = f"http://{settings.http_bind}"
    if not demo:
        return Welcome(banner(base_url, token, None, "the catalogue and history as stored"))
    now = dt.datetime.now(dt.UTC)
    data = demo_data.generate(now)
    seeded = anyio.run(demo_data.seed_database, settings, data, backend="asyncio")
    summary = (
        f"{len(data.items)} items, {len(data.users)} users, {len(data.events)} watch events"
        if seeded
        else "the database was not empty: kept as it is, no demo data added"
    )
    examples = Examples.of(data, now)
    log.info(
        "demo data", seeded=seeded, items=len(data.items), users=len(data.users),
        events=len(data.events), example_user=examples.user_id,
        example_item=examples.similar_to, example_watch=examples.to_watch,
    )  # fmt: skip
    return Welcome(banner(base_url, token, examples, summary))


def _evaluate(settings: Settings, path: Path, url: str | None,
              protocols: list[str] | None) -> int:  # fmt: skip
    """Offline evaluation lives in reco.evaluation (an optional part, loaded on demand)."""
    try:
        evaluation = importlib.import_module("reco.evaluation.cli")
    except ModuleNotFoundError as exc:
        print(f"reco: evaluation is not available in this build ({exc})", file=sys.stderr)
        return EXIT_FAILED
    status: int = evaluation.run(settings, path, url, protocols=protocols)
    return status
