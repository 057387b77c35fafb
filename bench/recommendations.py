"""Read-API throughput and latency, each against a ceiling taken in the same run.

``python -m bench recommendations [--dataset DIR] [--duration 15] ...``

Starts an embedded PostgreSQL (and broker) and ``python -m reco serve`` as a
subprocess, loads the ML-100K catalogue through ``POST /v1/items`` and its
history through the engine's write path (watch_events rows, then
``reco.engine.ingest.apply_events`` in the same transaction, as the
consumer does), then prints every figure of issue 13:

1. wrk at 32 connections, in rounds of three slices: reco ``/healthz``,
   recommendations for random users, and a bare Quart-on-Hypercorn app with
   one JSON route (``bench/_bare_serve.py``, started here). Each
   recommendations slice is divided by the mean of the /healthz slices either
   side of it (target >= 0.6), and the mean of those /healthz slices by the
   bare slice between them (target >= 0.8);
2. 503 answers (wrk's non-2xx) and impressions dropped
   (``reco_background_dropped_total``) during the closed-loop slices, in the
   server's ``sync`` mode (target: none);
3. both endpoints at one connection (the p50s), and an open-loop run at half
   the measured recommendation capacity (``bench/_open_loop.py``, a process
   of its own: fixed arrival schedule, latency from the scheduled start,
   HdrHistogram), p99 against the one-connection p50 (target <= 5x, no error);
4. the impression writer and the outbox relay alone (the real components, in
   this process, on a database of their own on the same PostgreSQL and
   broker): impressions/s from the first submit until every one is published,
   against the closed-loop recommendation capacity (target >= 3x);
5. the engine call alone (``Recommender.for_user`` in this process).

Nothing is installed here; wrk must be (and ``hdrhistogram`` for step 3).
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import attrs
import httpx
from reco_dev.devstack.ports import free_port
from reco_dev.devstack.stack import DEV_DATABASE, embedded_stack

from bench import _movielens
from bench._wrk import (
    INSTALL_HINT,
    WrkResult,
    fixed_path_script,
    random_path_script,
    run_wrk,
    wrk_path,
)
from reco.db import migrations
from reco.db.pool import Database
from reco.engine.ingest import apply_events
from reco.engine.recommender import Recommender
from reco.events import WatchEvent
from reco.folder import folding
from reco.impressions.buffer import ImpressionBuffer
from reco.impressions.model import Impression, ServedItem
from reco.impressions.writer import ImpressionWriter
from reco.observability.logs import configure_logging
from reco.observability.readiness import Readiness
from reco.outbox.relay import OutboxRelay
from reco.settings import Settings
from tests.support.components import request_stop, start

TOKEN = "bench-token-0123456789abcdefghijklmnopqrstuvwxyz"
EVENT_BATCH = 5000
# Long enough for the server's model cache to hold nearly every item's neighbour
# list (ML-100K: 1,682), as a process that has served for a while does.
WARM_UP = 10
PROFILE_FORMATS = {".svg": "flamegraph", ".txt": "raw", ".json": "speedscope"}


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench recommendations", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--dataset", type=Path, default=_movielens.default_dataset_dir())
    parser.add_argument("--duration", type=float, default=15.0,
                        help="seconds of load per endpoint, split into --rounds slices")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=3,
                        help="alternating /healthz and recommendations slices")  # fmt: skip
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--limit", type=int, default=10, help="limit= of each request")
    parser.add_argument("--log-level", default="INFO", help="the server's RECO_LOG_LEVEL")
    parser.add_argument("--no-broker", action="store_true",
                        help="no embedded broker; consumer and relay off")  # fmt: skip
    parser.add_argument("--stub-engine", action="store_true",
                        help="serve a fixed list (bench/_stub_serve.py): the HTTP path alone")  # fmt: skip
    parser.add_argument("--engine-samples", type=int, default=2000)
    parser.add_argument("--profile", type=Path, default=None,
                        help="record the server with py-spy during the main run (.svg, .txt or .json)")  # fmt: skip
    parser.add_argument("--open-loop-seconds", type=float, default=15.0)
    parser.add_argument("--open-loop-sweep", type=str, default="",
                        help="fractions of the capacity (e.g. 0.1,0.2,0.3) run open loop first, "
                             "each printed on its own: where the tail bends")  # fmt: skip
    parser.add_argument("--impressions", type=int, default=30_000,
                        help="impressions pushed through the writer and relay (0: skip)")  # fmt: skip
    parser.add_argument("--no-bare", action="store_true", help="no bare Quart app ceiling")
    parser.add_argument("--server-env", action="append", default=[], metavar="RECO_X=VALUE",
                        help="a setting of the server (repeatable)")  # fmt: skip
    parser.add_argument("--server-log", type=Path, default=None,
                        help="keep a copy of the server's log here")  # fmt: skip
    return parser.parse_args()


def main() -> int:
    args = _arguments()
    configure_logging("WARNING")  # this process's own pool logs; the server logs to a file
    if wrk_path() is None:
        print(f"bench: {INSTALL_HINT}", file=sys.stderr)
        return 2
    if not (args.dataset / "ml-100k.inter").exists() and not list(args.dataset.glob("*.inter")):
        print(f"bench: no MovieLens files in {args.dataset} (--dataset DIR)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="reco-bench-") as tmp:
        stack = embedded_stack(Path(tmp) / "stack", durable=False, broker=not args.no_broker)
        with stack as (postgres, broker):
            database_url = postgres.url(DEV_DATABASE)
            bootstrap = broker.bootstrap if broker is not None else None
            with (
                serving(database_url, bootstrap, args, Path(tmp) / "server.log") as server,
                bare_serving(args, Path(tmp) / "bare.log") as bare,
            ):
                status = measure(args, server, database_url, bare)
            if bootstrap is not None and args.impressions > 0:
                postgres.psql("CREATE DATABASE bench_impressions")
                rate = anyio.run(impressions_throughput, postgres.url("bench_impressions"),
                                 bootstrap, args.impressions)  # fmt: skip
                capacity = LAST_CAPACITY[0] if LAST_CAPACITY else 0.0
                ratio = f"{rate / capacity:.1f}x" if capacity else "n/a"
                print(f"impression writer + relay: {rate:,.0f} impressions/s published "
                      f"({args.impressions} impressions) = {ratio} the closed-loop "
                      f"recommendation capacity of {capacity:,.0f} req/s; target >= 3x")  # fmt: skip
            return status


@attrs.frozen
class Server:
    base_url: str
    pid: int
    log: Path


@contextmanager
def serving(database_url: str, bootstrap: str | None, args: argparse.Namespace,
            log: Path) -> Iterator[Server]:  # fmt: skip
    """``python -m reco serve`` on a free port, stopped with SIGTERM on exit."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RECO_")},
        "APP_ENV": "development", "RECO_DATABASE_URL": database_url,
        "RECO_HTTP_BIND": f"127.0.0.1:{port}", "RECO_API_TOKENS": TOKEN,
        "RECO_LOG_LEVEL": args.log_level, "RECO_MIGRATE_ON_START": "true",
    }  # fmt: skip
    env |= dict(item.split("=", 1) for item in args.server_env)
    if bootstrap is None:
        env |= {"RECO_CONSUMER_ENABLED": "false", "RECO_RELAY_ENABLED": "false"}
    else:
        env["RECO_KAFKA_BOOTSTRAP"] = bootstrap
    with log.open("wb") as out:
        module = ["bench._stub_serve"] if args.stub_engine else ["reco", "serve"]
        process = subprocess.Popen([sys.executable, "-m", *module], env=env,
                                   stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    server = Server(f"http://127.0.0.1:{port}", process.pid, log)
    try:
        wait_ready(server, process)
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if args.server_log is not None:
            shutil.copyfile(log, args.server_log)


@contextmanager
def bare_serving(args: argparse.Namespace, log: Path) -> Iterator[Server | None]:
    """``bench/_bare_serve.py`` on a free port (None with ``--no-bare``)."""
    if args.no_bare:
        yield None
        return
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "bench._bare_serve", str(port)],
                                   stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    server = Server(f"http://127.0.0.1:{port}", process.pid, log)
    try:
        wait_ready(server, process, path="/healthz")
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_ready(server: Server, process: subprocess.Popen[bytes], timeout: float = 60,
               path: str = "/readyz") -> None:  # fmt: skip
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited; see its log:\n{server.log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{server.base_url}{path}", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the server was not ready within {timeout:g} s")


