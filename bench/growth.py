"""Growth: how ingest cost, read latency, memory and table sizes move as events pile up.

Starts an embedded PostgreSQL and broker and one ``python -m reco serve`` (its
consumer, folder, relay and maintenance, as in production), loads a synthetic
catalogue over the API, then ingests a seeded synthetic workload through the
broker in chunks of ``--checkpoint`` events: item popularity Zipf-distributed
(``--item-exponent`` over ``--items``), user activity a power law
(``--user-exponent`` over ``--users``), every event stamped with the wall
clock. After each chunk, with ingest idle, it records:

* ingest events/s over the chunk: from the first send until the service's
  consumer has handled every event (``reco_consumer_messages_total``) and the
  folder has no pending co-occurrence increment;
* read p50/p99: ``bench/_open_loop.py`` at ``--read-rate`` req/s for
  ``--read-seconds`` of ``GET /v1/users/{u}/recommendations`` for users
  drawn from the same activity distribution;
* the service's RSS (``VmRSS``, and ``VmHWM``, its peak, from /proc) and its
  model-cache bytes;
* every table's size with its indexes (``pg_total_relation_size``) and its
  indexes alone, a partitioned table summed over its partitions.

It prints the figures, writes the plot (``--plot``, PNG) of each against events
stored, and states the slope of per-event ingest cost and read latency over
the last half of the run. Run: ``./just bench growth [--events N]
[--checkpoint N] [--seed S] [--server-env RECO_X=V ...]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import attrs
import httpx
import matplotlib
import matplotlib.pyplot as plt
import numpy as np
from reco_dev.devstack.stack import DEV_DATABASE, embedded_stack
from reco_dev.devstack.topics import create_topics

from bench.consumer import make_producer, send_all
from bench.recommendations import TOKEN, Server, serving
from reco.folder import folding
from reco.observability.logs import configure_logging
from reco.settings import Settings

REPO = Path(__file__).resolve().parent.parent
PLOT = REPO / "docs" / "performance" / "growth.png"
CONTAINER_LIMIT = 512 * 2**20  # deploy/kubernetes/deployment.yaml
GENRES = ("Action", "Comedy", "Drama", "Horror", "Romance", "Sci-Fi", "Thriller", "Documentary")
# Every table with its indexes, and its indexes alone; a partitioned table summed over
# its partitions (pg_partition_tree; for a plain table, the table itself).
SIZES = """
SELECT c.relname AS name,
       CASE WHEN c.relkind = 'p'
            THEN (SELECT coalesce(sum(pg_total_relation_size(t.relid)), 0)
                  FROM pg_partition_tree(c.oid) t)
            ELSE pg_total_relation_size(c.oid) END AS total,
       CASE WHEN c.relkind = 'p'
            THEN (SELECT coalesce(sum(pg_indexes_size(t.relid)), 0)
                  FROM pg_partition_tree(c.oid) t)
            ELSE pg_indexes_size(c.oid) END AS indexes
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
ORDER BY 2 DESC
"""


class Workload:
    """Seeded events: (user, item) pairs with power-law users and Zipf items."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.rng = np.random.default_rng(args.seed)
        self.items = self._ranks(args.items, args.item_exponent)
        self.users = self._ranks(args.users, args.user_exponent)
        self.seed = args.seed
        self.sent = 0

    def _ranks(self, n: int, exponent: float) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
        """(cumulative weights of ranks 1..n, a random id per rank): the popular ids scattered."""
        weights = np.arange(1, n + 1, dtype=np.float64) ** -exponent
        return np.cumsum(weights) / weights.sum(), self.rng.permutation(n)

    def draw(self, which: tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]], n: int) -> list[int]:
        cdf, ids = which
        ranks = np.minimum(np.searchsorted(cdf, self.rng.random(n)), len(ids) - 1)
        return [int(i) for i in ids[ranks]]

    def chunk(self, n: int) -> list[tuple[bytes, bytes]]:
        """The next ``n`` events as (key, value) records, keyed by user as producers do."""
        users, items = self.draw(self.users, n), self.draw(self.items, n)
        completed = (self.rng.random(n) < 0.6).tolist()
        now = dt.datetime.now(dt.UTC)
        out = []
        for k, (user, item, done) in enumerate(zip(users, items, completed, strict=True)):
            at = (now + dt.timedelta(microseconds=k)).isoformat()
            value = {"event_id": f"g{self.seed}-{self.sent + k}", "user_id": f"u{user}",
                     "item_id": f"i{item}", "occurred_at": at, "completed": done}  # fmt: skip
            out.append((f"u{user}".encode(), json.dumps(value).encode()))
        self.sent += n
        return out

    def readers(self, n: int) -> list[str]:
        return [f"u{u}" for u in self.draw(self.users, n)]

    def by_popularity(self, n: int) -> list[str]:
        """The ``n`` most popular item ids, most popular first."""
        return [f"i{i}" for i in self.items[1][:n]]


