"""The maintainer: partitions made ahead, dropped past retention, and table sizes measured.

Every instance runs one; each pass is one transaction under
``pg_try_advisory_xact_lock`` (reco/maintenance/queries.py): an instance
that finds the lock held skips its pass (``outcome="skipped"``), so passes
never overlap and a dead instance's work is done by the next pass of any
other. A pass is idempotent: it creates the daily partitions of today and
``RECO_PARTITIONS_AHEAD`` days ahead that are missing (and of any day within
retention whose rows wait in a DEFAULT partition, which moves them), deletes
the DEFAULT partition's rows of expired days (in chunks: normally there are
none; ``reco_maintenance_default_rows_deleted_total``), then drops every
partition wholly older than its table's retention (``DROP TABLE`` of the
partition). Its DDL waits at most
``RECO_MAINTENANCE_LOCK_TIMEOUT`` for a table lock, so a long transaction
of the consumer delays a pass, never the consumer for long.

Published outbox rows are pruned by the relay's leader
(reco/outbox/relay.py, ``RECO_OUTBOX_RETENTION``), not here.

Every ``RECO_TABLE_SIZE_INTERVAL`` it also samples the size of every table
(partitions summed) into ``reco_table_bytes`` / ``reco_table_index_bytes``;
this needs no lock, every instance does it.

Errors: a pass that fails is counted (``reco_maintenance_runs_total``
``outcome="transient"`` for a transient error, ``"error"`` otherwise), logged,
and tried again at the next interval: housekeeping must not stop the
service, and a failure that persists shows as ``RecoMaintenanceStalled``
(no success for three intervals). Stop (reco/lifecycle.py): the pass in hand
gets the work part of the share; cancelled after that, it rolls back whole.
"""

from __future__ import annotations

import datetime as dt
import time

import anyio
import anyio.abc
import asyncpg
import attrs

from reco.db.classify import is_transient
from reco.db.pool import Database
from reco.lifecycle import Stop
from reco.maintenance import queries
from reco.maintenance.queries import Partitioned
from reco.observability import metrics
from reco.observability.logs import get_logger
from reco.settings import MaintenanceSettings

log = get_logger("reco.maintenance")


@attrs.frozen
class Pass:
    """What one pass did (``ran``: False when another instance held the lock)."""

    ran: bool
    created: tuple[str, ...] = ()
    dropped: tuple[str, ...] = ()
    deleted: int = 0  # expired rows deleted from DEFAULT partitions


def partitioned(settings: MaintenanceSettings) -> tuple[Partitioned, ...]:
    return (
        Partitioned("watch_events", "received_day", settings.watch_event_retention, "received_day"),
        Partitioned(
            "impressions",
            "served_at",
            settings.impression_retention,
            "(served_at AT TIME ZONE 'UTC')::date",
        ),
    )


class Maintainer:
    name = "maintenance"

    def __init__(self, settings: MaintenanceSettings, database: Database) -> None:
        self.settings = settings
        self.database = database
        self.tables = partitioned(settings)

    async def run(self, *, task_status: anyio.abc.TaskStatus[None], stop: Stop) -> None:
        # 0 until the first success: RecoMaintenanceStalled also sees a pass that never ran
        metrics.maintenance_last_success.set({}, 0)
        task_status.started()
        tick = min(self.settings.interval, self.settings.table_size_interval)
        next_pass = next_sizes = time.monotonic()
        with stop.work() as work:
            while not stop.requested:
                now = time.monotonic()
                with work.in_hand():
                    if now >= next_pass:
                        next_pass = now + self.settings.interval
                        await self.pass_guarded()
                    if now >= next_sizes:
                        next_sizes = now + self.settings.table_size_interval
                        await self.sizes_guarded()
                with stop.idle():
                    await anyio.sleep(
                        max(0.0, min(next_pass, next_sizes) - time.monotonic(), tick / 100)
                    )

    async def pass_guarded(self) -> str:
        """One pass; its outcome as counted (never raises but for a cancellation)."""
        try:
            done = await self.pass_once()
        except Exception as exc:  # noqa: BLE001 - counted and logged; tried again next interval
            outcome = "transient" if is_transient(exc) else "error"
            log.warning("maintenance pass failed", outcome=outcome, error=repr(exc))
        else:
            outcome = "ok" if done.ran else "skipped"
            if done.ran:
                metrics.maintenance_last_success.set({}, time.time())
        metrics.maintenance_runs.inc({"outcome": outcome})
        return outcome

    async def pass_once(self) -> Pass:
        """Create the partitions ahead, drop the expired ones: one transaction, if ours."""
        async with self.database.connection(background=True) as conn, conn.transaction():
            if not await queries.try_lock(conn):
                return Pass(ran=False)
            await conn.execute(f"SET LOCAL lock_timeout = {int(self.settings.lock_timeout * 1000)}")
            created: list[str] = []
            dropped: list[str] = []
            deleted: dict[str, int] = {}
            now, today = await queries.today(conn)
            for part in self.tables:
                keep_from = queries.cutoff_day(now, part.retention)
                created += await self._create(conn, part, today, keep_from)
                if n := await queries.delete_expired_default(conn, part, keep_from):
                    deleted[part.table] = n
                dropped += await self._drop(conn, part, now)
        # counted once committed: a pass that rolls back deleted nothing
        for table, n in deleted.items():
            metrics.maintenance_default_rows_deleted.add({"table": table}, n)
        if created or dropped or deleted:
            log.info("maintenance pass", created=created, dropped=dropped, deleted=deleted)
        return Pass(ran=True, created=tuple(created), dropped=tuple(dropped),
                    deleted=sum(deleted.values()))  # fmt: skip

    async def _create(
        self, conn: asyncpg.Connection, part: Partitioned, today: dt.date, keep_from: dt.date
    ) -> list[str]:
        days = {today + dt.timedelta(days=i) for i in range(self.settings.partitions_ahead + 1)}
        # an expired day's DEFAULT rows are deleted, not given a partition to drop
        days.update(d for d in await queries.default_days(conn, part) if d >= keep_from)
        created = []
        for day in sorted(days):
            if await queries.create(conn, part, day):
                created.append(f"{part.table}_p{day:%Y%m%d}")
                metrics.maintenance_partitions_created.inc({"table": part.table})
        return created

    async def _drop(
        self, conn: asyncpg.Connection, part: Partitioned, now: dt.datetime
    ) -> list[str]:
        dropped = []
        for name, day in sorted((await queries.partitions(conn, part.table)).items()):
            if queries.expired(day, now, part.retention):
                await queries.drop(conn, name)
                dropped.append(name)
                metrics.maintenance_partitions_dropped.inc({"table": part.table})
        return dropped

    async def sizes_guarded(self) -> None:
        try:
            async with self.database.connection(background=True) as conn:
                sizes = await queries.table_sizes(conn)
        except Exception as exc:  # noqa: BLE001 - a missed sample; the next one comes
            log.warning("table sizes not read", error=repr(exc))
            return
        for table, (total, indexes) in sizes.items():
            metrics.table_bytes.set({"table": table}, total)
            metrics.table_index_bytes.set({"table": table}, indexes)
