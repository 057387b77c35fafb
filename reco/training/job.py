"""``reco train``: read the watch history, fit item neighbours, store and switch a model version.

A batch process (a Kubernetes CronJob, a compose service next to
``migrate``), never part of the serving process: the fit is CPU- and
memory-bound (docs/design.md, "Trained model"). One run at a time, by a
session advisory lock: a second run exits at once (status 0, logged).

Steps: read ``user_history`` (one read-only snapshot); optionally fit once
on the history before a time cut to measure the model's own figures
(reco/training/figures.py); fit on everything; insert the version row and
its neighbour rows (inactive) and commit; then one transaction switches the
active version and prunes old ones (sql/0005_trained_models.sql says why
readers never see a half-written model). The fit runs in a worker thread so
the connection's keepalives keep being answered.
"""

from __future__ import annotations

import datetime as dt
import resource
import sys
import time
from collections.abc import Sequence

import anyio
import asyncpg
import attrs

from reco.db.pool import connect
from reco.observability.logs import get_logger
from reco.settings import Settings, TrainingSettings
from reco.training import figures, fit, queries

log = get_logger("reco.training")

EXIT_FAILED = 1


@attrs.frozen
class Result:
    version: int
    method: str
    items: int
    fit_seconds: float
    peak_rss_bytes: int
    figures: dict[str, float | int]


async def train_command(settings: Settings) -> int:
    """The CLI entry point: exit 0 when a version was stored (or another run holds the lock)."""
    try:
        conn = await connect(settings.database, "reco-train")
    except (asyncpg.PostgresError, OSError, TimeoutError) as exc:
        log.exception("training failed: cannot connect")
        print(f"reco train: cannot connect to PostgreSQL: {exc}", file=sys.stderr)
        return EXIT_FAILED
    try:
        if not await queries.try_lock(conn):
            log.info("another reco train holds the training lock; nothing to do")
            return 0
        result = await train(conn, settings.training)
    except (asyncpg.PostgresError, OSError, TimeoutError) as exc:
        log.exception("training failed")
        print(f"reco train: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(settings.shutdown_timeout):
            await conn.close()
    if result is None:
        print("reco train: no watch history yet; no model stored")
        return 0
    print(f"reco train: version {result.version} ({result.method}, {result.items} items) "
          f"fitted in {result.fit_seconds:.1f} s, peak RSS {result.peak_rss_bytes / 2**20:.0f} "
          f"MiB; own figures {result.figures}")  # fmt: skip
    return 0


async def train(conn: asyncpg.Connection, settings: TrainingSettings) -> Result | None:
    """One training run on ``conn`` (the caller holds the lock); None without history."""
    started = dt.datetime.now(dt.UTC)
    timeout = settings.statement_timeout
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        await _allow(conn, timeout)
        rows = await queries.history(conn, statement_timeout=timeout)
    if not rows:
        return None
    began = time.perf_counter()
    neighbours, own = await anyio.to_thread.run_sync(_fit, rows, settings)
    fit_seconds = time.perf_counter() - began
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    window = (min(r[2] for r in rows), max(r[2] for r in rows))
    params = {"lambda": settings.lambda_, "neighbours": settings.neighbours,
              "exact_max_items": settings.exact_max_items,
              "peak_rss_bytes": peak}  # fmt: skip
    users = len({r[0] for r in rows})
    async with conn.transaction():
        await _allow(conn, timeout)
        version = await queries.insert_version(
            conn, method=neighbours.method, window=window, started_at=started,
            fit_seconds=fit_seconds, users=users, items=len(neighbours.items),
            watches=len(rows), params=params, figures=own,
        )  # fmt: skip
        await queries.write_neighbours(conn, version, lists(neighbours), statement_timeout=timeout)
    pruned = await queries.activate(conn, version, settings.keep_versions)
    log.info("model version active", version=version, method=neighbours.method,
             items=len(neighbours.items), users=users, watches=len(rows),
             fit_seconds=round(fit_seconds, 3), peak_rss_bytes=peak, pruned=pruned,
             figures=own)  # fmt: skip
    return Result(version, neighbours.method, len(neighbours.items), fit_seconds, peak, own)


async def _allow(conn: asyncpg.Connection, seconds: float) -> None:
    """This transaction's statements may outlast the service's statement timeout."""
    await conn.execute(f"SET LOCAL statement_timeout = {int(seconds * 1000)}")


def _fit(rows: Sequence[tuple[str, str, dt.datetime]],
         settings: TrainingSettings) -> tuple[fit.Neighbours, dict[str, float | int]]:  # fmt: skip
    k, lam, exact = settings.neighbours, settings.lambda_, settings.exact_max_items
    own: dict[str, float | int] = {}
    if settings.evaluate:
        stamped = [(u, i, t.timestamp()) for u, i, t in rows]
        own = figures.holdout(stamped, k=k, lam=lam, exact_max_items=exact)
    model = fit.fit(fit.matrix([(u, i) for u, i, _ in rows]), k=k, lam=lam, exact_max_items=exact)
    return model, own


def lists(n: fit.Neighbours) -> list[tuple[str, list[str], list[float]]]:
    """One (item, neighbour ids, weights) per item with at least one neighbour."""
    out = []
    for row, item in enumerate(n.items):
        keep = n.ids[row] >= 0
        if keep.any():
            out.append((item, [n.items[int(i)] for i in n.ids[row][keep]],
                        [float(w) for w in n.weights[row][keep]]))  # fmt: skip
    return out
