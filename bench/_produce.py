"""The consumer benchmark's producer, in a process of its own.

``python -m bench._produce BOOTSTRAP TOPIC DATA LIMIT`` (LIMIT 0: everything)
loads the ratings as bench/consumer.py does, connects, prints ``ready``,
waits for a line on stdin, sends every message (acks=all) and prints the
seconds the sending took.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import anyio

from bench.consumer import load, make_producer, send_all


async def main(bootstrap: str, topic: str, data: str, limit: str) -> None:
    messages = load(Path(data), int(limit) or None)
    producer = make_producer(bootstrap)
    await producer.start()
    try:
        await producer.partitions_for(topic)  # metadata before the clock starts
        print("ready", flush=True)
        await anyio.to_thread.run_sync(sys.stdin.readline)
        began = time.perf_counter()
        await send_all(producer, topic, messages)
        print(f"{time.perf_counter() - began:.6f}", flush=True)
    finally:
        await producer.stop()


if __name__ == "__main__":
    anyio.run(main, *sys.argv[1:5])
