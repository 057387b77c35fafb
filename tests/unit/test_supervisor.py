"""The supervisor with fake components, on both anyio backends."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import anyio
import pytest

from reco.errors import StartupError
from reco.lifecycle import Component
from reco.supervisor import DEFAULT_SHARES_TOTAL, EXIT_CRASHED, EXIT_OK, Supervisor
from tests.support.fakes import FakeComponent
from tests.support.logs import Logs, captured_logs

pytestmark = pytest.mark.anyio

BOUND = 5.0  # generous upper bound for things that should take milliseconds
Journal = list[tuple[str, str]]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def journal() -> Journal:
    return []


@pytest.fixture
def logs() -> Iterator[Logs]:
    with captured_logs() as captured:
        yield captured


def supervisor(
    components: Sequence[Component], *, startup: float = BOUND, shutdown: float = BOUND,
    journal: Journal | None = None,
) -> Supervisor:  # fmt: skip
    def on_stopping() -> None:
        if journal is not None:
            journal.append(("not ready", "-"))

    return Supervisor(
        components, startup_timeout=startup, shutdown_timeout=shutdown,
        on_stopping=on_stopping, handle_signals=False,
    )  # fmt: skip


async def stop_timed(sup: Supervisor) -> float:
    """Run ``sup`` until started, request the stop; seconds from the request to the end."""
    async with anyio.create_task_group() as tg:
        tg.start_soon(sup.run)
        with anyio.fail_after(BOUND):
            await sup.wait_started()
        began = anyio.current_time()
        sup.request_stop()
    return anyio.current_time() - began


def of_kind(journal: Journal, kind: str) -> list[str]:
    return [name for what, name in journal if what == kind]


class TestStartAndStop:
    async def test_starts_in_order_and_stops_in_reverse(self, journal: Journal) -> None:
        """Components start in the given order and stop newest first, exit 0."""
        parts = [FakeComponent(n, journal) for n in ("a", "b", "c")]
        sup = supervisor(parts, journal=journal)
        async with anyio.create_task_group() as tg:
            statuses: list[int] = []

            async def run() -> None:
                statuses.append(await sup.run())

            tg.start_soon(run)
            with anyio.fail_after(BOUND):
                await sup.wait_started()
            assert of_kind(journal, "start") == ["a", "b", "c"]
            sup.request_stop()
        assert statuses == [EXIT_OK]
        assert of_kind(journal, "stopped") == ["c", "b", "a"]
        assert journal.index(("not ready", "-")) < journal.index(("stop requested", "c"))

    async def test_stop_drains_within_budget(self, journal: Journal) -> None:
        """A component that honours its stop returns by itself; nothing is cancelled."""
        sup = supervisor([FakeComponent("a", journal)], shutdown=BOUND)
        statuses: list[int] = []
        with anyio.fail_after(BOUND):
            async with anyio.create_task_group() as tg:

                async def run() -> None:
                    statuses.append(await sup.run())

                tg.start_soon(run)
                await sup.wait_started()
                sup.request_stop()
        assert statuses == [EXIT_OK]
        assert of_kind(journal, "stopped") == ["a"]
        assert of_kind(journal, "cancelled") == []

    async def test_stop_requested_before_run_starts_nothing(self, journal: Journal) -> None:
        """A stop requested before run() starts no component and exits 0."""
        sup = supervisor([FakeComponent("a", journal)])
        sup.request_stop()
        with anyio.fail_after(BOUND):
            assert await sup.run() == EXIT_OK
        assert journal == []

    async def test_stubborn_component_is_cancelled_when_budget_is_spent(
        self, journal: Journal
    ) -> None:
        """One that ignores its stop is cancelled at the end of its share, the rest stop."""
        parts = [FakeComponent("a", journal), FakeComponent("b", journal, ignore_stop=True)]
        elapsed = await stop_timed(supervisor(parts, shutdown=0.2))
        assert of_kind(journal, "cancelled") == ["b"]
        assert of_kind(journal, "stopped") == ["a"]
        share = 0.2 * DEFAULT_SHARES_TOTAL / 2
        assert share * 0.9 <= elapsed < BOUND

    async def test_stop_during_start_up_abandons_it(self, journal: Journal) -> None:
        """A stop request while a component is starting cancels that start, stops the rest."""
        parts = [FakeComponent("a", journal), FakeComponent("b", journal, hang_start=True)]
        sup = supervisor(parts, startup=60)
        statuses: list[int] = []
        async with anyio.create_task_group() as tg:

            async def run() -> None:
                statuses.append(await sup.run())

            tg.start_soon(run)
            with anyio.fail_after(BOUND):
                while ("start", "b") not in journal:
                    await anyio.wait_all_tasks_blocked()
            sup.request_stop()
        assert statuses == [EXIT_OK]
        assert of_kind(journal, "cancelled") == ["b"]
        assert of_kind(journal, "stopped") == ["a"]

    async def test_no_task_left_behind(self, journal: Journal) -> None:
        """After run() returns, the same tasks run as before it started."""
        before = len(anyio.get_running_tasks())
        parts = [FakeComponent(n, journal) for n in ("a", "b")]
        sup = supervisor(parts)
        async with anyio.create_task_group() as tg:
            tg.start_soon(sup.run)
            with anyio.fail_after(BOUND):
                await sup.wait_started()
            assert len(anyio.get_running_tasks()) > before
            sup.request_stop()
        assert len(anyio.get_running_tasks()) == before

    async def test_cancelling_the_caller_cancels_every_component(self, journal: Journal) -> None:
        """Cancelling the scope around run() ends it promptly with every component cancelled."""
        parts = [FakeComponent(n, journal) for n in ("a", "b")]
        sup = supervisor(parts)
        with anyio.fail_after(BOUND):
            async with anyio.create_task_group() as tg:
                tg.start_soon(sup.run)
                await sup.wait_started()
                tg.cancel_scope.cancel()
        assert sorted(of_kind(journal, "cancelled")) == ["a", "b"]


class TestFailedStart:
    async def test_exception_aborts_start_up(self, journal: Journal, logs: Logs) -> None:
        """A start that raises stops the started ones in reverse and raises StartupError."""
        parts = [
            FakeComponent("a", journal), FakeComponent("b", journal),
            FakeComponent("c", journal, fail_start=ValueError("no config")),
            FakeComponent("d", journal),
        ]  # fmt: skip
        with anyio.fail_after(BOUND), pytest.raises(StartupError, match="c failed to start"):
            await supervisor(parts).run()
        assert of_kind(journal, "start") == ["a", "b", "c"]
        assert of_kind(journal, "stopped") == ["b", "a"]
        failed = [e for e in logs if e["event"] == "component failed to start"]
        assert failed[0]["component"] == "c"

    async def test_slow_start_times_out(self, journal: Journal) -> None:
        """A start that exceeds the start-up deadline is cancelled and aborts start-up."""
        parts = [FakeComponent("a", journal), FakeComponent("b", journal, hang_start=True)]
        with (
            anyio.fail_after(BOUND),
            pytest.raises(StartupError, match=r"b did not start within 0\.2 s"),
        ):
            await supervisor(parts, startup=0.2).run()
        assert of_kind(journal, "cancelled") == ["b"]
        assert of_kind(journal, "stopped") == ["a"]

    async def test_start_raising_timeout_error_is_a_failure_not_a_timeout(
        self, journal: Journal
    ) -> None:
        """A component's own TimeoutError is reported as its failure, not as the deadline."""
        parts = [FakeComponent("a", journal, fail_start=TimeoutError("dns"))]
        with anyio.fail_after(BOUND), pytest.raises(StartupError, match="a failed to start"):
            await supervisor(parts, startup=60).run()

    async def test_crash_while_later_ones_start_aborts_at_once(self, journal: Journal) -> None:
        """A started component that crashes while another is starting aborts start-up now."""
        a = FakeComponent("a", journal)
        parts = [a, FakeComponent("b", journal, hang_start=True)]
        sup = supervisor(parts, startup=60)
        expected = pytest.RaisesGroup(pytest.RaisesExc(StartupError, match="a stopped during"))
        with anyio.fail_after(BOUND), expected:
            async with anyio.create_task_group() as tg:

                async def crash_a_when_b_starts() -> None:
                    while ("start", "b") not in journal:
                        await anyio.wait_all_tasks_blocked()
                    a.crash()

                tg.start_soon(crash_a_when_b_starts)
                await sup.run()
        assert of_kind(journal, "cancelled") == ["b"]