# ------------------------------------------------------------------- loading


def load_items(server: Server, directory: Path) -> int:
    items = _movielens.items(directory)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=60) as client:
        for start in range(0, len(items), 1000):
            response = client.post("/v1/items", json={"items": items[start : start + 1000]})
            response.raise_for_status()
    return len(items)


async def load_history(database_url: str, events: list[WatchEvent]) -> str:
    """Store the events and apply them to the aggregates, batch by batch, as the consumer does."""
    conn = await asyncpg.connect(database_url)
    try:
        for start in range(0, len(events), EVENT_BATCH):
            batch = events[start : start + EVENT_BATCH]
            async with conn.transaction():
                await apply_events(conn, await insert_new(conn, batch))
            print(f"  history: {min(start + EVENT_BATCH, len(events))}/{len(events)} events",
                  flush=True)  # fmt: skip
        await folding.fold_all(conn, statement_timeout=600)  # the server's folder may be at it
        if await conn.fetchval("SELECT count(*) FROM item_popularity"):
            return "engine write path (reco.engine.ingest.apply_events)"
        await fill_aggregates(conn)
        return "FALLBACK: apply_events wrote no aggregates; filled by plain SQL counts"
    finally:
        await conn.close()


async def insert_new(conn: asyncpg.Connection, batch: list[WatchEvent]) -> list[WatchEvent]:
    rows = await conn.fetch(
        """
        INSERT INTO watch_events (event_id, user_id, item_id, occurred_at)
        SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[])
        ON CONFLICT (event_id, received_day) DO NOTHING RETURNING event_id
        """,
        [e.event_id for e in batch], [e.user_id for e in batch],
        [e.item_id for e in batch], [e.occurred_at for e in batch],
    )  # fmt: skip
    new = {row["event_id"] for row in rows}
    return [e for e in batch if e.event_id in new]


