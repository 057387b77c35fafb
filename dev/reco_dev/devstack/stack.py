"""Start and stop the embedded PostgreSQL and broker together (``reco dev``, tests)."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from reco_dev.devstack.broker import EmbeddedBroker
from reco_dev.devstack.postgres import EmbeddedPostgres

DEV_DATABASE = "reco"


@contextlib.contextmanager
def embedded_stack(data_dir: Path | None = None, *, durable: bool = True,
                   broker: bool = True) -> Iterator[tuple[EmbeddedPostgres, EmbeddedBroker | None]]:  # fmt: skip
    """PostgreSQL (with a ``reco`` database) and the broker, stopped in reverse on exit."""
    temporary = data_dir is None
    root = Path(tempfile.mkdtemp(prefix="reco-dev-")) if data_dir is None else Path(data_dir)
    postgres = EmbeddedPostgres(root / "postgres", durable=durable)
    kafka = EmbeddedBroker(root / "broker") if broker else None
    try:
        postgres.start()
        if not postgres.psql(f"SELECT 1 FROM pg_database WHERE datname = '{DEV_DATABASE}'"):
            postgres.psql(f"CREATE DATABASE {DEV_DATABASE}")
        if kafka is not None:
            kafka.start()
        yield postgres, kafka
    finally:
        try:
            if kafka is not None:
                kafka.stop()
        finally:
            try:
                postgres.stop()
            finally:
                if temporary:
                    shutil.rmtree(root, ignore_errors=True)
