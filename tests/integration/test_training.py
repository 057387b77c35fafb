"""`reco train` against the real PostgreSQL, and serving with its model version.

The history goes in through apply_events and the fold (as the consumer and
its folder write it); training reads it back, stores a version, switches it
atomically; the Recommender mixes it with the live co-occurrence.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator

import asyncpg
import pytest

from reco.db.pool import Database
from reco.engine.ingest import apply_events
from reco.engine.recommender import Recommender, algorithm_family
from reco.events import WatchEvent
from reco.folder import folding
from reco.observability.readiness import Readiness
from reco.settings import Settings, evolve
from reco.training import job, queries
from tests.integration.test_recommendations_api import RecordingSink
from tests.support.api import running_api

pytestmark = [pytest.mark.anyio, pytest.mark.integration]

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
CATALOGUE = [*"abcdefghij", "new"]


def ev(minute: int, user: str, item: str) -> WatchEvent:
    return WatchEvent(f"e{minute}-{user}-{item}", user, item, T0 + dt.timedelta(minutes=minute))


def groups() -> list[WatchEvent]:
    """Users watch within one of two groups: a-e or f-j (one item each left out)."""
    events = []
    for n in range(10):
        group = "abcde" if n % 2 else "fghij"
        for k, item in enumerate(c for c in group if c != group[n % 5]):
            events.append(ev(n * 10 + k, f"u{n}", item))
    return events


async def apply(conn: asyncpg.Connection, events: list[WatchEvent]) -> None:
    async with conn.transaction():
        await apply_events(conn, sorted(events, key=lambda e: e.occurred_at))
    async with conn.transaction():
        await folding.fold(conn, statement_timeout=30)


@pytest.fixture
def train_settings(settings: Settings) -> Settings:
    return evolve(settings, recs_cache_ttl=0.0, train_keep_versions=2)


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(database_url)
    try:
        await connection.executemany(
            "INSERT INTO items (item_id, title) VALUES ($1, $2)",
            [(c, f"Title {c}") for c in CATALOGUE],
        )
        await apply(connection, groups())
        yield connection
    finally:
        await connection.close()


@pytest.fixture
async def recommender(train_settings: Settings,
                      conn: asyncpg.Connection) -> AsyncIterator[Recommender]:  # fmt: skip
    database = Database(
        train_settings.database, Readiness(), migrate=train_settings.should_migrate_on_start
    )
    await database.open()
    try:
        yield Recommender(database, train_settings.engine)
    finally:
        await database.aclose()


async def versions(conn: asyncpg.Connection) -> list[tuple[int, bool]]:
    rows = await conn.fetch("SELECT version, active FROM model_versions ORDER BY version")
    return [(r["version"], r["active"]) for r in rows]


class TestTrain:
    async def test_stores_an_active_version_with_window_fit_time_and_figures(
        self, conn: asyncpg.Connection, train_settings: Settings
    ) -> None:
        """One run: an active EASE version, its window, fit time, figures and neighbour rows."""
        result = await job.train(conn, train_settings.training)
        assert result is not None
        row = await conn.fetchrow("SELECT * FROM model_versions")
        assert row is not None
        assert (row["version"], row["active"], row["method"]) == (result.version, True, "ease")
        assert row["trained_from"] == T0
        assert row["trained_to"] == max(e.occurred_at for e in groups())
        assert row["fit_seconds"] >= 0
        assert (row["users"], row["items"], row["watches"]) == (10, 10, 40)
        assert "users" in json.loads(row["figures"])
        neighbours = await conn.fetch(
            "SELECT item_id, neighbours FROM model_neighbours WHERE version = $1", result.version
        )
        lists = {r["item_id"]: set(r["neighbours"]) for r in neighbours}
        assert lists["a"] <= set("bcde")  # the model learned the groups
        assert lists["f"] <= set("ghij")

    async def test_runs_switch_the_active_version_and_prune_old_ones(
        self, conn: asyncpg.Connection, train_settings: Settings
    ) -> None:
        """Three runs, two kept: only the newest is active; the oldest and its rows are gone."""
        made = [await job.train(conn, train_settings.training) for _ in range(3)]
        numbers = [m.version for m in made if m is not None]
        assert await versions(conn) == [(numbers[1], False), (numbers[2], True)]
        left = await conn.fetchval("SELECT count(DISTINCT version) FROM model_neighbours")
        assert left == 2

    async def test_a_written_version_is_not_read_until_switched(
        self, conn: asyncpg.Connection, train_settings: Settings
    ) -> None:
        """Rows of a version being written do not change the active one."""
        first = await job.train(conn, train_settings.training)
        assert first is not None
        half = await queries.insert_version(
            conn, method="ease", window=(None, None), started_at=T0, fit_seconds=0.0,
            users=0, items=0, watches=0, params={}, figures={},
        )  # fmt: skip
        await queries.write_neighbours(conn, half, [("a", ["b"], [1.0])], statement_timeout=5)
        assert await queries.active(conn) == (first.version, "ease")
        await queries.activate(conn, half, keep=5)
        assert await queries.active(conn) == (half, "ease")

    async def test_a_second_trainer_exits_while_one_holds_the_lock(
        self, conn: asyncpg.Connection, train_settings: Settings, database_url: str
    ) -> None:
        """The training lock: a concurrent run stores nothing and exits 0."""
        other = await asyncpg.connect(database_url)
        try:
            assert await queries.try_lock(other)
            assert await job.train_command(train_settings) == 0
            assert await versions(conn) == []
        finally:
            await other.close()
        assert await job.train_command(train_settings) == 0
        assert len(await versions(conn)) == 1

    async def test_an_unreachable_database_exits_1(
        self, train_settings: Settings, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """No traceback, a one-line reason, exit 1 (the CronJob's next run retries)."""
        down = evolve(train_settings, database_url="postgresql://nobody@127.0.0.1:9/none",
                            db_connect_timeout=2.0)  # fmt: skip
        assert await job.train_command(down) == job.EXIT_FAILED
        assert "reco train: cannot connect to PostgreSQL" in capsys.readouterr().err

    async def test_an_empty_history_stores_nothing(self, train_settings: Settings,
                                                   conn: asyncpg.Connection) -> None:  # fmt: skip
        await conn.execute("TRUNCATE user_history")
        assert await job.train(conn, train_settings.training) is None
        assert await versions(conn) == []


class TestServingWithAModel:
    async def test_lists_name_the_version_and_follow_a_switch(
        self, recommender: Recommender, conn: asyncpg.Connection, train_settings: Settings
    ) -> None:
        """``algorithm`` carries the model version used; a new version replaces kept lists."""
        assert (await recommender.for_user("u1", limit=3)).algorithm == "cooccurrence"
        first = await job.train(conn, train_settings.training)
        assert first is not None
        recs = await recommender.for_user("u1", limit=3)
        assert recs.algorithm == f"cooccurrence+ease@v{first.version}"
        assert algorithm_family(recs.algorithm) == "cooccurrence+ease"
        assert {s.item_id for s in recs.items} & set("abcde")  # u1 watched in a-e
        second = await job.train(conn, train_settings.training)
        assert second is not None
        later = await recommender.for_user("u1", limit=3)
        assert later.algorithm == f"cooccurrence+ease@v{second.version}"

    async def test_a_new_item_with_a_few_watches_is_recommended_before_the_next_run(
        self, recommender: Recommender, conn: asyncpg.Connection, train_settings: Settings
    ) -> None:
        """An item the model has never seen, watched by three users right after "a", reaches
        a user who watched "a", with "a" as the reason, while the model stays the same."""
        trained = await job.train(conn, train_settings.training)
        assert trained is not None
        await apply(conn, [e for n in range(3)
                           for e in (ev(500 + n * 2, f"fan{n}", "a"),
                                     ev(501 + n * 2, f"fan{n}", "new"))])  # fmt: skip
        await apply(conn, [ev(600, "reader", "a")])
        recs = await recommender.for_user("reader", limit=5)
        assert "new" in [s.item_id for s in recs.items]
        reason = next(s.reason for s in recs.items if s.item_id == "new")
        assert (reason.type, reason.item_id) == ("because_you_watched", "a")
        assert recs.algorithm == f"cooccurrence+ease@v{trained.version}"

    async def test_weight_zero_serves_the_live_signals_only(
        self, train_settings: Settings, conn: asyncpg.Connection
    ) -> None:
        settings = evolve(train_settings, recs_trained_weight=0.0)
        assert await job.train(conn, settings.training) is not None
        database = Database(
            settings.database, Readiness(), migrate=settings.should_migrate_on_start
        )
        await database.open()
        try:
            recs = await Recommender(database, settings.engine).for_user("u1", limit=3)
        finally:
            await database.aclose()
        assert recs.algorithm == "cooccurrence"

    async def test_the_impression_records_the_model_version(
        self, train_settings: Settings, conn: asyncpg.Connection
    ) -> None:
        """Over HTTP: the body's algorithm and its impression both name the version."""
        trained = await job.train(conn, train_settings.training)
        assert trained is not None
        async with running_api(train_settings) as api:
            sink = RecordingSink()
            api.service.state.impressions = sink
            body = (await api.client.get("/v1/users/u1/recommendations?limit=3")).json()
        assert body["algorithm"] == f"cooccurrence+ease@v{trained.version}"
        assert sink.impressions[0].algorithm == body["algorithm"]