class TestCrash:
    async def test_crash_stops_the_rest_in_order(self, journal: Journal, logs: Logs) -> None:
        """A crash after start-up stops the others newest first; exit status is non-zero."""
        parts = [FakeComponent(n, journal) for n in ("a", "b", "c")]
        sup = supervisor(parts)
        with anyio.fail_after(BOUND):
            async with anyio.create_task_group() as tg:
                statuses: list[int] = []

                async def run() -> None:
                    statuses.append(await sup.run())

                tg.start_soon(run)
                await sup.wait_started()
                parts[1].crash()
        assert statuses == [EXIT_CRASHED]
        assert of_kind(journal, "stopped") == ["c", "a"]
        crashed = [e for e in logs if e["event"] == "component crashed"]
        assert crashed[0]["component"] == "b"

    async def test_clean_return_without_stop_counts_as_crash(self, journal: Journal) -> None:
        """A component whose run() returns on its own brings the process down, non-zero."""
        a = FakeComponent("a", journal)
        sup = supervisor([a, FakeComponent("b", journal)])
        with anyio.fail_after(BOUND):
            async with anyio.create_task_group() as tg:
                statuses: list[int] = []

                async def run() -> None:
                    statuses.append(await sup.run())

                tg.start_soon(run)
                await sup.wait_started()
                a.stop.request(1.0)  # behind the supervisor's back
        assert statuses == [EXIT_CRASHED]
        assert of_kind(journal, "stopped") == ["a", "b"]