async def fill_aggregates(conn: asyncpg.Connection) -> None:
    """Only while the engine's apply_events is a stub: history and popularity by counting."""
    await conn.execute(
        """
        INSERT INTO user_history
        SELECT user_id, item_id, min(occurred_at), max(occurred_at), count(*)
        FROM watch_events GROUP BY user_id, item_id;
        INSERT INTO item_popularity
        SELECT item_id, count(*), ln(count(*)), max(occurred_at)
        FROM watch_events GROUP BY item_id;
        """
    )


# ----------------------------------------------------------------- measuring


async def time_engine(database_url: str, users: list[str], samples: int,
                      limit: int) -> tuple[list[float], list[float]]:  # fmt: skip
    """Seconds per ``Recommender.for_user`` call, one at a time, in this process: the
    first call for each user (scored) and the repeats (served again, when kept)."""
    settings = Settings.from_flat(database_url=database_url, db_pool_min_size=1, db_pool_max_size=2)
    database = Database(settings.database, Readiness(), migrate=settings.should_migrate_on_start)
    await database.open()
    try:
        recommender = Recommender(database, settings.engine)
        first: list[float] = []
        again: list[float] = []
        seen: set[str] = set()
        for user in random.Random(7).choices(users, k=samples):
            began = time.perf_counter()
            await recommender.for_user(user, limit=limit)
            (again if user in seen else first).append(time.perf_counter() - began)
            seen.add(user)
        return first, again
    finally:
        await database.aclose()


def measure(args: argparse.Namespace, server: Server, database_url: str,
            bare: Server | None) -> int:  # fmt: skip
    began = time.perf_counter()
    print(f"loading {args.dataset} ...", flush=True)
    n_items = load_items(server, args.dataset)
    events = _movielens.watch_events(args.dataset)
    path = anyio.run(load_history, database_url, events)
    users = sorted({e.user_id for e in events})
    print(f"loaded {n_items} items, {len(events)} events, {len(users)} users "
          f"in {time.perf_counter() - began:.1f} s; aggregates: {path}")  # fmt: skip
    try:
        engine = anyio.run(time_engine, database_url, users, args.engine_samples, args.limit)
    except Exception as exc:  # noqa: BLE001 - the HTTP figures are still worth printing
        print(f"bench: could not time the engine on its own: {exc!r}", file=sys.stderr)
        engine = ([], [])
    before = server_counters(server)
    results = run_all(args, server, bare, users)
    after = server_counters(server)
    for fraction in (float(f) for f in args.open_loop_sweep.split(",") if f.strip()):
        swept = run_open_loop(args, server, users, results.capacity * fraction)
        if swept is not None:
            print(f"open-loop sweep {fraction:.2f} x capacity: {open_loop_line(swept)}", flush=True)
    open_loop = run_open_loop(args, server, users, results.capacity / 2)
    report(args, results, engine, {k: after[k] - before.get(k, 0.0) for k in after}, open_loop)
    LAST_CAPACITY.append(results.capacity)
    return 0


