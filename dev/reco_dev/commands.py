"""The commands this package adds to ``reco``: ``dev`` and ``evaluate``.

Each is an object with ``configure(parser)`` and ``run(args, settings) -> int``
(the contract of reco/cli.py's ``reco.commands`` entry points).
"""

from __future__ import annotations

import argparse
import datetime as dt
import signal
from pathlib import Path
from types import FrameType

import anyio

from reco.lifecycle import Component
from reco.observability.logs import get_logger
from reco.settings import AppEnv, Settings, evolve, redact_dsn
from reco_dev.devstack.welcome import Welcome

log = get_logger("reco.cli")


class Dev:
    """``reco dev [--demo]``: the embedded stack, then the service."""

    help = "run the service on an embedded PostgreSQL and broker"
    logs_to_stderr = False

    def configure(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--data-dir",
            type=Path,
            default=None,
            help="where PostgreSQL and the broker keep data (default: a temporary dir)",
        )
        parser.add_argument(
            "--demo",
            action="store_true",
            help="seed an empty database with a synthetic catalogue and watch history",
        )

    def run(self, args: argparse.Namespace, settings: Settings) -> int:
        return dev(settings, args.data_dir, demo=args.demo)


class Evaluate:
    """``reco evaluate PATH [--url URL] [--protocol NAME]...``: offline quality
    (reco_dev.evaluation.cli)."""

    help = "offline quality evaluation on a ratings file"
    logs_to_stderr = True  # the report goes to stdout

    def configure(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("path", type=Path)
        parser.add_argument("--url", default=None, help="use a running service instead of dev")
        parser.add_argument("--protocol", action="append", default=None,
                            help="per-user, time-80, time-90 or last-one (repeatable; "
                                 "default: all, or per-user with --url)")  # fmt: skip

    def run(self, args: argparse.Namespace, settings: Settings) -> int:
        from reco_dev.evaluation import cli

        return cli.run(settings, args.path, args.url, protocols=args.protocol)


dev_command = Dev()
evaluate_command = Evaluate()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def dev(settings: Settings, data_dir: Path | None, *, demo: bool = False) -> int:
    """The embedded stack, then the service; on the way out: service, broker, PostgreSQL."""
    from reco import service
    from reco_dev.devstack.stack import DEV_DATABASE, embedded_stack
    from reco_dev.devstack.topics import create_topics

    # Until the supervisor owns the signals, SIGTERM unwinds like Ctrl-C so that
    # the embedded servers started so far are stopped, never orphaned.
    signal.signal(signal.SIGTERM, _interrupt)
    settings, token = _with_dev_token(settings)
    with embedded_stack(data_dir) as (postgres, broker):
        try:
            assert broker is not None
            settings = evolve(
                settings, database_url=postgres.url(DEV_DATABASE),
                kafka_bootstrap=broker.bootstrap, migrate_on_start=True,
            )  # fmt: skip
            anyio.run(create_topics, settings, backend="asyncio")
            log.info(
                "embedded stack up", database_url=redact_dsn(settings.database.url),
                kafka_bootstrap=settings.kafka.bootstrap, http=f"http://{settings.http.bind}",
                postgres_pid=postgres.pid, broker_pid=broker.pid,
            )  # fmt: skip
            welcome = _welcome(settings, token, demo)
            extra: list[Component] = [welcome]
            return anyio.run(service.serve, settings, extra, backend="asyncio")
        finally:
            # Stopping the servers is bounded (their stop timeouts): a further
            # Ctrl-C must not cut it short and orphan one of them.
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _with_dev_token(settings: Settings) -> tuple[Settings, str | None]:
    """A generated API token when none is set, so the dev stack's writes work (never in
    production, where the settings refuse an empty token list anyway)."""
    from reco_dev.devstack.welcome import development_token

    if settings.http.api_tokens or settings.app_env is AppEnv.PRODUCTION:
        return settings, None
    token = development_token()
    log.info("generated a development API token (printed once the service is up)")
    return evolve(settings, api_tokens=(token,)), token


def _welcome(settings: Settings, token: str | None, demo: bool) -> Welcome:
    """Seed the demo data (with --demo, on an empty database); the banner to print."""
    from reco_dev.devstack import demo as demo_data
    from reco_dev.devstack.welcome import Examples, banner

    base_url = f"http://{settings.http.bind}"
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
