"""Retrying: one policy for every component, through stamina.

A transient error (the dependency may come back: reco/errors.py) is retried
with exponential backoff and jitter from ``initial`` to ``maximum`` seconds,
for as long as it lasts unless a ``timeout`` or a number of ``attempts``
bounds it; anything else propagates at once. stamina counts the retries
(its instrumentation hooks) and sleeps through anyio, so a cancellation (a
stop's idle scope) ends the backoff at once.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import stamina
from stamina import Attempt


def retrying(
    on: type[Exception] | Callable[[Exception], bool],
    *,
    initial: float,
    maximum: float,
    timeout: float | None = None,
    attempts: int | None = None,
) -> AsyncIterator[Attempt]:
    """``async for attempt in retrying(...): with attempt: ...`` (stamina's retry_context)."""
    return stamina.retry_context(
        on=on, attempts=attempts, timeout=timeout, wait_initial=initial, wait_max=maximum
    )