# The closed-loop recommendation capacity of the last run, for the impression figure.
LAST_CAPACITY: list[float] = []


@attrs.frozen
class Results:
    health: list[WrkResult]  # one more than recs: before, between and after
    recs: list[WrkResult]
    bare: list[WrkResult]  # one per round, between recs[i] and health[i + 1]; may be empty
    health_c1: WrkResult
    recs_c1: WrkResult

    def _health_around(self, i: int) -> float:
        return (self.health[i].rps + self.health[i + 1].rps) / 2

    def ratios(self) -> list[float]:
        """Each recommendations slice against the mean of the /healthz slices around it."""
        return [r.rps / self._health_around(i) for i, r in enumerate(self.recs)]

    def bare_ratios(self) -> list[float]:
        """The /healthz slices around each bare slice against that bare slice."""
        return [self._health_around(i) / b.rps for i, b in enumerate(self.bare) if b.rps]

    @property
    def capacity(self) -> float:
        """The closed-loop recommendation throughput (median of the slices)."""
        return statistics.median(r.rps for r in self.recs)


def run_all(args: argparse.Namespace, server: Server, bare: Server | None,
            users: list[str]) -> Results:  # fmt: skip
    """Rounds of /healthz, recommendations and bare slices, so that noise hits all alike."""
    health = fixed_path_script("/healthz")
    recs = random_path_script("/v1/users/", users, f"/recommendations?limit={args.limit}")
    wrk = {"connections": args.connections, "threads": args.threads}
    slice_seconds = max(3.0, args.duration / args.rounds)

    def run(name: str, script: str, duration: float = slice_seconds, target: Server = server,
            **over: int) -> WrkResult:  # fmt: skip
        result = run_wrk(name, target.base_url, script, **{**wrk, **over}, duration=duration)
        print(result.line(), flush=True)
        return result

    warm_every_user(server, users, args.limit)
    run("warm-up", recs, WARM_UP)
    health_runs, recs_runs, bare_runs = [run("/healthz", health)], [], []
    with profiling(server, args.profile, slice_seconds * args.rounds * (3 if bare else 2)):
        for _ in range(args.rounds):
            recs_runs.append(run("recommendations", recs))
            if bare is not None:
                bare_runs.append(run("bare Quart /healthz", health, target=bare))
            health_runs.append(run("/healthz", health))
    health_c1 = run("/healthz, 1 connection", health, 5, connections=1, threads=1)
    recs_c1 = run("recommendations, 1 connection", recs, 5, connections=1, threads=1)
    return Results(health_runs, recs_runs, bare_runs, health_c1, recs_c1)


def warm_every_user(server: Server, users: list[str], limit: int) -> None:
    """One request per user (8 at a time), as a process that has served a while has seen."""
    began = time.perf_counter()

    local = threading.local()

    def one(user: str) -> int:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=server.base_url, timeout=30)
            clients.append(local.client)
        return int(local.client.get(f"/v1/users/{user}/recommendations?limit={limit}").status_code)

    clients: list[httpx.Client] = []
    with ThreadPoolExecutor(8) as pool:
        statuses = collections.Counter(pool.map(one, users))
    for client in clients:
        client.close()
    print(f"warm-up: every user once in {time.perf_counter() - began:.1f} s, statuses "
          f"{dict(statuses)}", flush=True)  # fmt: skip


COUNTERS = {
    "503": re.compile(r'^reco_http_requests_total\{[^}]*status="503"[^}]*\} (\S+)$', re.MULTILINE),
    "dropped": re.compile(r"^reco_background_dropped_total\{[^}]*\} (\S+)$", re.MULTILINE),
    "writer batches": re.compile(
        r"^reco_background_batch_duration_seconds_count (\S+)$", re.MULTILINE
    ),
    "writer batches over 1 s": re.compile(
        r'^reco_background_batch_duration_seconds_bucket\{le="\+Inf"\} (\S+)$', re.MULTILINE
    ),
    "writer batches within 1 s": re.compile(
        r'^reco_background_batch_duration_seconds_bucket\{le="1.0"\} (\S+)$', re.MULTILINE
    ),
    "acquire timeouts": re.compile(
        r"^reco_db_acquire_timeouts_total(?:\{[^}]*\})? (\S+)$", re.MULTILINE
    ),
}