@attrs.frozen
class Checkpoint:
    events: int  # stored so far
    ingest_rate: float  # events/s over the last chunk
    p50_ms: float
    p99_ms: float
    read_errors: int  # non-200 answers and transport errors of the read run
    rss: int  # bytes
    rss_peak: int
    model_cache: int  # bytes, as the cache counts them
    tables: dict[str, tuple[int, int]]  # name -> (total bytes, index bytes)
    filled: bool = False  # after the cache-filling phase (memory figures only)


def load_catalogue(server: Server, n: int) -> None:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(base_url=server.base_url, headers=headers, timeout=120) as client:
        for start in range(0, n, 1000):
            items = [{"item_id": f"i{i}", "title": f"Item number {i}",
                      "genres": [GENRES[i % len(GENRES)], GENRES[(i * 7) % len(GENRES)]]}
                     for i in range(start, min(n, start + 1000))]  # fmt: skip
            client.post("/v1/items", json={"items": items}).raise_for_status()


def scrape(server: Server) -> dict[str, float]:
    """The service's metrics, summed over labels, by name."""
    text = httpx.get(f"{server.base_url}/metrics", timeout=120).text
    sums: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name = re.split(r"[{ ]", line, maxsplit=1)[0]
            sums[name] = sums.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return sums


def memory(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of ``pid`` in bytes."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return (int(fields["VmRSS"].split()[0]) * 1024, int(fields["VmHWM"].split()[0]) * 1024)


async def ingest(server: Server, url: str, bootstrap: str, topic: str,
                 records: list[tuple[bytes, bytes]], target: int) -> float:  # fmt: skip
    """Send ``records``; seconds until the service handled ``target`` in all and folded them."""
    producer = make_producer(bootstrap)
    await producer.start()
    conn = await asyncpg.connect(url)
    try:
        await producer.partitions_for(topic)
        began = time.perf_counter()
        await send_all(producer, topic, records)
        with anyio.fail_after(3600):
            while scrape(server).get("reco_consumer_messages_total", 0) < target:  # noqa: ASYNC110 - in another process
                await anyio.sleep(0.2)
            while await folding.pending(conn):  # noqa: ASYNC110 - state in PostgreSQL
                await anyio.sleep(0.2)
        return time.perf_counter() - began
    finally:
        await conn.close()
        await producer.stop()


async def table_sizes(url: str) -> dict[str, tuple[int, int]]:
    conn = await asyncpg.connect(url)
    try:
        return {r["name"]: (int(r["total"]), int(r["indexes"])) for r in await conn.fetch(SIZES)}
    finally:
        await conn.close()


def open_loop(server: Server, paths: list[str], rate: float, seconds: float) -> dict[str, Any]:
    with tempfile.NamedTemporaryFile("w", suffix=".paths", delete=False) as handle:
        handle.writelines(f"{path}\n" for path in paths)
    try:
        command = [sys.executable, "-m", "bench._open_loop", server.base_url, str(rate),
                   str(seconds), handle.name]  # fmt: skip
        out = subprocess.run(command, capture_output=True, text=True, check=True,
                             timeout=seconds + 120).stdout  # fmt: skip
    finally:
        Path(handle.name).unlink()
    line = next(x for x in out.splitlines() if x.startswith("OPEN-LOOP-RESULT "))
    result: dict[str, Any] = json.loads(line.split(" ", 1)[1])
    return result


def run(args: argparse.Namespace, server: Server, url: str, bootstrap: str,
        topic: str) -> list[Checkpoint]:  # fmt: skip
    workload = Workload(args)
    points: list[Checkpoint] = []
    while workload.sent < args.events:
        records = workload.chunk(min(args.checkpoint, args.events - workload.sent))
        seconds = anyio.run(ingest, server, url, bootstrap, topic, records, workload.sent)
        paths = [f"/v1/users/{u}/recommendations?limit=10" for u in workload.readers(2000)]
        read = open_loop(server, paths, args.read_rate, args.read_seconds)
        rss, peak = memory(server.pid)
        answered = read["statuses"].get("200", 0)
        point = Checkpoint(
            workload.sent, len(records) / seconds, read["p50_ms"], read["p99_ms"],
            read["sent"] - answered, rss, peak,
            int(scrape(server).get("reco_model_cache_bytes", 0)), anyio.run(table_sizes, url),
        )  # fmt: skip
        points.append(point)
        save(args.out, points)
        print(f"{point.events:>10,} events: ingest {point.ingest_rate:7,.0f} events/s; read p50 "
              f"{point.p50_ms:6.1f} ms p99 {point.p99_ms:7.1f} ms ({point.read_errors} not 200); "
              f"RSS {rss / 2**20:5.0f} MiB (peak {peak / 2**20:.0f}); model cache "
              f"{point.model_cache / 2**20:.0f} MiB; database "
              f"{sum(t for t, _ in point.tables.values()) / 2**20:,.0f} MiB; load average "
              f"{os.getloadavg()[0]:.1f}", flush=True)  # fmt: skip
        if point.read_errors:
            print(f"  read answers by status: {read['statuses']}, errors {read['errors']}")
    if args.fill > 0:
        try:
            points.append(fill(args, server, workload, points[-1]))
        except (httpx.HTTPError, subprocess.SubprocessError, OSError) as exc:
            print(f"the cache-filling phase failed ({exc!r}); the checkpoints stand")
        save(args.out, points)
    return points


def save(path: Path, points: list[Checkpoint]) -> None:
    """Every checkpoint so far, as JSON (``--replot`` reads it back)."""
    path.write_text(json.dumps([attrs.asdict(p) for p in points], indent=1))


def load(path: Path) -> list[Checkpoint]:
    return [Checkpoint(**{**p, "tables": {k: tuple(v) for k, v in p["tables"].items()}})
            for p in json.loads(path.read_text())]  # fmt: skip


def fill(args: argparse.Namespace, server: Server, workload: Workload,
         last: Checkpoint) -> Checkpoint:  # fmt: skip
    """Similar-item lists of the ``--fill`` most popular items (each fetches one neighbour
    list): the model cache fills to its bound, as in a process that served for long."""
    paths = [f"/v1/items/{i}/similar?limit=10" for i in workload.by_popularity(args.fill)]
    result = open_loop(server, paths, args.fill_rate, args.fill / args.fill_rate)
    rss, peak = memory(server.pid)
    cache = int(scrape(server).get("reco_model_cache_bytes", 0))
    print(f"after {args.fill:,} similar-item requests at {args.fill_rate:g}/s (p50 "
          f"{result['p50_ms']:.1f} ms, p99 {result['p99_ms']:.1f} ms): RSS {rss / 2**20:.0f} "
          f"MiB (peak {peak / 2**20:.0f}); model cache {cache / 2**20:.0f} MiB", flush=True)  # fmt: skip
    return attrs.evolve(last, rss=rss, rss_peak=peak, model_cache=cache, filled=True)


def slope(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """(least-squares slope per million events, the mean of ys)."""
    if len(xs) < 2:
        return float("nan"), float(np.mean(ys)) if ys else float("nan")
    fitted = np.polyfit(np.array(xs) / 1e6, np.array(ys), 1)
    return float(fitted[0]), float(np.mean(ys))


def report(all_points: list[Checkpoint]) -> list[str]:
    points = [p for p in all_points if not p.filled]
    last, peak = points[-1], all_points[-1].rss_peak
    lines = ["tables at the end (total / indexes, MiB):"]
    lines += [f"  {name:32} {total / 2**20:9.1f} {indexes / 2**20:9.1f}"
              for name, (total, indexes) in last.tables.items() if total > 2**20]  # fmt: skip
    half = [p for p in points if p.events > last.events / 2] or points
    xs = [float(p.events) for p in half]
    for label, unit, ys in (
        ("per-event ingest cost", "us/event", [1e6 / p.ingest_rate for p in half]),
        ("read p50", "ms", [p.p50_ms for p in half]),
        ("read p99", "ms", [p.p99_ms for p in half]),
    ):
        per_million, mean = slope(xs, ys)
        lines.append(f"slope over the last half ({len(half)} checkpoints), {label}: "
                     f"{per_million:+.3g} {unit} per million events (mean {mean:.3g} {unit}; "
                     f"{100 * per_million / mean:+.1f}% of the mean per million)")  # fmt: skip
    verdict = "under" if peak < CONTAINER_LIMIT else "OVER"
    lines.append(f"service RSS peak {peak / 2**20:.0f} MiB: {verdict} the container "
                 f"limit of {CONTAINER_LIMIT / 2**20:.0f} MiB")  # fmt: skip
    return lines


def plot(all_points: list[Checkpoint], path: Path, title: str) -> None:
    matplotlib.use("Agg")
    points = [p for p in all_points if not p.filled]
    xs = [p.events / 1e6 for p in points]
    fig, axes = plt.subplots(2, 2, figsize=(12, 8), sharex=True)
    axes[0][0].plot(xs, [p.ingest_rate for p in points], "o-")
    axes[0][0].set(ylabel="events/s", title="ingest (consumer + fold)", ylim=(0, None))
    axes[0][1].plot(xs, [p.p50_ms for p in points], "o-", label="p50")
    axes[0][1].plot(xs, [p.p99_ms for p in points], "o-", label="p99")
    axes[0][1].set(ylabel="ms", title="read latency (open loop)", ylim=(0, None))
    axes[0][1].legend()
    axes[1][0].plot(xs, [p.rss / 2**20 for p in points], "o-", label="RSS")
    axes[1][0].plot(xs, [p.model_cache / 2**20 for p in points], "o-", label="model cache")
    if all_points[-1].filled:
        end = all_points[-1]
        axes[1][0].plot([xs[-1]], [end.rss / 2**20], "s", label="RSS, cache filled")
        axes[1][0].plot([xs[-1]], [end.model_cache / 2**20], "s", label="cache, filled")
    axes[1][0].axhline(CONTAINER_LIMIT / 2**20, color="red", linestyle="--", label="pod limit")
    axes[1][0].set(ylabel="MiB", title="service memory", ylim=(0, None))
    axes[1][0].legend()
    names = sorted(points[-1].tables, key=lambda n: -points[-1].tables[n][0])[:7]
    for name in names:
        axes[1][1].plot(xs, [p.tables.get(name, (0, 0))[0] / 2**20 for p in points], label=name)
    axes[1][1].set(ylabel="MiB (with indexes)", title="table sizes", ylim=(0, None))
    axes[1][1].legend(fontsize="small")
    for ax in axes[1]:
        ax.set_xlabel("events stored (millions)")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench growth", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    add = parser.add_argument
    add("--events", type=int, default=3_000_000, help="events to ingest in all")
    add("--checkpoint", type=int, default=500_000, help="events between checkpoints")
    add("--seed", type=int, default=15)
    add("--items", type=int, default=100_000, help="catalogue size")
    add("--users", type=int, default=1_000_000)
    add("--item-exponent", type=float, default=0.9, help="Zipf exponent of item popularity")
    add("--user-exponent", type=float, default=0.6, help="power-law exponent of user activity")
    add("--read-rate", type=float, default=50.0, help="open-loop requests/s at a checkpoint")
    add("--read-seconds", type=float, default=10.0)
    add("--fill", type=int, default=15_000,
        help="similar-item requests at the end, to fill the model cache (0: none)")  # fmt: skip
    add("--fill-rate", type=float, default=100.0, help="their requests/s (open loop)")
    add("--plot", type=Path, default=PLOT, help="where to write the PNG")
    add("--out", type=Path, default=Path("growth.json"),
        help="the checkpoints, as JSON, rewritten after each")  # fmt: skip
    add("--replot", type=Path, default=None, metavar="JSON",
        help="only print the report and plot the checkpoints of an earlier --out")  # fmt: skip
    add("--server-env", action="append", default=[], metavar="RECO_X=VALUE",
        help="a setting of the service (repeatable)")  # fmt: skip
    args = parser.parse_args(argv)
    # What bench/recommendations.py's ``serving`` reads.
    args.log_level, args.stub_engine, args.server_log = "WARNING", False, None
    return args


def main(argv: list[str]) -> int:
    args = _arguments(argv)
    configure_logging("WARNING")
    began = time.perf_counter()
    if args.replot is not None:
        finish(args, load(args.replot), began)
        return 0
    with (
        tempfile.TemporaryDirectory(prefix="reco-growth-") as tmp,
        embedded_stack(Path(tmp) / "stack", durable=False) as (postgres, broker),
    ):
        assert broker is not None
        url = postgres.url(DEV_DATABASE)
        settings = Settings.from_flat(database_url=url, kafka_bootstrap=broker.bootstrap)
        anyio.run(create_topics, settings)
        with serving(url, broker.bootstrap, args, Path(tmp) / "server.log") as server:
            load_catalogue(server, args.items)
            points = run(args, server, url, broker.bootstrap, settings.kafka.watch_events_topic)
    finish(args, points, began)
    return 0


def finish(args: argparse.Namespace, points: list[Checkpoint], began: float) -> None:
    for line in report(points):
        print(line)
    events = max(p.events for p in points)
    title = (f"reco growth: {events:,} events, {args.items:,} items, {args.users:,} users, "
             f"seed {args.seed}")  # fmt: skip
    plot(points, args.plot, title)
    print(f"plot: {args.plot}; wall {time.perf_counter() - began:.0f} s")
