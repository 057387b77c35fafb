"""The stop contract (reco/lifecycle.py): idle scopes, work scopes, cleanup bounds."""

from __future__ import annotations

import anyio
import anyio.lowlevel
import pytest

from reco.lifecycle import WORK_FRACTION, Stop

pytestmark = pytest.mark.anyio

BOUND = 2.0


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_idle_scopes_end_at_once_on_request() -> None:
    stop = Stop()
    with anyio.fail_after(BOUND):
        async with anyio.create_task_group() as tg:

            async def waiting() -> None:
                with stop.idle():
                    await anyio.sleep_forever()

            tg.start_soon(waiting)
            await anyio.wait_all_tasks_blocked()
            stop.request(60)
    with stop.idle() as late:  # entered after the request: cancelled at once
        await anyio.lowlevel.checkpoint()
    assert late.cancelled_caught


async def test_work_in_hand_finishes_then_the_loop_ends() -> None:
    stop = Stop()
    done: list[str] = []
    release = anyio.Event()
    with anyio.fail_after(BOUND):
        async with anyio.create_task_group() as tg:

            async def loop() -> None:
                with stop.work() as work:
                    while True:
                        with work.in_hand():
                            await release.wait()
                            done.append("unit")
                        # cancelled here, once the unit in hand is done after the stop
                        await anyio.lowlevel.checkpoint()

            tg.start_soon(loop)
            await anyio.wait_all_tasks_blocked()
            stop.request(60)
            release.set()
    assert done == ["unit"]


async def test_idle_work_scope_ends_at_once() -> None:
    stop = Stop()
    with anyio.fail_after(BOUND):
        async with anyio.create_task_group() as tg:

            async def loop() -> None:
                with stop.work():
                    await anyio.sleep_forever()  # a backoff sleep between units

            tg.start_soon(loop)
            await anyio.wait_all_tasks_blocked()
            stop.request(60)


async def test_work_in_hand_is_cut_at_the_work_deadline() -> None:
    stop = Stop()
    began = anyio.current_time()
    with anyio.fail_after(BOUND):
        async with anyio.create_task_group() as tg:

            async def loop() -> None:
                with stop.work() as work, work.in_hand():
                    await anyio.sleep_forever()  # never finishes

            tg.start_soon(loop)
            await anyio.wait_all_tasks_blocked()
            stop.request(0.4)
    assert 0.4 * WORK_FRACTION * 0.9 <= anyio.current_time() - began < 0.4


async def test_work_taken_up_after_the_stop_gets_until_the_work_deadline() -> None:
    """A queue drained after the stop (the consumer's queued batches) is not cut at once."""
    stop = Stop()
    stop.request(10)
    with stop.work() as work, work.in_hand():
        await anyio.sleep(0.05)
    assert not work.scope.cancelled_caught


async def test_cleanup_is_shielded_and_bounded_by_the_share() -> None:
    stop = Stop()
    finished: list[str] = []
    with anyio.fail_after(BOUND):
        with anyio.CancelScope() as outer:
            stop.request(0.3)
            outer.cancel()
            with stop.cleanup(60) as scope:
                await anyio.sleep(0.05)  # outer cancellation cannot cut it short
                finished.append("closed")
                await anyio.sleep_forever()  # but the end of the share does
    assert finished == ["closed"]
    assert scope.cancelled_caught
