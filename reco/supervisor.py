"""The supervisor: starts components in order, stops them in reverse, bounded.

It depends on anyio alone (its tests run on asyncio and trio).

Start-up: each component is started with ``await tg.start(...)`` in the order
given; it reports ready by calling ``task_status.started()``. The whole
start-up has a deadline. A component that fails, times out, or an
already-started one that crashes meanwhile, aborts start-up: the ones already
running are stopped in reverse order and the supervisor raises
:class:`~reco.errors.StartupError`. A stop request (or signal) during start-up
abandons the start in progress and stops what had started, cleanly.

Shutdown, on the first SIGTERM/SIGINT, on :meth:`Supervisor.request_stop` or
when a component crashes:

1. readiness turns false at once (``on_stopping``);
2. components are stopped one at a time, newest first, each within its share
   of ``shutdown_timeout`` (``shares``, declared in reco/service.py; they add
   up to less than the whole by construction). Stopping one is the contract
   of reco/lifecycle.py: its :class:`~reco.lifecycle.Stop` is requested
   (phase one: idle waits end at once, the work in hand goes on), its work in
   hand is cancelled at ``work_deadline`` (phase two), and whatever is still
   running at the end of the share is cancelled and logged by name.

A second signal cancels everything at once. :meth:`Supervisor.run` returns
the process exit status: 0 for a clean stop, 1 after a crash, 130 when forced.
"""

from __future__ import annotations

import math
import signal
from collections.abc import Callable, Mapping, Sequence

import anyio
import anyio.abc
import attrs

from reco.errors import StartupError
from reco.lifecycle import Component, Stop
from reco.observability.logs import get_logger

log = get_logger("reco.supervisor")

EXIT_OK = 0
EXIT_CRASHED = 1
EXIT_FORCED = 130


# Without declared shares, the components split this much of the budget evenly.
DEFAULT_SHARES_TOTAL = 0.9


def check_shares(components: Sequence[Component], shares: Mapping[str, float]) -> None:
    """Every component has a share in (0, 1) and together they stay below the whole."""
    names = [c.name for c in components]
    missing = sorted(set(names) - set(shares))
    if missing:
        raise ValueError(f"no shutdown share for {', '.join(missing)}")
    bad = sorted(n for n in names if not 0 < shares[n] < 1)
    if bad:
        raise ValueError(f"shutdown shares must be in (0, 1): {', '.join(bad)}")
    total = math.fsum(shares[n] for n in names)
    if total >= 1:
        raise ValueError(f"shutdown shares add up to {total:g}, not below 1")


@attrs.define(eq=False)
class _Runner:
    """Runs one component in its own cancel scope and records how it ended."""

    component: Component
    stop: Stop = attrs.field(factory=Stop)
    scope: anyio.CancelScope = attrs.field(factory=anyio.CancelScope)
    done: anyio.Event = attrs.field(factory=anyio.Event)
    started: bool = False
    crashed: Exception | None = None

    async def run(
        self, on_exit: Callable[[_Runner], None], *, task_status: anyio.abc.TaskStatus[None]
    ) -> None:
        def started(value: None = None) -> None:
            self.started = True
            task_status.started()

        try:
            with self.scope:
                await self.component.run(task_status=_Started(started), stop=self.stop)
        except Exception as exc:
            if not self.started:
                raise  # tg.start() reports it as a failed start
            self.crashed = exc  # reported by on_exit; the supervisor stops the rest in order
        finally:
            self.done.set()
            on_exit(self)


@attrs.frozen
class _Started:
    """A task status that tells the runner when its component is ready."""

    _started: Callable[[None], None]

    def started(self, value: None = None) -> None:
        self._started(value)


