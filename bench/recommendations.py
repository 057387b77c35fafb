"""Read-API throughput and latency against ``/healthz`` on the same server, same run.

``python -m bench recommendations [--dataset DIR] [--duration 15] ...``

Starts an embedded PostgreSQL (and broker) and ``python -m reco serve`` as a
subprocess, loads the ML-100K catalogue through ``POST /v1/items`` and its
history through the engine's write path (watch_events rows, then
``reco.engine.ingest.apply_events`` in the same transaction, as the
consumer does), then runs wrk at 32 connections: recommendations for random
users in slices alternating with /healthz slices (each slice is compared with
the /healthz slices either side of it: the ceiling from the same run). It
also times the engine call alone (``Recommender.for_user`` in this process)
and both endpoints at one connection, so the request path's cost splits into
framework, engine and the rest. Nothing is installed here; wrk must be.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import asyncpg
import attrs
import httpx

from bench import _movielens
from bench._wrk import (
    INSTALL_HINT,
    WrkResult,
    fixed_path_script,
    random_path_script,
    run_wrk,
    wrk_path,
)
from reco.db.pool import Database
from reco.devstack.ports import free_port
from reco.devstack.stack import DEV_DATABASE, embedded_stack
from reco.engine import folding
from reco.engine.ingest import apply_events
from reco.engine.recommender import Recommender
from reco.events import WatchEvent
from reco.observability.logs import configure_logging
from reco.observability.readiness import Readiness
from reco.settings import Settings

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
            with serving(database_url, bootstrap, args, Path(tmp) / "server.log") as server:
                return measure(args, server, database_url)


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


def wait_ready(server: Server, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited; see its log:\n{server.log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{server.base_url}/readyz", timeout=1).status_code == 200:
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
        ON CONFLICT (event_id) DO NOTHING RETURNING event_id
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
                      limit: int) -> list[float]:  # fmt: skip
    """Seconds per ``Recommender.for_user`` call, one at a time, in this process."""
    settings = Settings(database_url=database_url, db_pool_min_size=1, db_pool_max_size=2)
    database = Database(settings, Readiness())
    await database.open()
    try:
        recommender = Recommender(database, settings)
        durations = []
        for user in random.Random(7).choices(users, k=samples):
            began = time.perf_counter()
            await recommender.for_user(user, limit=limit)
            durations.append(time.perf_counter() - began)
        return durations
    finally:
        await database.aclose()


def measure(args: argparse.Namespace, server: Server, database_url: str) -> int:
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
        engine = []
    results = run_all(args, server, users)
    report(args, results, engine)
    return 0


@attrs.frozen
class Results:
    health: list[WrkResult]  # one more than recs: before, between and after
    recs: list[WrkResult]
    health_c1: WrkResult
    recs_c1: WrkResult

    def ratios(self) -> list[float]:
        """Each recommendations slice against the mean of the /healthz slices around it."""
        return [
            r.rps / ((self.health[i].rps + self.health[i + 1].rps) / 2)
            for i, r in enumerate(self.recs)
        ]


def run_all(args: argparse.Namespace, server: Server, users: list[str]) -> Results:
    """Alternate /healthz and recommendations slices, so that noise hits both alike."""
    health = fixed_path_script("/healthz")
    recs = random_path_script("/v1/users/", users, f"/recommendations?limit={args.limit}")
    wrk = {"connections": args.connections, "threads": args.threads}
    slice_seconds = max(3.0, args.duration / args.rounds)

    def run(name: str, script: str, duration: float = slice_seconds, **over: int) -> WrkResult:
        result = run_wrk(name, server.base_url, script, **{**wrk, **over}, duration=duration)
        print(result.line(), flush=True)
        return result

    run("warm-up", recs, WARM_UP)
    health_runs, recs_runs = [run("/healthz", health)], []
    with profiling(server, args.profile, slice_seconds * args.rounds):
        for _ in range(args.rounds):
            recs_runs.append(run("recommendations", recs))
            health_runs.append(run("/healthz", health))
    health_c1 = run("/healthz, 1 connection", health, 5, connections=1, threads=1)
    recs_c1 = run("recommendations, 1 connection", recs, 5, connections=1, threads=1)
    return Results(health_runs, recs_runs, health_c1, recs_c1)


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


def report(args: argparse.Namespace, results: Results, engine: list[float]) -> None:
    ratios = results.ratios()

    def ms(seconds: float) -> float:
        return seconds * 1000

    print()
    print(f"wrk: {args.connections} connections, {args.threads} threads, {args.rounds} rounds "
          f"of {max(3.0, args.duration / args.rounds):g} s, limit={args.limit}"
          f"{', STUB ENGINE' if args.stub_engine else ''}")  # fmt: skip
    print(f"/healthz:        {_combined(results.health)}")
    print(f"recommendations: {_combined(results.recs)}  (percentiles: median of the slices)")
    print(f"ratio to /healthz: {statistics.median(ratios):.0%} (median; slices: "
          f"{', '.join(f'{r:.0%}' for r in ratios)}); target >= 60% and p99 <= 25 ms")  # fmt: skip
    if len(engine) >= 2:
        quantiles = statistics.quantiles(engine, n=100)
        print(f"engine alone (Recommender.for_user, sequential, {len(engine)} calls): "
              f"mean {ms(statistics.fmean(engine)):.2f} ms, p50 {ms(quantiles[49]):.2f} ms, "
              f"p99 {ms(quantiles[98]):.2f} ms")  # fmt: skip
    print(f"one connection: /healthz p50 {results.health_c1.p50_ms:.2f} ms, "
          f"recommendations p50 {results.recs_c1.p50_ms:.2f} ms")  # fmt: skip
