"""Wait for a condition that has no event to wait on, with a deadline."""

from __future__ import annotations

from collections.abc import Callable

import anyio

POLL = 0.02


async def wait_until(condition: Callable[[], bool], *, deadline: float) -> float:
    """Poll ``condition`` until true; return the seconds it took.

    Raises TimeoutError after ``deadline`` seconds.
    """
    began = anyio.current_time()
    with anyio.fail_after(deadline):
        while not condition():  # noqa: ASYNC110 - polling state that offers no event
            await anyio.sleep(POLL)
    return anyio.current_time() - began
