"""``reco evaluate PATH [--url URL]``: replay a ratings file into the service and score it.

Without ``--url`` it starts an embedded PostgreSQL and the whole service
in-process (HTTP on a free loopback port). With ``--url`` it asks that
service over HTTP and writes the catalogue and events to the database at
``RECO_DATABASE_URL`` (the one that service reads). Events are written
through the consumer's code path (``watch_events`` + ``apply_events``, one
transaction per batch of 1000), not produced to Kafka. Baselines are
computed on the same split in the same run.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import attrs
import stamina

from reco.db.pool import connect
from reco.engine.recommender import Recommender
from reco.evaluation import baselines, data, metrics
from reco.evaluation.replay import Asker, ask_all, load_items, replay
from reco.settings import Settings

K = 10
EXIT_USAGE = 2


@attrs.frozen
class Dataset:
    path: Path
    items: list[data.Item]
    split: data.Split
    items_note: str


def run(settings: Settings, path: Path, url: str | None, *, embedded: bool = True) -> int:
    """Evaluate; print the table to stdout (progress to stderr); return the exit status.

    ``embedded=False`` (tests) runs the service in-process on
    ``settings.database_url`` instead of starting an embedded PostgreSQL.
    """
    try:
        dataset = _load(path)
    except (OSError, ValueError) as exc:
        print(f"reco evaluate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if url is not None and not settings.database_url:
        print("reco evaluate: --url needs RECO_DATABASE_URL (the database that service reads)",
              file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    users = sorted(dataset.split.test)
    print(_describe(dataset), flush=True)
    found = baselines.run_all(dataset.split.train, sorted(dataset.split.train))
    if url is not None:
        lists, via = anyio.run(_against_url, settings, url, dataset, users, backend="asyncio")
    elif embedded:
        lists, via = _embedded(settings, dataset, users)
    else:
        lists, via = anyio.run(_in_process, _local(settings), dataset, users, backend="asyncio")
    print(_table(dataset, lists, via, found))
    return 0


def _load(path: Path) -> Dataset:
    ratings = data.read_ratings(path)
    if not ratings:
        raise ValueError(f"{path}: no ratings")
    items_file = data.items_path(path)
    items = data.read_items(items_file) if items_file.exists() else []
    note = f"items from {items_file.name}" if items else "no items file: titles are item ids"
    return Dataset(path, data.catalogue(ratings, items), data.split(ratings), note)


def _describe(dataset: Dataset) -> str:
    replayed = sum(len(rows) for rows in dataset.split.train.values())
    held = sum(len(rows) for rows in dataset.split.test.values())
    return (f"reco evaluate {dataset.path.name}: {len(dataset.split.train)} users, "
            f"{len(dataset.items)} items ({dataset.items_note}); replaying {replayed} "
            f"interactions, holding out {held} (each user's most recent "
            f"{data.HOLDOUT:.0%}), k={K}")  # fmt: skip


def _embedded(settings: Settings, dataset: Dataset,
              users: list[str]) -> tuple[dict[str, list[str]], str]:  # fmt: skip
    from reco.devstack.stack import DEV_DATABASE, embedded_stack

    # The embedded server's start-up check can fail while it is still starting
    # ("rejecting connections"); a second start is cheap.
    for attempt in stamina.retry_context(on=subprocess.CalledProcessError, attempts=3):
        with attempt, embedded_stack(durable=False, broker=False) as (postgres, _):
            settings = _local(attrs.evolve(settings, database_url=postgres.url(DEV_DATABASE)))
            return anyio.run(_in_process, settings, dataset, users, backend="asyncio")
    raise AssertionError("unreachable: stamina re-raises the last failure")


def _local(settings: Settings) -> Settings:
    """The in-process service: HTTP on a free loopback port, no Kafka components."""
    return attrs.evolve(settings, http_bind="127.0.0.1:0", migrate_on_start=True,
                        consumer_enabled=False, relay_enabled=False)  # fmt: skip


async def _in_process(settings: Settings, dataset: Dataset,
                      users: list[str]) -> tuple[dict[str, list[str]], str]:  # fmt: skip
    async with _service(settings) as (base_url, recommender):
        await _write(settings, dataset)
        probe = Asker(base_url, None)
        try:
            has_endpoint = await probe.has_endpoint()
        finally:
            probe.close()
        asker = Asker(base_url, None) if has_endpoint else Asker(None, recommender)
        try:
            return await ask_all(asker, users, K), asker.via
        finally:
            asker.close()


async def _against_url(settings: Settings, url: str, dataset: Dataset,
                       users: list[str]) -> tuple[dict[str, list[str]], str]:  # fmt: skip
    await _write(settings, dataset)
    asker = Asker(url, None)
    try:
        return await ask_all(asker, users, K), asker.via
    finally:
        asker.close()


async def _write(settings: Settings, dataset: Dataset) -> None:
    conn = await connect(settings, "reco-evaluate")
    try:
        await load_items(conn, dataset.items)
        await replay(conn, data.replay_order(dataset.split.train))
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(settings.shutdown_timeout):
            await conn.close()


class _NotReady(Exception):
    """The in-process service has not reported ready yet."""


@asynccontextmanager
async def _service(settings: Settings) -> AsyncIterator[tuple[str, Recommender]]:
    """The whole service in-process (as ``reco serve`` runs it); yields its URL and Recommender.

    A component that fails to start makes the supervisor raise StartupError,
    which ends this context; otherwise we wait (bounded) until HTTP is bound
    and every readiness check passes, then stop the service on exit.
    """
    from reco import service

    supervisor, state, http = service.build(settings, handle_signals=False)
    assert state.recommender is not None
    async with anyio.create_task_group() as tg:
        tg.start_soon(supervisor.run)
        async for attempt in stamina.retry_context(
            on=_NotReady, timeout=settings.startup_timeout, attempts=None,
            wait_initial=0.01, wait_max=0.1, wait_jitter=0.0,
        ):  # fmt: skip
            with attempt:
                if http.port is None or not state.readiness.ready:
                    raise _NotReady
        try:
            yield f"http://127.0.0.1:{http.port}", state.recommender
        finally:
            supervisor.request_stop()


def _table(dataset: Dataset, lists: dict[str, list[str]], via: str,
           found: list[baselines.Baseline]) -> str:  # fmt: skip
    size = len(dataset.items)
    lines = [f"{'model':<48} {'Recall@10':>9} {'NDCG@10':>8} {'coverage':>17}"]
    rows: list[tuple[str, dict[str, list[str]] | None, str]] = [
        (f"reco service (via {via})", lists, "")
    ]
    rows += [(b.name, b.lists, b.error) for b in found]
    for name, got, error in rows:
        if got is None:
            lines.append(f"{name:<48} {error}")
            continue
        s = metrics.evaluate(got, dataset.split.test, size, K)
        lines.append(f"{name:<48} {s.recall:>9.4f} {s.ndcg:>8.4f} "
                     f"{s.coverage:>7.3f} ({s.covered:>4} items)")  # fmt: skip
    return "\n".join(lines)
