"""The settings tree keeps the operators' variable names; evolve and from_flat speak them too."""

from __future__ import annotations

import cattrs
import pytest

from reco.kafka.clients import ms
from reco.settings import KNOBS, AppEnv, Settings, converter, env_name, evolve
from tests.unit.test_settings import problems_of

# Every variable of the flat Settings class this tree replaced (main at c3fd682).
FLAT_NAMES = frozenset({
    "APP_ENV", "RECO_ALLOW_ENV_SECRETS", "RECO_API_TOKENS", "RECO_BACKGROUND_MODE",
    "RECO_BACKGROUND_PUT_TIMEOUT", "RECO_CONSUMER_BATCH_MAX", "RECO_CONSUMER_BATCH_TIMEOUT",
    "RECO_CONSUMER_BATCH_WAIT", "RECO_CONSUMER_DLQ_MAX_REQUEST_BYTES",
    "RECO_CONSUMER_DRAIN_TIMEOUT", "RECO_CONSUMER_ENABLED", "RECO_CONSUMER_GROUP",
    "RECO_CONSUMER_HEARTBEAT_INTERVAL", "RECO_CONSUMER_LAG_INTERVAL",
    "RECO_CONSUMER_MAX_MESSAGE_BYTES", "RECO_CONSUMER_SESSION_TIMEOUT",
    "RECO_CONSUMER_STORE_LANES", "RECO_CONSUMER_STUCK_AFTER",
    "RECO_COOCCURRENCE_FOLD_CHUNK_BLOCKS", "RECO_COOCCURRENCE_FOLD_INTERVAL",
    "RECO_COOCCURRENCE_FOLD_PARTS", "RECO_COOCCURRENCE_FOLD_TIMEOUT", "RECO_DATABASE_URL",
    "RECO_DB_ACQUIRE_TIMEOUT", "RECO_DB_CONNECT_TIMEOUT", "RECO_DB_HEALTH_INTERVAL",
    "RECO_DB_HEALTH_TIMEOUT", "RECO_DB_IDLE_IN_TRANSACTION_TIMEOUT", "RECO_DB_LOCK_TIMEOUT",
    "RECO_DB_POOL_MAX_SIZE", "RECO_DB_POOL_MIN_SIZE", "RECO_DB_RETRY_INITIAL",
    "RECO_DB_RETRY_MAX", "RECO_DB_STARTUP_DEADLINE", "RECO_DB_STATEMENT_TIMEOUT",
    "RECO_DB_TCP_KEEPALIVES_COUNT", "RECO_DB_TCP_KEEPALIVES_IDLE",
    "RECO_DB_TCP_KEEPALIVES_INTERVAL", "RECO_DEAD_LETTER_TOPIC", "RECO_EVENT_MAX_FUTURE",
    "RECO_HTTP_BIND", "RECO_HTTP_KEEP_ALIVE_TIMEOUT", "RECO_IMPRESSIONS_TOPIC",
    "RECO_KAFKA_BOOTSTRAP", "RECO_KAFKA_REQUEST_TIMEOUT", "RECO_KAFKA_RETRY_INITIAL",
    "RECO_KAFKA_RETRY_MAX", "RECO_LOG_FORMAT", "RECO_LOG_LEVEL", "RECO_MAX_BACKGROUND_TASKS",
    "RECO_MAX_BODY_BYTES", "RECO_MIGRATE_ON_START", "RECO_MIGRATIONS_DIR",
    "RECO_OUTBOX_CHECK_INTERVAL", "RECO_OUTBOX_MAX_AGE", "RECO_OUTBOX_PRUNE_INTERVAL",
    "RECO_OUTBOX_RETENTION", "RECO_RECS_CACHE_TTL", "RECO_RECS_LIST_CACHE_SIZE",
    "RECO_RELAY_BATCH_MAX", "RECO_RELAY_ENABLED", "RECO_RELAY_FAILOVER_TIMEOUT",
    "RECO_RELAY_LEADER_RETRY", "RECO_RELAY_LINGER", "RECO_RELAY_POLL_INTERVAL",
    "RECO_RELAY_PUBLISH_TIMEOUT", "RECO_RELAY_STOP_TIMEOUT", "RECO_SHUTDOWN_TIMEOUT",
    "RECO_STARTUP_TIMEOUT", "RECO_WATCH_EVENTS_TOPIC", "RECO_WRITER_BATCH_MAX",
    "RECO_WRITER_BATCH_WAIT", "RECO_WRITER_RETRY_TIMEOUT",
})  # fmt: skip
# Added since (each with its rows in the README's and the runbook's tables).
ADDED = frozenset({
    "RECO_RECS_TRAINED_WEIGHT", "RECO_TRAIN_LAMBDA", "RECO_TRAIN_NEIGHBOURS",
    "RECO_TRAIN_EXACT_MAX_ITEMS", "RECO_TRAIN_KEEP_VERSIONS", "RECO_TRAIN_STATEMENT_TIMEOUT",
    "RECO_TRAIN_EVALUATE", "RECO_DB_BACKGROUND_POOL_SIZE",
    "RECO_MAINTENANCE_ENABLED", "RECO_MAINTENANCE_INTERVAL", "RECO_WATCH_EVENT_RETENTION",
    "RECO_IMPRESSION_RETENTION", "RECO_PARTITIONS_AHEAD", "RECO_TABLE_SIZE_INTERVAL",
    "RECO_MAINTENANCE_LOCK_TIMEOUT", "RECO_COOCCURRENCE_WEIGHT_FLOOR",
    "RECO_COOCCURRENCE_PRUNE_INTERVAL", "RECO_RECS_MODEL_CACHE_BYTES", "RECO_RECS_LIST_CACHE_BYTES",
})  # fmt: skip


