"""The ``reco`` command: serve, migrate, check-migrations, check-aggregates, train.

Other distributions add commands through the ``reco.commands`` entry points:
the development package (dev/, ``reco_dev``) adds ``dev`` and ``evaluate``.
Each entry point names an object with ``help``, ``logs_to_stderr``,
``configure(parser)`` and ``run(args, settings) -> int``; the runtime image
installs none, so ``reco serve`` never imports development code.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from importlib.metadata import entry_points
from typing import Protocol

import anyio

from reco.errors import ConfigError, MigrationError, StartupError
from reco.observability.logs import configure_logging, get_logger, wants_console
from reco.settings import AppEnv, Settings, load_settings

log = get_logger("reco.cli")

EXIT_FAILED = 1
EXIT_CONFIG = 2
EXIT_INTERRUPTED = 130


def _parser(plugins: dict[str, Command]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reco", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the service (settings from RECO_* variables)")
    sub.add_parser("migrate", help="apply pending migrations")
    sub.add_parser("check-migrations", help="check naming, order, checksums and drift")
    sub.add_parser(
        "check-aggregates",
        help="recompute history, popularity and co-occurrence from watch_events and compare",
    )
    sub.add_parser(
        "train", help="fit item neighbours from the watch history; store a model version"
    )
    for name, command in plugins.items():
        command.configure(sub.add_parser(name, help=command.help))
    return parser


class Command(Protocol):
    """A command another distribution adds (entry point group ``reco.commands``)."""

    help: str
    logs_to_stderr: bool

    def configure(self, parser: argparse.ArgumentParser) -> None: ...
    def run(self, args: argparse.Namespace, settings: Settings) -> int: ...


BUILT_IN = frozenset({"serve", "migrate", "check-migrations", "check-aggregates", "train"})


def _plugins() -> dict[str, Command]:
    found = entry_points(group="reco.commands")
    return {ep.name: ep.load() for ep in sorted(found, key=lambda ep: ep.name)
            if ep.name not in BUILT_IN}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    plugins = _plugins()
    args = _parser(plugins).parse_args(argv)
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"reco: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    # A command that prints a report on stdout (evaluate) logs to stderr.
    plugin = plugins.get(args.command)
    stream = sys.stderr if plugin is not None and plugin.logs_to_stderr else sys.stdout
    production = settings.app_env is AppEnv.PRODUCTION
    console = wants_console(settings.log_format, production, stream)
    configure_logging(settings.log_level, stream, console=console)
    try:
        return plugin.run(args, settings) if plugin else _dispatch(args, settings)
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
    if args.command == "migrate":
        from reco.db import admin

        return anyio.run(admin.migrate_command, settings)
    if args.command == "check-migrations":
        from reco.db import admin

        return anyio.run(admin.check_command, settings)
    if args.command == "check-aggregates":
        from reco import audit

        return anyio.run(audit.check_command, settings)
    if args.command == "train":
        from reco.training import job

        return anyio.run(job.train_command, settings, backend="asyncio")
    raise AssertionError(args.command)


def _serve(settings: Settings) -> int:
    from reco import service

    if not settings.database.url:
        print("reco: RECO_DATABASE_URL is required (or run `reco dev`)", file=sys.stderr)
        return EXIT_CONFIG
    return anyio.run(service.serve, settings, backend="asyncio", backend_options=LOOP_OPTIONS)


# uvloop: the same asyncio API with the loop, sockets and timers in C (libuv);
# it cut the framework's per-request cost by about a third (docs/performance.md).
LOOP_OPTIONS = {"use_uvloop": True}