@attrs.define(eq=False)
class Supervisor:
    """Runs components under one task group; see the module docstring."""

    components: Sequence[Component]
    startup_timeout: float
    shutdown_timeout: float
    on_stopping: Callable[[], None] = lambda: None
    handle_signals: bool = True
    # each component's fraction of shutdown_timeout, by name; default: an even split
    shares: Mapping[str, float] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        if not self.shares and self.components:
            even = DEFAULT_SHARES_TOTAL / len(self.components)
            self.shares = {c.name: even for c in self.components}
        check_shares(self.components, self.shares)

    _stop: anyio.Event = attrs.field(factory=anyio.Event, init=False)
    _started: anyio.Event = attrs.field(factory=anyio.Event, init=False)
    _starting: anyio.CancelScope | None = attrs.field(default=None, init=False)
    _runners: list[_Runner] = attrs.field(factory=list, init=False)
    _status: int = attrs.field(default=EXIT_OK, init=False)
    _stopping: bool = attrs.field(default=False, init=False)
    _early_exit: _Runner | None = attrs.field(default=None, init=False)

    def request_stop(self) -> None:
        """Begin the graceful shutdown (or abandon a start-up in progress)."""
        self._stop.set()
        if self._starting is not None:
            self._starting.cancel()

    async def wait_started(self) -> None:
        """Return once every component has reported ready."""
        await self._started.wait()

    async def run(self) -> int:
        """Run every component until asked to stop; return the exit status.

        Raises :class:`~reco.errors.StartupError` (after stopping what had
        started) when a component fails to start.
        """
        failure: StartupError | None = None
        async with anyio.create_task_group() as tg:
            if self.handle_signals:
                await tg.start(self._watch_signals, tg.cancel_scope)
            try:
                await self._start_all(tg)
            except StartupError as exc:
                failure = exc
                self._stop.set()
            await self._stop.wait()
            await self._stop_all()
            tg.cancel_scope.cancel()  # the signal watcher
        if failure is not None:
            raise failure
        return self._status

    async def _start_all(self, tg: anyio.abc.TaskGroup) -> None:
        began = anyio.current_time()
        deadline = began + self.startup_timeout
        with anyio.CancelScope() as self._starting:
            for component in self.components:
                if self._stop.is_set():
                    self._starting.cancel()
                    break
                await self._start_one(tg, component, deadline)
        if self._early_exit is not None:
            name = self._early_exit.component.name
            raise StartupError(f"{name} stopped during start-up: {self._early_exit.crashed!r}")
        if self._starting.cancel_called:
            log.info("stop requested during start-up")
            return
        log.info(
            "started",
            components=[c.name for c in self.components],
            duration=round(anyio.current_time() - began, 3),
        )
        self._started.set()

    async def _start_one(
        self, tg: anyio.abc.TaskGroup, component: Component, deadline: float
    ) -> None:
        runner = _Runner(component)
        began = anyio.current_time()
        try:
            with anyio.move_on_after(remaining(deadline)) as timeout:
                await tg.start(runner.run, self._on_exit)
        except Exception as exc:
            log.exception("component failed to start", component=component.name)
            raise StartupError(f"{component.name} failed to start: {exc!r}") from exc
        if timeout.cancelled_caught:
            log.error(
                "component did not start in time",
                component=component.name,
                startup_timeout=self.startup_timeout,
            )
            raise StartupError(f"{component.name} did not start within {self.startup_timeout:g} s")
        if runner.started:
            self._runners.append(runner)
            log.info(
                "component started",
                component=component.name,
                duration=round(anyio.current_time() - began, 3),
            )

    def _on_exit(self, runner: _Runner) -> None:
        """A component's run() returned: unexpected unless we are stopping it."""
        if self._stopping or runner not in self._runners:
            return
        if runner.crashed is not None:
            log.error(
                "component crashed",
                component=runner.component.name,
                error=repr(runner.crashed),
                exc_info=runner.crashed,
            )
        else:
            log.error("component exited unexpectedly", component=runner.component.name)
        self._status = EXIT_CRASHED
        if not self._started.is_set() and self._early_exit is None:
            self._early_exit = runner
        self.request_stop()

    async def _stop_all(self) -> None:
        """Each component in turn, newest first, within its share of the budget."""
        self._stopping = True
        began = anyio.current_time()
        self.on_stopping()
        log.info("shutdown phase", phase="not-ready")
        deadline = began + self.shutdown_timeout
        log.info("shutdown phase", phase="drain", shutdown_timeout=self.shutdown_timeout)
        with anyio.CancelScope(shield=True):
            for runner in reversed(self._runners):
                await self._stop_one(runner, deadline)
        log.info(
            "shutdown finished",
            duration=round(anyio.current_time() - began, 3),
            exit_status=self._status,
        )

    async def _stop_one(self, runner: _Runner, deadline: float) -> None:
        name = runner.component.name
        began = anyio.current_time()
        budget = min(self.shares[name] * self.shutdown_timeout, remaining(deadline))
        log.info("component stopping", component=name, budget=round(budget, 3))
        runner.stop.request(budget)
        with anyio.move_on_after(budget):
            await runner.done.wait()
        how = "stopped"
        if not runner.done.is_set():
            log.warning("component overran its shutdown share; cancelled", component=name,
                        budget=round(budget, 3))  # fmt: skip
            how = "cancelled"
            runner.scope.cancel()
            await runner.done.wait()
        if runner.crashed is not None and self._status == EXIT_OK:
            self._status = EXIT_CRASHED
        log.info(
            "component stopped",
            component=name,
            how=how,
            duration=round(anyio.current_time() - began, 3),
        )

    async def _watch_signals(
        self, root: anyio.CancelScope, *, task_status: anyio.abc.TaskStatus[None]
    ) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            task_status.started()
            async for signum in signals:
                name = signal.Signals(signum).name
                if not self._stop.is_set():
                    log.info("signal received; stopping", signal=name)
                    self.request_stop()
                    continue
                log.warning("second signal; cancelling everything now", signal=name)
                self._status = EXIT_FORCED
                for runner in self._runners:
                    runner.scope.cancel()
                root.cancel()
                return


def remaining(deadline: float) -> float:
    """Seconds left until ``deadline`` (anyio clock), never negative."""
    return max(0.0, deadline - anyio.current_time()) if math.isfinite(deadline) else math.inf