class TestShares:
    def test_shares_must_add_up_to_less_than_the_whole(self, journal: Journal) -> None:
        parts = [FakeComponent("a", journal), FakeComponent("b", journal)]
        with pytest.raises(ValueError, match="add up to 1"):
            Supervisor(parts, startup_timeout=1, shutdown_timeout=1, shares={"a": 0.5, "b": 0.5})

    def test_every_component_needs_a_share(self, journal: Journal) -> None:
        parts = [FakeComponent("a", journal), FakeComponent("b", journal)]
        with pytest.raises(ValueError, match="no shutdown share for b"):
            Supervisor(parts, startup_timeout=1, shutdown_timeout=1, shares={"a": 0.5})

    async def test_an_overrun_is_cancelled_at_its_own_deadline_and_named(
        self, journal: Journal, logs: Logs
    ) -> None:
        """A stubborn component loses only its own share; the next one still gets all of its
        own, and the log names the one that overran."""
        parts = [
            FakeComponent("first", journal),
            FakeComponent("stubborn", journal, ignore_stop=True),
        ]
        sup = Supervisor(
            parts, startup_timeout=BOUND, shutdown_timeout=1.0, handle_signals=False,
            shares={"first": 0.5, "stubborn": 0.2},
        )  # fmt: skip
        elapsed = await stop_timed(sup)
        assert of_kind(journal, "cancelled") == ["stubborn"]
        assert of_kind(journal, "stopped") == ["first"]
        assert 0.18 <= elapsed < 0.7  # the stubborn one's share, not the whole budget
        overran = [
            e for e in logs if e["event"] == "component overran its shutdown share; cancelled"
        ]
        assert [e["component"] for e in overran] == ["stubborn"]
        stopped = {e["component"]: e["how"] for e in logs if e["event"] == "component stopped"}
        assert stopped == {"stubborn": "cancelled", "first": "stopped"}
