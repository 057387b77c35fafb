"""The chaos suite: faults under load, invariants checked after each heal.

``python -m tests.chaos --short`` (``./just chaos --short``, in ``.ci/run``):
every scenario once, a few seconds of load each. ``--long``: each scenario
``--repeat`` times (default 3) with longer load. ``--only NAME`` runs some.
``--write-docs`` puts the table in docs/operations/chaos.md. Exit status 1
when any invariant failed. See docs/operations/chaos.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import attrs

from tests.chaos import invariants, report
from tests.chaos.cluster import TOKEN, Cluster, cluster
from tests.chaos.faults import SCENARIOS, Context, Scenario

ROOT = Path(__file__).resolve().parents[2]
LIVENESS_BOUND = 45.0  # seconds from heal to lag 0, backlog 0, one leader, all ready


@attrs.frozen
class Profile:
    name: str
    lead: float  # load before the fault
    tail: float  # load after the heal
    hold_factor: float
    repeat: int
    kafka_rate: float
    http_rate: float
    read_rate: float


SHORT = Profile("short", lead=2.0, tail=2.0, hold_factor=1.0, repeat=1,
                kafka_rate=30.0, http_rate=8.0, read_rate=12.0)  # fmt: skip
LONG = Profile("long", lead=6.0, tail=6.0, hold_factor=1.5, repeat=3,
               kafka_rate=60.0, http_rate=15.0, read_rate=20.0)  # fmt: skip


def workload_config(
    system: Cluster, tag: str, seconds: float, output: Path, p: Profile
) -> dict[str, Any]:
    return {
        "scenario": tag, "seconds": seconds, "output": str(output), "bootstrap": system.bootstrap,
        "topic": "reco.watch-events", "token": TOKEN,
        "instances": {i.name: i.url for i in system.instances},
        "kafka_rate": p.kafka_rate, "http_rate": p.http_rate, "read_rate": p.read_rate,
        "seed": abs(hash(tag)) % 10_000,
    }  # fmt: skip


async def run_scenario(system: Cluster, scenario: Scenario, tag: str, p: Profile) -> report.Row:
    ctx = Context(hold=scenario.hold * p.hold_factor)
    conn = await asyncpg.connect(system.database_url)
    try:
        mark = await conn.fetchval("SELECT coalesce(max(id), 0) FROM outbox")
    finally:
        await conn.close()
    output = system.root / f"{tag}.jsonl"
    config = system.root / f"{tag}.json"
    seconds = p.lead + ctx.hold + p.tail
    config.write_text(json.dumps(workload_config(system, tag, seconds, output, p)))
    began = time.monotonic()
    with (system.root / f"{tag}.workload.log").open("wb") as log:
        load = await anyio.open_process(
            [sys.executable, "-m", "tests.chaos.workload", str(config)],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        await anyio.sleep(p.lead + 1.0)  # the workload's start-up, then the lead
        try:
            await scenario.act(system, ctx)
        except Exception as exc:  # noqa: BLE001 - reported as the scenario's failure
            ctx.violations.append(f"the fault could not run: {type(exc).__name__}: {exc}")
            await restart_dead(system)
        with anyio.fail_after(seconds + 60):
            await load.wait()
    finally:
        if load.returncode is None:
            load.kill()
            with anyio.CancelScope(shield=True):
                await load.wait()
    _, liveness = await invariants.wait_live(system, LIVENESS_BOUND)
    records = (
        [json.loads(line) for line in output.read_text().splitlines()] if output.exists() else []
    )
    if load.returncode != 0 or not records:
        ctx.violations.append(
            f"the workload failed (exit {load.returncode}); see {tag}.workload.log"
        )
    return await check_all(system, tag, scenario, ctx, records, mark, liveness, began)


async def restart_dead(system: Cluster) -> None:
    for instance in system.instances:
        if not instance.alive:
            await system.start_instance(instance)


async def check_all(
    system: Cluster, tag: str, scenario: Scenario, ctx: Context, records: list[dict[str, Any]],
    mark: int, liveness: invariants.Check, began: float,
) -> report.Row:  # fmt: skip
    conn = await asyncpg.connect(system.database_url)
    try:
        checks = {
            "events": await invariants.events(conn, tag, records),
            "aggregates": await invariants.aggregates(conn),
            "outbox": await invariants.outbox(conn, system, mark),
            "impressions": await invariants.impressions(conn, records, ctx.kills),
            "dead letters": await invariants.dead_letters(system, tag, records),
            "recovery s": liveness,
            "5xx": report.server_errors(records, ctx.drain),
        }
    finally:
        await conn.close()
    return report.Row(tag, scenario.fault, checks, ctx.figures, ctx.violations,
                      time.monotonic() - began)  # fmt: skip


async def main_async(args: argparse.Namespace) -> int:
    p = LONG if args.long else SHORT
    p = attrs.evolve(p, repeat=args.repeat or p.repeat)
    chosen = [s for s in SCENARIOS if not args.only or s.name in args.only]
    began = time.monotonic()
    rows: list[report.Row] = []
    with tempfile.TemporaryDirectory(prefix="reco-chaos-") as tmp:
        root = Path(args.keep) if args.keep else Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        async with cluster(root, args.instances) as system:
            print(f"{args.instances} instances ready after {time.monotonic() - began:.1f} s "
                  f"(work directory {root})", flush=True)  # fmt: skip
            for n in range(p.repeat):
                for index, scenario in enumerate(chosen):
                    tag = f"r{n}s{index}"
                    row = await run_scenario(system, scenario, tag, p)
                    row.name = scenario.name if p.repeat == 1 else f"{scenario.name} #{n + 1}"
                    rows.append(row)
                    print(report.line(row), flush=True)
    wall = time.monotonic() - began
    command = f"./just chaos --{p.name}" + (f" --only {' '.join(args.only)}" if args.only else "")
    table = report.table(rows, command, wall, args.instances)
    print(table)
    if args.write_docs:
        report.write_docs(ROOT / "docs/operations/chaos.md", table)
    return 1 if any(row.failed for row in rows) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--short", action="store_true", help="every scenario once (the default)")
    mode.add_argument("--long", action="store_true", help="each scenario several times, longer")
    parser.add_argument("--repeat", type=int, default=0, help="runs of each scenario")
    parser.add_argument("--instances", type=int, default=2, help="reco processes (2 or 3)")
    parser.add_argument("--only", nargs="*", default=[], help="scenario names to run")
    parser.add_argument("--keep", default="", help="work directory to keep (logs, records)")
    parser.add_argument("--write-docs", action="store_true", help="update docs/operations/chaos.md")
    return anyio.run(main_async, parser.parse_args(argv), backend="asyncio")


if __name__ == "__main__":
    sys.exit(main())
