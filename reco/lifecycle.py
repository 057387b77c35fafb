"""The component contract: how every part of reco is started and stopped.

A component is an object with a ``name`` and::

    async def run(self, *, task_status: anyio.abc.TaskStatus[None], stop: Stop) -> None

``run`` calls ``task_status.started()`` once it is ready, then works until
``stop`` is requested, finishes the work in hand, cleans up and returns. The
supervisor (reco/supervisor.py) owns every :class:`Stop`; a component never
invents its own drain machinery, it only says which of its awaits are idle
and which are work:

- ``with stop.idle():`` around waits, polls and sleeps: cancelled at once
  when the stop is requested (phase one);
- ``with stop.work() as work:`` around a loop of work, and ``with
  work.in_hand():`` around each unit of it (a batch being stored or
  published, with its retries): on stop the work scope ends at once if
  nothing is in hand, else when the unit in hand is done, and at the latest
  at ``stop.work_deadline`` (phase two). Backoff sleeps between units are
  thereby idle too;
- ``with stop.cleanup(bound):`` around closing clients and connections:
  shielded, and bounded by ``bound`` and by ``stop.deadline``, the end of
  the component's share of ``RECO_SHUTDOWN_TIMEOUT``.

The smallest complete component::

    class Ticker:
        name = "ticker"

        async def run(self, *, task_status, stop):
            task_status.started()
            with stop.work() as work:
                while True:
                    with work.in_hand():
                        await do_one_unit_of_work()
                    with stop.idle():
                        await anyio.sleep(1)

A component still running at ``stop.deadline`` has overrun its share: the
supervisor cancels it there and logs it by name.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Protocol

import anyio
import anyio.abc

# The part of a component's share its work in hand may use; the rest is for cleanup
# (leaving the consumer group, closing producers and connections).
WORK_FRACTION = 0.75


class Work:
    """A work scope (see :meth:`Stop.work`)."""

    def __init__(self, stop: Stop) -> None:
        self._stop = stop
        self._in_hand = 0
        self.scope = anyio.CancelScope()

    @contextlib.contextmanager
    def in_hand(self) -> Iterator[None]:
        """One unit of work: a stop lets it finish (until ``work_deadline``)."""
        self._in_hand += 1
        try:
            yield
        finally:
            self._in_hand -= 1
            if self._stop.requested and not self._in_hand:
                self.scope.cancel()

    def stopping(self) -> None:
        if self._in_hand:
            self.scope.deadline = min(self.scope.deadline, self._stop.work_deadline)
        else:
            self.scope.cancel()


class Stop:
    """One component's view of the supervisor's stop request (see the module docstring)."""

    def __init__(self) -> None:
        self._requested = anyio.Event()
        self._idle: set[anyio.CancelScope] = set()
        self._work: set[Work] = set()
        self.deadline = math.inf  # the end of the share (anyio clock)
        self.work_deadline = math.inf

    @property
    def requested(self) -> bool:
        return self._requested.is_set()

    async def wait(self) -> None:
        """Return once the stop is requested."""
        await self._requested.wait()

    def request(self, budget: float) -> None:
        """Phase one now; the work in hand ends within ``WORK_FRACTION`` of ``budget``
        seconds, everything within ``budget`` (the supervisor calls this; so do tests)."""
        if self.requested:
            return
        now = anyio.current_time()
        self.deadline = now + budget
        self.work_deadline = now + budget * WORK_FRACTION
        self._requested.set()
        for scope in self._idle:
            scope.cancel()
        for work in list(self._work):
            work.stopping()

    @contextlib.contextmanager
    def idle(self) -> Iterator[anyio.CancelScope]:
        """A scope cancelled when the stop is requested (at once, if it already is)."""
        with anyio.CancelScope() as scope:
            if self.requested:
                scope.cancel()
            self._idle.add(scope)
            try:
                yield scope
            finally:
                self._idle.discard(scope)

    @contextlib.contextmanager
    def work(self) -> Iterator[Work]:
        """A scope for a loop of work (see the module docstring)."""
        work = Work(self)
        with work.scope:
            self._work.add(work)
            if self.requested:  # work taken up after the stop (a queue drained): bounded
                work.scope.deadline = self.work_deadline
            try:
                yield work
            finally:
                self._work.discard(work)

    @contextlib.contextmanager
    def cleanup(self, bound: float) -> Iterator[anyio.CancelScope]:
        """A shielded scope for closing things, ending after ``bound`` seconds or at the end
        of the share, whichever is first. Cancellation from outside cannot cut it short."""
        deadline = min(anyio.current_time() + bound, self.deadline)
        with anyio.CancelScope(shield=True, deadline=deadline) as scope:
            yield scope


class Component(Protocol):
    """What the supervisor runs (see the module docstring)."""

    name: str

    async def run(self, *, task_status: anyio.abc.TaskStatus[None], stop: Stop) -> None:
        """Start, call ``task_status.started()`` once ready, run until ``stop``."""
