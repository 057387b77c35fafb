"""Run components outside the supervisor, the way the supervisor does (reco/lifecycle.py).

``await start(tg, component)`` starts it with a :class:`Stop` of its own;
``request_stop(component, budget)`` is what the supervisor does at shutdown
(phase one now, the work in hand cut at ``WORK_FRACTION`` of ``budget``).
"""

from __future__ import annotations

import functools
import weakref

import anyio.abc

from reco.lifecycle import Component, Stop

DEFAULT_BUDGET = 10.0  # seconds: a share of the default RECO_SHUTDOWN_TIMEOUT and then some

_stops: weakref.WeakKeyDictionary[Component, Stop] = weakref.WeakKeyDictionary()


def stop_of(component: Component) -> Stop:
    """The :class:`Stop` a component was started with (made on first use)."""
    return _stops.setdefault(component, Stop())


async def start(tg: anyio.abc.TaskGroup, component: Component) -> Stop:
    """Start ``component`` in ``tg`` (``tg.start``: returns once it is ready)."""
    stop = stop_of(component)
    await tg.start(functools.partial(component.run, stop=stop))
    return stop


async def run(component: Component, *, task_status: anyio.abc.TaskStatus[None]) -> None:
    """``component.run`` with its :class:`Stop`, for callers that wrap the run themselves."""
    await component.run(task_status=task_status, stop=stop_of(component))


def request_stop(component: Component, budget: float = DEFAULT_BUDGET) -> None:
    stop_of(component).request(budget)