def server_counters(server: Server) -> dict[str, float]:
    """The server's 503 answers and dropped impressions so far (sums over label sets)."""
    text = httpx.get(f"{server.base_url}/metrics", timeout=10).text
    return {
        name: sum(float(v) for v in pattern.findall(text)) for name, pattern in COUNTERS.items()
    }


def open_loop_line(result: dict[str, Any]) -> str:
    """One open-loop run's figures on a line."""
    return (f"{result['rate']:.0f} req/s for {result['seconds']:g} s: p50 {result['p50_ms']:.2f} ms, "
            f"p90 {result['p90_ms']:.2f} ms, p99 {result['p99_ms']:.2f} ms, "
            f"p99.9 {result['p999_ms']:.2f} ms, max {result['max_ms']:.2f} ms; "
            f"statuses {result['statuses']}, errors {result['errors']}, "
            f"{result['connections']} connections")  # fmt: skip


def run_open_loop(args: argparse.Namespace, server: Server, users: list[str],
                  rate: float) -> dict[str, Any] | None:  # fmt: skip
    """``bench/_open_loop.py`` at ``rate`` req/s of random users' recommendations."""
    if args.open_loop_seconds <= 0 or rate <= 0:
        return None
    chosen = random.Random(11).choices(users, k=20_000)
    with tempfile.NamedTemporaryFile("w", suffix=".paths", delete=False) as handle:
        handle.writelines(f"/v1/users/{u}/recommendations?limit={args.limit}\n" for u in chosen)
    try:
        command = [sys.executable, "-m", "bench._open_loop", server.base_url, f"{rate:.1f}",
                   str(args.open_loop_seconds), handle.name]  # fmt: skip
        out = subprocess.run(command, capture_output=True, text=True, check=True,
                             timeout=args.open_loop_seconds + 60).stdout  # fmt: skip
    finally:
        Path(handle.name).unlink()
    for line in out.splitlines():
        if line.startswith("OPEN-LOOP-RESULT "):
            result: dict[str, Any] = json.loads(line.split(" ", 1)[1])
            return result
    raise RuntimeError(f"the open-loop generator printed no result:\n{out}")


async def impressions_throughput(database_url: str, bootstrap: str, n: int) -> float:
    """Impressions/s through the real buffer, writer and relay, until every one is published.

    The buffer is in ``sync`` mode with room for ``n``, so submitting never waits on the
    writer: the clock measures the writer and the relay, from the first submit to the
    last row marked published.
    """
    settings = Settings.from_flat(
        database_url=database_url, kafka_bootstrap=bootstrap, max_background_tasks=n,
        impressions_topic="bench.impressions", relay_poll_interval=0.05,
    )  # fmt: skip
    conn = await asyncpg.connect(database_url)
    try:
        await migrations.migrate(conn, migrations.default_dir())
        readiness = Readiness()
        database = Database(settings.database, readiness, migrate=settings.should_migrate_on_start)
        buffer = ImpressionBuffer(settings.impressions)
        relay = OutboxRelay(settings.relay, settings.kafka, database, readiness)
        writer = ImpressionWriter(
            settings.impressions, database, buffer, topic=settings.kafka.impressions_topic
        )
        items = tuple(ServedItem(str(i), i, 1.0 / i) for i in range(1, 11))
        async with anyio.create_task_group() as tg:
            await start(tg, database)
            await start(tg, relay)
            await start(tg, writer)
            began = time.perf_counter()
            for k in range(n):
                await buffer.submit(Impression(uuid.uuid4(), f"u{k % 943}", "user_recommendations",
                                               "cooccurrence", items, dt.datetime.now(dt.UTC)))  # fmt: skip
            published = "SELECT count(*) FROM outbox WHERE published_at IS NOT NULL"
            while await conn.fetchval(published) < n:  # noqa: ASYNC110 - the state is in the database
                await anyio.sleep(0.05)
            elapsed = time.perf_counter() - began
            request_stop(writer)
            request_stop(relay)
            request_stop(database)
        return n / elapsed
    finally:
        await conn.close()


