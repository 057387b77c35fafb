"""``reco evaluate PATH [--url URL] [--protocol NAME]...``: replay a ratings file, score it.

Each protocol (reco_dev/evaluation/data.py: per-user last 20%, global time cut
at the 80th percentile, and two held back) splits the file, and the
training half goes to a fresh service; the default is every protocol, each
with its own embedded stack (with ``--url``: only the first, or the one
given). After the replay, ``reco train`` runs against the service's
database as a separate process, as in production. Without ``--url`` it starts the embedded stack (PostgreSQL and the Tansu
broker) and ``reco serve`` as a child process with the consumer on, loads
the catalogue through ``POST /v1/items``, produces the training events to
the watch-events topic in time order, waits until the consumer has stored
them, and asks ``GET /v1/users/{id}/recommendations?limit=10`` for every
held-out user. With ``--url`` it does the same against that service: events
are produced to ``RECO_KAFKA_BOOTSTRAP`` when that variable is set, else
posted to ``POST /v1/events`` (outbox, relay, Kafka, consumer); writes use
the first of ``RECO_API_TOKENS``. Baselines are computed on the same split in
the same run.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import anyio
import attrs
import stamina
from aiokafka.errors import KafkaError

from reco.kafka import clients
from reco.settings import Settings, evolve
from reco_dev.devstack.ports import free_port
from reco_dev.evaluation import baselines, data, metrics, replay
from reco_dev.evaluation.client import Client, HttpError
from reco_dev.evaluation.service import ServiceFailed, environment, service_process

K = 10
EXIT_USAGE = 2
EXIT_FAILED = 1
# How long the consumer may take to store the replayed events: a floor for
# start-up and group join, plus a pessimistic 100 events/s.
CONSUME_FLOOR = 60.0
CONSUME_RATE = 100.0
TRAIN_TIMEOUT = 600.0  # one `reco train` run on the replayed history


@attrs.frozen
class Dataset:
    path: Path
    items: list[data.Item]
    split: data.Split
    items_note: str
    protocol: data.Protocol


@attrs.frozen
class Target:
    """Where the evaluation sends its traffic: the service, and Kafka when producing directly."""

    base_url: str
    token: str | None
    settings: Settings
    produce: bool  # to settings.kafka.bootstrap; False: POST /v1/events
    train: bool = False  # run `reco train` on the service's database after the replay

    @property
    def via(self) -> str:
        return "events via Kafka" if self.produce else "events via POST /v1/events"


def run(settings: Settings, path: Path, url: str | None, *, embedded: bool = True,
        environ: Mapping[str, str] | None = None,
        protocols: Sequence[str] | None = None) -> int:  # fmt: skip
    """Evaluate every protocol (each on a fresh service); print one table per protocol.

    Progress goes to stderr; returns the exit status. ``embedded=False``
    (tests) runs the service process against ``settings.database.url`` and
    ``settings.kafka.bootstrap`` instead of starting the embedded stack: one
    database, so one protocol (as with ``--url``).
    """
    environ = os.environ if environ is None else environ
    one_history = url is not None or not embedded
    every = [p.name for p in data.PROTOCOLS]
    names = list(protocols) if protocols else every[:1] if one_history else every
    try:
        chosen = [_protocol(name) for name in names]
        ratings, items, note = _read(path)
    except (OSError, ValueError) as exc:
        print(f"reco evaluate: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if one_history and len(chosen) > 1:
        print("reco evaluate: a running service holds one history: give one --protocol",
              file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    if url is not None and not settings.http.api_tokens:
        print("reco evaluate: --url needs RECO_API_TOKENS (to load the catalogue)",
              file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    for protocol in chosen:
        dataset = Dataset(path, items, data.split_for(protocol.name, ratings), note, protocol)
        status = _evaluate_one(settings, dataset, url, embedded=embedded, environ=environ)
        if status:
            return status
    return 0


def _protocol(name: str) -> data.Protocol:
    for protocol in data.PROTOCOLS:
        if protocol.name == name:
            return protocol
    known = ", ".join(p.name for p in data.PROTOCOLS)
    raise ValueError(f"unknown protocol {name!r} (known: {known})")


def _evaluate_one(settings: Settings, dataset: Dataset, url: str | None, *, embedded: bool,
                  environ: Mapping[str, str]) -> int:  # fmt: skip
    users = sorted(dataset.split.test)
    print(_describe(dataset), flush=True)
    found = baselines.run_all(dataset.split.train, sorted(dataset.split.train))
    try:
        if url is not None:
            target = Target(url, settings.http.api_tokens[0], settings,
                            produce="RECO_KAFKA_BOOTSTRAP" in environ)  # fmt: skip
            lists = anyio.run(_feed_and_ask, target, dataset, users, backend="asyncio")
            via = target.via
        else:
            lists, via = _own_service(settings, dataset, users, embedded=embedded)
    except (ServiceFailed, HttpError, KafkaError, OSError, TimeoutError,
            subprocess.CalledProcessError) as exc:  # fmt: skip
        print(f"reco evaluate: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(_table(dataset, lists, via, found), flush=True)
    return 0


def _read(path: Path) -> tuple[list[data.Rating], list[data.Item], str]:
    ratings = data.read_ratings(path)
    if not ratings:
        raise ValueError(f"{path}: no ratings")
    items_file = data.items_path(path)
    items = data.read_items(items_file) if items_file.exists() else []
    note = f"items from {items_file.name}" if items else "no items file: titles are item ids"
    return ratings, data.catalogue(ratings, items), note


def _describe(dataset: Dataset) -> str:
    replayed = sum(len(rows) for rows in dataset.split.train.values())
    held = sum(len(rows) for rows in dataset.split.test.values())
    return (f"\n## {dataset.protocol.name}: {dataset.protocol.description}\n"
            f"reco evaluate {dataset.path.name}: {len(dataset.split.train)} users, "
            f"{len(dataset.items)} items ({dataset.items_note}); replaying {replayed} "
            f"interactions, holding out {held} for {len(dataset.split.test)} users, k={K}")  # fmt: skip


def _own_service(settings: Settings, dataset: Dataset, users: list[str],
                 *, embedded: bool) -> tuple[dict[str, replay.Answer], str]:  # fmt: skip
    """Start the stack (unless given) and the service process; feed it and ask it."""
    if not embedded:
        return _with_process(settings, dataset, users)
    from reco_dev.devstack.stack import DEV_DATABASE, embedded_stack

    # The embedded server's start-up check can fail while it is still starting
    # ("rejecting connections"); a second start is cheap.
    for attempt in stamina.retry_context(on=subprocess.CalledProcessError, attempts=3):
        with attempt, embedded_stack(durable=False) as (postgres, broker):
            assert broker is not None
            settings = evolve(settings, database_url=postgres.url(DEV_DATABASE),
                                    kafka_bootstrap=broker.bootstrap)  # fmt: skip
            return _with_process(settings, dataset, users)
    raise AssertionError("unreachable: stamina re-raises the last failure")


def _with_process(settings: Settings, dataset: Dataset,
                  users: list[str]) -> tuple[dict[str, replay.Answer], str]:  # fmt: skip
    from reco_dev.devstack.topics import create_topics

    settings = evolve(
        settings, http_bind=f"127.0.0.1:{free_port()}", migrate_on_start=True,
        consumer_enabled=True, relay_enabled=True,
        api_tokens=settings.http.api_tokens or (secrets.token_urlsafe(32),),
    )  # fmt: skip
    anyio.run(create_topics, settings, backend="asyncio")
    with (
        tempfile.TemporaryDirectory(prefix="reco-evaluate-") as tmp,
        service_process(settings, Path(tmp) / "service.log") as base_url,
    ):
        target = Target(base_url, settings.http.api_tokens[0], settings, produce=True, train=True)
        lists = anyio.run(_feed_and_ask, target, dataset, users, backend="asyncio")
    return lists, target.via


async def _feed_and_ask(target: Target, dataset: Dataset,
                        users: list[str]) -> dict[str, replay.Answer]:  # fmt: skip
    """Load the catalogue, replay the training events, wait for the consumer, (train,) ask."""
    ratings = data.replay_order(dataset.split.train)
    client = Client(target.base_url, target.token)
    try:
        await replay.load_items(client, dataset.items)
        before = await replay.consumed(client)
        if target.produce:
            expected = await _produce(target.settings, ratings)
        else:
            expected = await replay.post_events(client, ratings)
        with anyio.fail_after(CONSUME_FLOOR + expected / CONSUME_RATE):
            await replay.wait_consumed(client, before, expected)
            await replay.wait_folded(client, target.settings.engine.cache_ttl)
        if target.train:
            await _train(target.settings)
            await _wait_model(client, target.settings, dataset)
    finally:
        client.close()
    return await replay.ask_all(target.base_url, users, K)


async def _produce(settings: Settings, ratings: list[data.Rating]) -> int:
    """Produce to the watch-events topic (acks from all replicas; Tansu has no idempotence)."""
    producer = clients.producer(settings.kafka, linger=0.005)
    try:
        await producer.start()
        return await replay.produce(producer, settings.kafka.watch_events_topic, ratings)
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(settings.shutdown_timeout):
            await producer.stop()


async def _train(settings: Settings) -> None:
    """``python -m reco train`` against the service's database, as production's CronJob runs it."""
    env = environment(settings, os.environ)
    with anyio.fail_after(TRAIN_TIMEOUT):
        done = await anyio.run_process([sys.executable, "-m", "reco", "train"], env=env,
                                       check=False, stdin=subprocess.DEVNULL)  # fmt: skip
    sys.stderr.write(done.stderr.decode(errors="replace"))
    if done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, "reco train", done.stdout)
    sys.stderr.write(done.stdout.decode(errors="replace"))


async def _wait_model(client: Client, settings: Settings, dataset: Dataset) -> None:
    """Until the service serves the new version (checked on the heaviest training user)."""
    if settings.engine.trained_weight <= 0:
        await anyio.sleep(settings.engine.cache_ttl)  # the model is off: nothing to wait for
        return
    user = max(dataset.split.train, key=lambda u: (len(dataset.split.train[u]), u))
    if not await replay.wait_model(client, user, settings.engine.cache_ttl):
        print("reco evaluate: the service did not name a model version in time; asking anyway",
              file=sys.stderr)  # fmt: skip


def _table(dataset: Dataset, lists: dict[str, replay.Answer], via: str,
           found: list[baselines.Baseline]) -> str:  # fmt: skip
    size = len(dataset.items)
    algorithms = sorted({a.algorithm for a in lists.values()})
    lines = [
        f"algorithms served: {', '.join(algorithms) or '-'}",
        f"{'model':<48} {'Recall@10':>9} {'NDCG@10':>8} {'coverage':>17} {'personal':>8}",
    ]
    served = {user: a.items for user, a in lists.items()}
    personal = sum(a.personal for a in lists.values()) / max(len(lists), 1)
    rows: list[tuple[str, dict[str, list[str]] | None, str, str]] = [
        (f"reco service ({via})", served, "", f"{personal:>8.3f}")
    ]
    rows += [(b.name, b.lists, b.error, "") for b in found]
    for name, got, error, share in rows:
        if got is None:
            lines.append(f"{name:<48} {error}")
            continue
        s = metrics.evaluate(got, dataset.split.test, size, K)
        lines.append(f"{name:<48} {s.recall:>9.4f} {s.ndcg:>8.4f} "
                     f"{s.coverage:>7.3f} ({s.covered:>4} items) {share}".rstrip())  # fmt: skip
    return "\n".join(lines)
