"""The co-occurrence folder: the second half of the consumer's write path.

A component of its own (under the root task group, like the consumer): every
``cooccurrence_fold_interval`` it folds the pair increments that committed
batches appended to ``item_cooccurrence_deltas`` into ``item_cooccurrence``
(reco/folder/folding.py has the statement and why), in
``cooccurrence_fold_parts`` loops that fold disjoint parts of the pair space
at the same time (one database backend each). Every instance runs one; an
advisory lock per part lets one fold of each part at a time, so instances
never wait for each other and a dead instance's turn is simply taken by the
next. Each turn is a pass over the pages the increments table has at its
start, ``cooccurrence_fold_chunk_blocks`` pages per transaction: a backlog of
any size drains in bounded steps (each within ``cooccurrence_fold_timeout``),
and a stop is honoured between two chunks.

While the increments table is empty the loops back off: after each pass that
folded nothing the wait doubles, from ``cooccurrence_fold_interval`` up to
``IDLE_FACTOR`` times it (4 s by default; an idle instance folded each part
every 0.25 s: 4-5% of its CPU, docs/performance.md "Read path"). A pass that folds anything returns to
the interval, so folds under load are never delayed, and :meth:`wake` (called
for each ``reco_user_versions`` notification, sent by every committed batch of
``apply_events``: reco/engine/stamps.py) ends a backoff early, so the first
batch after a quiet stretch is folded one interval after its commit.

Every ``cooccurrence_prune_interval`` each loop also makes a prune pass over
``item_cooccurrence`` (same chunks, same lock): the pairs whose time-decayed
weight fell below ``cooccurrence_weight_floor`` are deleted (folding.prune).

A failed fold (or prune) rolls back whole (nothing is lost: the increments stay
pending), is counted in ``reco_cooccurrence_fold_errors_total`` and retried
with the database section's backoff (``RECO_DB_RETRY_*``). Stop (reco/lifecycle.py): a chunk in progress gets the work part
of the share to commit; cancelled after that, it rolls back and another folder
(or this one, after a restart) takes the same increments.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Awaitable, Callable

import anyio
import anyio.abc

from reco.db.classify import is_transient
from reco.db.pool import Database
from reco.engine import queries
from reco.folder import folding
from reco.lifecycle import Stop, Work
from reco.observability import metrics
from reco.observability.logs import get_logger
from reco.retry import retrying
from reco.settings import FolderSettings

log = get_logger("reco.folder")
_Pass = Callable[[int, int, Work], Awaitable[None]]
IDLE_FACTOR = 16  # the longest wait between two passes over an empty table, in intervals


class CooccurrenceFolder:
    name = "cooccurrence-folder"

    def __init__(self, settings: FolderSettings, database: Database) -> None:
        self.settings = settings
        self.database = database
        self._stop = Stop()  # the supervisor's, from run()
        # per part: when the next prune pass is due (monotonic), and the page it resumes at
        self._prune_due: dict[int, float] = defaultdict(float)
        self._prune_from: dict[int, int] = defaultdict(int)
        self._folded: dict[int, int] = defaultdict(int)  # per part: rows of the last pass
        self._wakes: dict[int, anyio.Event] = {}  # per part: set by wake()

    def wake(self) -> None:
        """Increments were committed: end any idle backoff (sync: a listener callback)."""
        for event in self._wakes.values():
            event.set()

    async def run(self, *, task_status: anyio.abc.TaskStatus[None], stop: Stop) -> None:
        self._stop = stop
        task_status.started()
        parts = self.settings.parts
        async with anyio.create_task_group() as tg:
            for part in range(parts):
                tg.start_soon(self._fold_loop, part, parts)

    async def _fold_loop(self, part: int, parts: int) -> None:
        with self._stop.work() as work:  # on stop: ends after the chunk in hand
            idle = 0  # passes in a row that folded nothing
            while not self._stop.requested:
                # before the pass: a commit from now on ends the backoff after it
                self._wakes[part] = woken = anyio.Event()
                self._folded[part] = 0
                await self._retrying(self._fold_once, part, parts, work)
                idle = 0 if self._folded[part] else idle + 1
                if self.settings.weight_floor > 0 and time.monotonic() >= self._prune_due[part]:
                    await self._retrying(self._prune_once, part, parts, work)
                with self._stop.idle():
                    interval = self.settings.interval
                    await anyio.sleep(interval)
                    backoff = interval * min(2 ** min(idle, 16), IDLE_FACTOR)
                    if backoff > interval and not woken.is_set():
                        with anyio.move_on_after(backoff - interval):
                            await woken.wait()

    async def _retrying(self, once: _Pass, part: int, parts: int, work: Work) -> None:
        retry = self.database.settings
        # Transient errors only: the input (committed increments) is ours and validated,
        # so anything else is a bug, and it stops the process rather than spin.
        async for attempt in retrying(
            is_transient, initial=retry.retry_initial, maximum=retry.retry_max
        ):
            with attempt:
                await once(part, parts, work)

    async def _fold_once(self, part: int, parts: int, work: Work) -> None:
        """One pass over the increments' pages, chunk by chunk (a transaction each)."""
        async with self.database.connection(background=True) as conn:
            size = await folding.table_blocks(conn)
        for first, blocks in folding.chunks(size, self.settings.chunk_blocks):
            if self._stop.requested:
                return
            with work.in_hand():
                if not await self._fold_chunk(part, parts, first, blocks):
                    return

    async def _fold_chunk(self, part: int, parts: int, first: int, blocks: int) -> bool:
        """Fold one chunk; False when another instance is folding this part."""
        began = time.perf_counter()
        try:
            async with self.database.connection(background=True) as conn, conn.transaction():
                folded = await folding.fold(
                    conn, statement_timeout=self.settings.timeout,
                    part=part, parts=parts, first_block=first, blocks=blocks,
                )  # fmt: skip
        except Exception as exc:
            metrics.cooccurrence_fold_errors.inc({})
            log.warning("co-occurrence fold failed; retrying", part=part, error=repr(exc))
            raise
        if folded is None:
            return False  # another instance is folding
        metrics.cooccurrence_folds.inc({"part": str(part)})
        if folded:
            self._folded[part] += folded
            metrics.cooccurrence_folded.add({}, folded)
            metrics.cooccurrence_fold_duration.observe({}, time.perf_counter() - began)
            log.debug("co-occurrence folded", rows=folded, first_block=first)
        return True

    async def _prune_once(self, part: int, parts: int, work: Work) -> None:
        """One prune pass over ``item_cooccurrence``'s pages, chunk by chunk (a transaction
        each); a stop or a busy part ends it early, and the next turn resumes there."""
        async with self.database.connection(background=True) as conn:
            size = await folding.table_blocks(conn, "item_cooccurrence")
            now = await queries.prune_instant(conn)
        below = folding.prune_below(self.settings.weight_floor, now)
        for first, blocks in folding.chunks(size, self.settings.chunk_blocks):
            if first < self._prune_from[part]:
                continue
            if self._stop.requested:
                return
            with work.in_hand():
                if not await self._prune_chunk(part, parts, first, blocks, below):
                    return  # another instance is at this part: resume here next turn
            self._prune_from[part] = first + blocks
        self._prune_from[part] = 0
        self._prune_due[part] = time.monotonic() + self.settings.prune_interval

    async def _prune_chunk(
        self, part: int, parts: int, first: int, blocks: int, below: float
    ) -> bool:
        """Prune one chunk; False when another instance is folding this part."""
        try:
            async with self.database.connection(background=True) as conn, conn.transaction():
                pruned = await folding.prune(
                    conn, below=below, statement_timeout=self.settings.timeout,
                    part=part, parts=parts, first_block=first, blocks=blocks,
                )  # fmt: skip
        except Exception as exc:
            metrics.cooccurrence_fold_errors.inc({})
            log.warning("co-occurrence prune failed; retrying", part=part, error=repr(exc))
            raise
        if pruned is None:
            return False
        if pruned:
            metrics.cooccurrence_pruned.add({}, pruned)
            log.info("co-occurrence pairs pruned", pairs=pruned, part=part, first_block=first)
        return True
