"""An open-loop HTTP load generator, in a process of its own.

``python -m bench._open_loop BASE_URL RATE SECONDS PATHS_FILE``: request ``i``
is due at ``start + i / RATE`` whatever happened to the earlier ones (a fixed
arrival schedule, not a closed loop that waits for answers), on a keep-alive
connection taken from an idle pool (a new one when none is idle, or when the
server closed the idle one as it was reused); its latency
is measured from the scheduled start, so a stall of the server shows in every
request that was due during it (no coordinated omission). Paths are taken in
turn from PATHS_FILE (one a line). Prints one ``OPEN-LOOP-RESULT`` JSON line:
counts by status, errors, and latency percentiles in milliseconds from an
HdrHistogram (1 us .. 60 s, 3 significant digits).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections import Counter
from urllib.parse import urlsplit

import uvloop
from hdrh.histogram import HdrHistogram


class Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    async def get(self, request: bytes) -> int:
        self.writer.write(request)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("closed by the server")
        status = int(status_line.split()[1])
        length = 0
        while (line := await self.reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await self.reader.readexactly(length)
        return status


async def run(base_url: str, rate: float, seconds: float, paths: list[str]) -> dict[str, object]:
    url = urlsplit(base_url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    requests = [f"GET {p} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode() for p in paths]
    histogram = HdrHistogram(1, 60_000_000, 3)
    statuses: Counter[int] = Counter()
    errors: Counter[str] = Counter()
    idle: list[Connection] = []
    opened = 0
    loop = asyncio.get_running_loop()

    async def connect() -> Connection:
        nonlocal opened
        opened += 1
        return Connection(*await asyncio.open_connection(host, port))

    async def one(due: float, request: bytes) -> None:
        try:
            if idle:
                conn = idle.pop()
                try:
                    status = await conn.get(request)
                except (ConnectionError, asyncio.IncompleteReadError):
                    # Closed by the server for idleness as we reused it (keep-alive
                    # timeout): a GET, never answered; sent again on a new connection,
                    # as HTTP clients do. The latency still counts from ``due``.
                    conn = await connect()
                    status = await conn.get(request)
            else:
                conn = await connect()
                status = await conn.get(request)
        except (OSError, ValueError, asyncio.IncompleteReadError) as exc:
            errors[type(exc).__name__] += 1
            return
        histogram.record_value(max(1, round((loop.time() - due) * 1e6)))
        statuses[status] += 1
        idle.append(conn)

    total = int(rate * seconds)
    tasks: set[asyncio.Task[None]] = set()
    began = loop.time() + 0.05
    for i in range(total):
        due = began + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.ensure_future(one(due, requests[i % len(requests)]))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks, timeout=30)
    late = loop.time() - began - seconds
    return {
        "rate": rate, "seconds": seconds, "sent": total, "answered": histogram.get_total_count(),
        "statuses": {str(k): v for k, v in sorted(statuses.items())}, "errors": dict(errors),
        "connections": opened, "finished_late_s": round(late, 3),
        "p50_ms": histogram.get_value_at_percentile(50) / 1e3,
        "p90_ms": histogram.get_value_at_percentile(90) / 1e3,
        "p99_ms": histogram.get_value_at_percentile(99) / 1e3,
        "p999_ms": histogram.get_value_at_percentile(99.9) / 1e3,
        "max_ms": histogram.get_max_value() / 1e3,
    }  # fmt: skip


def main(argv: list[str]) -> int:
    base_url, rate, seconds, paths_file = argv
    with open(paths_file, encoding="utf-8") as handle:
        paths = [line.strip() for line in handle if line.strip()]
    uvloop.install()
    started = time.perf_counter()
    result = asyncio.run(run(base_url, float(rate), float(seconds), paths))
    result["wall_s"] = round(time.perf_counter() - started, 3)
    print("OPEN-LOOP-RESULT " + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