class TestNames:
    def test_variable_names_are_those_operators_set(self) -> None:
        """The tree's leaves are exactly the variables of the flat settings (none renamed)
        and those added since."""
        assert {knob.env for knob in KNOBS} == FLAT_NAMES | ADDED

    def test_secrets_are_the_same_two(self) -> None:
        """Only the database URL and the API tokens may be given as NAME_FILE."""
        assert {knob.env for knob in KNOBS if knob.secret} == {
            "RECO_DATABASE_URL", "RECO_API_TOKENS",
        }  # fmt: skip

    def test_a_leaf_is_named_by_its_path(self) -> None:
        """env_name maps a path in the tree to its variable (overrides and derived ones)."""
        assert env_name("database", "url") == "RECO_DATABASE_URL"
        assert env_name("database", "pool_max_size") == "RECO_DB_POOL_MAX_SIZE"
        assert env_name("impressions", "buffer_size") == "RECO_MAX_BACKGROUND_TASKS"
        assert env_name("app_env") == "APP_ENV"


class TestEvolve:
    def test_flat_names_reach_their_sections(self) -> None:
        """evolve changes leaves by their flat names and leaves the rest as it was."""
        base = Settings()
        changed = evolve(
            base, database_url="postgresql://x@y/z", consumer_batch_max=7,
            app_env=AppEnv.TEST, max_background_tasks=3,
        )  # fmt: skip
        assert changed.database.url == "postgresql://x@y/z"
        assert changed.consumer.batch_max == 7
        assert changed.app_env is AppEnv.TEST
        assert changed.impressions.buffer_size == 3
        assert changed.kafka == base.kafka
        assert changed.database.pool_max_size == base.database.pool_max_size

    def test_unknown_name_is_a_type_error(self) -> None:
        """A misspelt setting fails like a misspelt keyword argument."""
        with pytest.raises(TypeError, match="consumer_batch_maks"):
            evolve(Settings(), consumer_batch_maks=1)

    def test_from_flat_is_the_defaults_evolved(self) -> None:
        """Settings.from_flat(...) == evolve(Settings(), ...); validators still run."""
        assert Settings.from_flat(relay_batch_max=5) == evolve(Settings(), relay_batch_max=5)
        with pytest.raises(ValueError, match="must be > 0"):
            Settings.from_flat(relay_batch_max=0)


class TestStructure:
    def test_every_problem_of_one_section_is_listed(self) -> None:
        """Validators run per leaf, so two bad values of one section are both named."""
        problems = problems_of({
            "RECO_DB_POOL_MAX_SIZE": "0", "RECO_DB_CONNECT_TIMEOUT": "-1",
            "RECO_DB_POOL_MIN_SIZE": "-1", "RECO_DB_LOCK_TIMEOUT": "soon",
        })  # fmt: skip
        assert sorted(p.split(":")[0] for p in problems) == [
            "RECO_DB_CONNECT_TIMEOUT", "RECO_DB_LOCK_TIMEOUT", "RECO_DB_POOL_MAX_SIZE",
            "RECO_DB_POOL_MIN_SIZE",
        ]  # fmt: skip
        assert "RECO_DB_POOL_MIN_SIZE: must be >= 0, got -1" in problems

    def test_the_converter_forbids_extra_keys(self) -> None:
        """A key the tree does not have is refused, not ignored."""
        with pytest.raises(cattrs.ClassValidationError) as info:
            converter.structure({"database": {"urll": "x"}}, Settings)
        assert cattrs.transform_error(info.value) == ["extra fields found (urll) @ $.database"]

    def test_nested_dict_round_trip(self) -> None:
        """The converter builds the tree from a nested dict of text."""
        settings = converter.structure(
            {"kafka": {"bootstrap": "b:1"}, "log_level": "DEBUG"}, Settings
        )
        assert settings.kafka.bootstrap == "b:1"
        assert settings.log_level == "DEBUG"


class TestMilliseconds:
    @pytest.mark.parametrize(
        ("seconds", "expected"), [(0.0, 0), (0.002, 2), (0.2, 200), (1.1, 1100), (0.0001, 1)]
    )
    def test_whole_milliseconds_rounded_up(self, seconds: float, expected: int) -> None:
        """One conversion for every Kafka client option; a positive duration is never 0."""
        assert ms(seconds) == expected


class TestRemoved:
    def test_a_removed_setting_says_what_replaced_it(self) -> None:
        """RECO_WRITER_DRAIN_TIMEOUT went with the stop contract: refused, with the reason."""
        (problem,) = problems_of({"RECO_WRITER_DRAIN_TIMEOUT": "5"})
        assert problem.startswith("RECO_WRITER_DRAIN_TIMEOUT: removed")
        assert "RECO_SHUTDOWN_TIMEOUT" in problem