@contextmanager
def profiling(server: Server, output: Path | None, duration: float) -> Iterator[None]:
    if output is None:
        yield
        return
    spy_path = shutil.which(
        "py-spy", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    )
    if spy_path is None:
        print("bench: --profile needs py-spy (pip install py-spy); not profiling", file=sys.stderr)
        yield
        return
    command = [spy_path, "record", "--pid", str(server.pid), "--duration", str(int(duration)),
               "--format", PROFILE_FORMATS.get(output.suffix, "speedscope"), "--output", str(output),
               "--nonblocking"]  # fmt: skip
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) as spy:
        yield
        spy.wait(timeout=duration + 30)
    print(f"profile written to {output}")


def _combined(runs: list[WrkResult]) -> str:
    rps = sum(r.requests for r in runs) / sum(r.seconds for r in runs)
    p50, p90, p99 = (statistics.median(getattr(r, f"p{q}_ms") for r in runs) for q in (50, 90, 99))
    worst = max(r.p99_ms for r in runs)
    return (
        f"{rps:.0f} req/s, p50 {p50:.2f} ms, p90 {p90:.2f} ms, p99 {p99:.2f} ms (worst {worst:.2f})"
    )


def report(args: argparse.Namespace, results: Results, engine: tuple[list[float], list[float]],
           counters: dict[str, float], open_loop: dict[str, Any] | None) -> None:  # fmt: skip
    ratios, bare_ratios = results.ratios(), results.bare_ratios()

    def ms(seconds: float) -> float:
        return seconds * 1000

    def spread(values: list[float]) -> str:
        return ", ".join(f"{v:.2f}" for v in values)

    print()
    print(f"wrk: {args.connections} connections, {args.threads} threads, {args.rounds} rounds "
          f"of {max(3.0, args.duration / args.rounds):g} s, limit={args.limit}"
          f"{', STUB ENGINE' if args.stub_engine else ''}")  # fmt: skip
    print(f"/healthz:        {_combined(results.health)}")
    print(f"recommendations: {_combined(results.recs)}  (percentiles: median of the slices)")
    if results.bare:
        print(f"bare Quart app:  {_combined(results.bare)}")
    print(f"recommendations / /healthz: {statistics.median(ratios):.2f} (median; slices: "
          f"{spread(ratios)}); target >= 0.6")  # fmt: skip
    if bare_ratios:
        print(f"/healthz / bare Quart app: {statistics.median(bare_ratios):.2f} (median; slices: "
              f"{spread(bare_ratios)}); target >= 0.8")  # fmt: skip
    wrk_non_2xx = sum(r.non_2xx for r in results.recs)
    print(f"closed loop, sync mode: {wrk_non_2xx} non-2xx answers to recommendations (wrk), "
          f"{counters.get('503', 0):.0f} 503 answers and {counters.get('dropped', 0):.0f} "
          f"impressions dropped, {counters.get('acquire timeouts', 0):.0f} pool acquire timeouts "
          f"(server metrics, over every closed-loop slice); target 0 from the impression path")  # fmt: skip
    slow = counters.get("writer batches over 1 s", 0) - counters.get("writer batches within 1 s", 0)
    print(f"impression writer in the server meanwhile: {counters.get('writer batches', 0):.0f} "
          f"batches, {slow:.0f} of them over 1 s")  # fmt: skip
    for name, durations in zip(("first call per user", "repeats"), engine, strict=True):
        if len(durations) >= 2:
            quantiles = statistics.quantiles(durations, n=100)
            print(f"engine alone (Recommender.for_user, sequential), {name}, {len(durations)} "
                  f"calls: mean {ms(statistics.fmean(durations)):.2f} ms, p50 "
                  f"{ms(quantiles[49]):.2f} ms, p99 {ms(quantiles[98]):.2f} ms")  # fmt: skip
    print(f"one connection: /healthz p50 {results.health_c1.p50_ms:.2f} ms, "
          f"recommendations p50 {results.recs_c1.p50_ms:.2f} ms")  # fmt: skip
    if open_loop is not None:
        p50_c1 = results.recs_c1.p50_ms
        bad = open_loop["sent"] - open_loop["statuses"].get("200", 0)
        print(f"open loop (half the capacity): {open_loop_line(open_loop)}")
        print(f"open-loop p99 / one-connection p50: {open_loop['p99_ms'] / p50_c1:.1f}x; "
              f"target <= 5x with no error (non-200 or failed: {bad})")  # fmt: skip
