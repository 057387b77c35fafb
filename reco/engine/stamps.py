"""Notified version stamps: a kept list served without a database round trip.

The read path (reco/engine/recommender.py) serves a user's kept list
(reco/engine/lists.py) only while the user's version stamp is the one the
list was scored at. Reading the stamp is a round trip per request, most of a
kept list's latency. This component lets an instance skip it, exactly as
long as it can vouch that the stamp has not moved:

- ``apply_events`` (reco/engine/ingest.py), the writer of ``user_history``,
  sends ``NOTIFY reco_user_versions, '<user id>'`` for every user of a batch,
  in the batch's own transaction: PostgreSQL delivers it to every listening
  session once that transaction has committed (to none if it rolls back);
- each instance listens on one dedicated connection (never one of the pool's)
  and, for each notification, drops what it vouched for that user
  (``on_change``);
- a stamp read (the pull, as before) vouches for the user when it began after
  the current LISTEN took effect (the ``epoch``) and no notification for the
  user arrived while it ran (:meth:`mark`, :meth:`vouches`);
- a vouched list is served without the pull only while the listener is
  :meth:`current`: connected, and the last answered ping sent at most
  ``PING_DEAD`` ago. A ping's answer comes after the notifications of every
  transaction that committed before it was sent (a listening session sends
  pending notifications between commands, when it goes idle), so a list served unread is at
  most ``PING_DEAD`` stale, and a connection that silently stopped
  delivering, a stalled loop or a lost connection turn into pulls within
  it; a new connection is a new epoch (what was vouched before is pulled
  again).

While the listener is current, a watch committed on any instance shows in
this instance's next list once the notification arrives (milliseconds;
read-after-write is promised within 1 s, tests/integration/
test_read_after_write.py). Nothing here ever makes a list staler than the
pull would: every doubt is a pull. A writer of ``user_history`` that does
not notify (none in reco) would leave other instances' kept lists stale up
to their age bound (lists.py, MAX_AGE).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import anyio
import anyio.abc
import asyncpg

from reco.db import pool
from reco.db.classify import is_transient
from reco.lifecycle import Stop
from reco.observability.logs import get_logger
from reco.retry import retrying
from reco.settings import DatabaseSettings

log = get_logger("reco.engine.stamps")

CHANNEL = "reco_user_versions"
PING_INTERVAL = 0.2  # seconds between pings of the listening connection
# Not current (pull) once the last answered ping was sent this long ago: a list served
# unread is then at most this stale (every commit before that ping's send was notified
# before its answer), within read-after-write's 1 s.
PING_DEAD = 0.75
PING_TIMEOUT = 5.0  # a ping unanswered this long: reconnect
HORIZON = 5.0  # a stamp read older than this never vouches (notifications kept that long)

Mark = tuple[int, int, float]  # epoch, notifications so far, monotonic time of the mark


class StampWatch:
    """LISTEN on ``CHANNEL``; tells the read path when a stamp pull can be skipped."""

    name = "user-stamps"

    def __init__(self, settings: DatabaseSettings, on_change: Callable[[str], None]) -> None:
        self.settings = settings
        self.on_change = on_change
        self.epoch = 0  # LISTENs that took effect so far
        self._live = False
        self._seq = 0  # notifications received so far
        self._last: dict[str, tuple[int, float]] = {}  # user -> (seq, when) of its last one
        self._pinged_at = -float("inf")

    def current(self, epoch: int) -> bool:
        """True while the listener of ``epoch`` is connected and recently answered."""
        return (self._live and epoch == self.epoch
                and time.monotonic() - self._pinged_at < PING_DEAD)  # fmt: skip

    def mark(self) -> Mark | None:
        """Taken before a stamp read: what :meth:`vouches` checks after it (None: no listener)."""
        if not self.current(self.epoch):
            return None
        return self.epoch, self._seq, time.monotonic()

    def vouches(self, mark: Mark | None, user_id: str) -> int | None:
        """The epoch a stamp read begun at ``mark`` vouches for ``user_id`` in, else None:
        no notification for the user arrived since, and the listener is still current."""
        if mark is None or not self.current(mark[0]):
            return None
        if time.monotonic() - mark[2] >= HORIZON:
            return None
        last = self._last.get(user_id)
        if last is not None and last[0] > mark[1]:
            return None
        return mark[0]

    def _notified(self, conn: object, pid: int, channel: str, payload: object) -> None:
        user_id = str(payload)
        self._seq += 1
        now = time.monotonic()
        self._last[user_id] = (self._seq, now)
        self.on_change(user_id)
        if len(self._last) > 10_000:  # forget what no stamp read in flight can still need
            self._last = {u: e for u, e in self._last.items() if now - e[1] < HORIZON}

    async def run(self, *, task_status: anyio.abc.TaskStatus[None], stop: Stop) -> None:
        task_status.started()  # without a listener every request pulls: never a wait for it
        retry = self.settings
        while not stop.requested:
            with stop.idle():
                async for attempt in retrying(
                    is_transient, initial=retry.retry_initial, maximum=retry.retry_max
                ):
                    with attempt:
                        await self._listen()

    async def _listen(self) -> None:
        """One connection: LISTEN, then ping until it fails (raises the failure)."""
        conn: asyncpg.Connection | None = None
        listening = False
        try:
            conn = await pool.connect(self.settings, "reco-stamps")
            conn.add_termination_listener(self._lost)
            await conn.add_listener(CHANNEL, self._notified)
            self.epoch += 1
            self._pinged_at = time.monotonic()
            self._live = listening = True
            log.debug("listening for user stamps", epoch=self.epoch)
            while True:
                await anyio.sleep(PING_INTERVAL)
                sent = time.monotonic()
                with anyio.fail_after(PING_TIMEOUT):  # TimeoutError: transient, reconnect
                    await conn.execute("SELECT 1")
                self._pinged_at = sent
        except Exception as exc:
            if listening:  # once per lost connection; failed reconnects are the pool's to report
                log.warning("user stamps: listener lost; reading stamps", error=repr(exc))
            raise
        finally:
            self._live = False
            if conn is not None:
                conn.terminate()

    def _lost(self, conn: object) -> None:
        self._live = False
