"""The settings tree: one frozen attrs section per component, durations in seconds (floats).

Each leaf is one environment variable: the section's ``ENV_PREFIX`` plus the
field's name in capitals, unless the field's metadata names it (``env=``),
which keeps the variables operators have always set (``RECO_DATABASE_URL``
for ``database.url``). ``reco.settings.names`` walks the tree to list them.
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar

import attrs

from reco.settings.redaction import redacted_dsn, redacted_tokens


class AppEnv(enum.StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class LogFormat(enum.StrEnum):
    AUTO = "auto"  # console lines on a terminal, JSON lines otherwise
    JSON = "json"
    CONSOLE = "console"


class BackgroundMode(enum.StrEnum):
    SYNC = "sync"  # the handler waits (bounded) for room in the buffer
    DROP = "drop"  # the handler never waits; a full buffer drops and counts


def _positive(_inst: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ValueError(f"must be > 0, got {value}")


def _at_least_zero(_inst: Any, attribute: attrs.Attribute[Any], value: float) -> None:
    if value < 0:
        raise ValueError(f"must be >= 0, got {value}")


def setting(
    default: Any,
    *,
    env: str | None = None,
    secret: bool = False,
    validator: Any = None,
    repr: Any = True,
) -> Any:
    """A leaf: ``env`` overrides the derived variable name; ``secret`` allows ``NAME_FILE``."""
    metadata: dict[str, Any] = {"secret": secret}
    if env is not None:
        metadata["env"] = env
    return attrs.field(default=default, validator=validator, metadata=metadata, repr=repr)


def positive(default: float, *, env: str | None = None) -> Any:
    return setting(default, env=env, validator=_positive)


@attrs.frozen
class HttpSettings:
    ENV_PREFIX: ClassVar[str] = "RECO_HTTP_"

    bind: str = "127.0.0.1:8080"
    api_tokens: tuple[str, ...] = setting(
        (), env="RECO_API_TOKENS", secret=True, repr=redacted_tokens
    )
    max_body_bytes: int = positive(4 * 1024 * 1024, env="RECO_MAX_BODY_BYTES")
    keep_alive_timeout: float = positive(5.0)

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.bind.rpartition(":")
        return host.strip("[]"), int(port)


@attrs.frozen
class DatabaseSettings:
    ENV_PREFIX: ClassVar[str] = "RECO_DB_"

    url: str = setting("", env="RECO_DATABASE_URL", secret=True, repr=redacted_dsn)
    pool_min_size: int = setting(2, validator=_at_least_zero)
    pool_max_size: int = positive(10)
    connect_timeout: float = positive(5.0)
    statement_timeout: float = positive(5.0)
    lock_timeout: float = positive(2.0)
    idle_in_transaction_timeout: float = positive(30.0)
    acquire_timeout: float = positive(2.0)
    startup_deadline: float = positive(30.0)
    # the backoff of every database retry (pool start-up, the folder, the impression writer)
    retry_initial: float = positive(0.1)
    retry_max: float = positive(2.0)
    health_interval: float = positive(2.0)
    health_timeout: float = positive(1.0)
    # TCP keepalives on every PostgreSQL connection, both ends: a peer silent for
    # idle + interval * count (25 s) is dead, so the server releases a lost leader's lock.
    tcp_keepalives_idle: float = positive(10.0)
    tcp_keepalives_interval: float = positive(5.0)
    tcp_keepalives_count: int = positive(3)
    # None: on in development/test, off in production (Settings.should_migrate_on_start)
    migrate_on_start: bool | None = setting(None, env="RECO_MIGRATE_ON_START")
    migrations_dir: str = setting("", env="RECO_MIGRATIONS_DIR")  # empty: reco's own sql/
    # the background components' own pool (writer, relay, folder, consumer); 0: they share
    # the request pool
    background_pool_size: int = setting(6, validator=_at_least_zero)

    @property
    def tcp_dead_after(self) -> float:
        """A peer whose keepalives go unanswered this long is dead (``tcp_user_timeout`` too)."""
        return self.tcp_keepalives_idle + self.tcp_keepalives_interval * self.tcp_keepalives_count


@attrs.frozen
class KafkaSettings:
    ENV_PREFIX: ClassVar[str] = "RECO_KAFKA_"

    bootstrap: str = "127.0.0.1:9092"
    watch_events_topic: str = setting("reco.watch-events", env="RECO_WATCH_EVENTS_TOPIC")
    dead_letter_topic: str = setting("reco.watch-events.dlq", env="RECO_DEAD_LETTER_TOPIC")
    impressions_topic: str = setting("reco.impressions", env="RECO_IMPRESSIONS_TOPIC")
    request_timeout: float = positive(10.0)
    retry_initial: float = positive(0.2)
    retry_max: float = positive(5.0)


@attrs.frozen
class ConsumerSettings:
    ENV_PREFIX: ClassVar[str] = "RECO_CONSUMER_"

    enabled: bool = True
    group: str = "reco"
    batch_max: int = positive(5000)
    batch_wait: float = positive(0.1)
    max_message_bytes: int = positive(64 * 1024)
    # how far ahead of this clock an event may be dated (producers' clock skew)
    event_max_future: float = positive(300.0, env="RECO_EVENT_MAX_FUTURE")
    stuck_after: float = positive(60.0)
    lag_interval: float = positive(2.0)
    drain_timeout: float = positive(10.0)
    batch_timeout: float = positive(30.0)
    dlq_max_request_bytes: int = positive(2 * 1024 * 1024)
    session_timeout: float = positive(10.0)
    heartbeat_interval: float = positive(3.0)
    # batches of different partitions stored at once, each on its own connection
    store_lanes: int = positive(2)


@attrs.frozen
class FolderSettings:
    """The co-occurrence folder (its database retries use the database section's backoff)."""

    ENV_PREFIX: ClassVar[str] = "RECO_COOCCURRENCE_FOLD_"

    # how often the folder looks for increments, and its time limit per fold
    interval: float = positive(0.25)
    timeout: float = positive(120.0)
    # pages of item_cooccurrence_deltas (8 KiB, ~120 increments each) folded per transaction
    chunk_blocks: int = positive(1024)
    # folds running at once on disjoint parts of the pair space (same value on every instance)
    parts: int = positive(2)
    # pairs whose time-decayed weight (today's units) fell below this are deleted (0: never),
    # every prune_interval seconds, chunk_blocks pages of item_cooccurrence per transaction
    weight_floor: float = setting(0.1, env="RECO_COOCCURRENCE_WEIGHT_FLOOR",
                                  validator=_at_least_zero)  # fmt: skip
    prune_interval: float = positive(3600.0, env="RECO_COOCCURRENCE_PRUNE_INTERVAL")


@attrs.frozen
class ImpressionSettings:
    """The impression buffer (filled by the API) and the writer that empties it."""

    ENV_PREFIX: ClassVar[str] = "RECO_WRITER_"

    buffer_size: int = positive(8192, env="RECO_MAX_BACKGROUND_TASKS")
    mode: BackgroundMode = setting(BackgroundMode.SYNC, env="RECO_BACKGROUND_MODE")  # noqa: RUF009 - an attrs field
    put_timeout: float = positive(0.25, env="RECO_BACKGROUND_PUT_TIMEOUT")
    batch_max: int = positive(500)
    batch_wait: float = positive(0.25)
    retry_timeout: float = positive(10.0)


@attrs.frozen
class RelaySettings:
    ENV_PREFIX: ClassVar[str] = "RECO_RELAY_"

    enabled: bool = True
    batch_max: int = positive(1000)
    poll_interval: float = positive(1.0)
    publish_timeout: float = positive(10.0)
    leader_retry: float = positive(1.0)
    stop_timeout: float = positive(5.0)
    # the server ends a relay lock session silent this long (idle_session_timeout): a
    # standby leads within this + leader_retry after the leader's link drops
    failover_timeout: float = positive(15.0)
    outbox_retention: float = positive(7 * 24 * 3600.0, env="RECO_OUTBOX_RETENTION")
    outbox_prune_interval: float = positive(600.0, env="RECO_OUTBOX_PRUNE_INTERVAL")
    outbox_max_age: float = positive(60.0, env="RECO_OUTBOX_MAX_AGE")
    outbox_check_interval: float = positive(1.0, env="RECO_OUTBOX_CHECK_INTERVAL")
    linger: float = setting(0.002, validator=_at_least_zero)

    def step_down_bound(self, database: DatabaseSettings) -> float:
        """How long after its last good ping a leader may still send: detect, then flush."""
        return self.leader_retry + database.health_timeout + self.stop_timeout


@attrs.frozen
class EngineSettings:
    ENV_PREFIX: ClassVar[str] = "RECO_RECS_"

    cache_ttl: float = setting(1.0, validator=_at_least_zero)
    list_cache_size: int = setting(20_000, validator=_at_least_zero)
    # the trained model's share of a list's personal score (the live co-occurrence has
    # the rest); 0 serves the live signals only, whatever model version is active
    trained_weight: float = setting(0.5, validator=[_at_least_zero, attrs.validators.le(1)])
    # the model cache's neighbour lists and item infos, and the kept scored lists, in
    # bytes (reco/engine/sizes.py); both well inside the container's 512 MiB
    model_cache_bytes: int = positive(128 * 2**20)
    list_cache_bytes: int = positive(64 * 2**20)


@attrs.frozen
class TrainingSettings:
    """``reco train`` (a separate process, reco/training/)."""

    ENV_PREFIX: ClassVar[str] = "RECO_TRAIN_"

    lambda_: float = positive(500.0, env="RECO_TRAIN_LAMBDA")  # EASE's L2 penalty
    neighbours: int = positive(100)  # stored per item
    # above this many items, item-kNN on sparse co-counts instead of the exact EASE
    exact_max_items: int = positive(20_000)
    keep_versions: int = positive(3)
    # the whole-history read and the neighbour write of one run
    statement_timeout: float = positive(600.0)
    # fit once more on the history before a time cut to store the model's own figures
    evaluate: bool = True


@attrs.frozen
class MaintenanceSettings:
    """Partitions and retention (reco/maintenance/): a pass every ``interval`` on every instance."""

    ENV_PREFIX: ClassVar[str] = "RECO_MAINTENANCE_"

    enabled: bool = True
    interval: float = positive(600.0)
    # how long an event id is remembered for deduplication: above any producer's retry
    # horizon and the topic's retention (7 days); docs/design.md "Retention" says why
    watch_event_retention: float = positive(30 * 24 * 3600.0, env="RECO_WATCH_EVENT_RETENTION")
    impression_retention: float = positive(14 * 24 * 3600.0, env="RECO_IMPRESSION_RETENTION")
    # daily partitions created beyond today
    partitions_ahead: int = positive(3, env="RECO_PARTITIONS_AHEAD")
    table_size_interval: float = positive(300.0, env="RECO_TABLE_SIZE_INTERVAL")
    # each DDL statement of a pass waits at most this long for its table lock (else: next pass)
    lock_timeout: float = positive(2.0)


@attrs.frozen
class Settings:
    """Every knob of the service: process-wide ones here, the rest by component."""

    ENV_PREFIX: ClassVar[str] = "RECO_"

    app_env: AppEnv = setting(AppEnv.DEVELOPMENT, env="APP_ENV")  # noqa: RUF009 - an attrs field
    log_level: str = "INFO"
    log_format: LogFormat = LogFormat.AUTO
    startup_timeout: float = positive(60.0)
    shutdown_timeout: float = positive(20.0)
    # Production takes secrets from NAME_FILE only: a plain variable shows in `ps e`,
    # /proc/<pid>/environ, `docker inspect` and crash reports. This opts out, knowingly.
    allow_env_secrets: bool = False

    http: HttpSettings = attrs.field(factory=HttpSettings)
    database: DatabaseSettings = attrs.field(factory=DatabaseSettings)
    kafka: KafkaSettings = attrs.field(factory=KafkaSettings)
    consumer: ConsumerSettings = attrs.field(factory=ConsumerSettings)
    folder: FolderSettings = attrs.field(factory=FolderSettings)
    impressions: ImpressionSettings = attrs.field(factory=ImpressionSettings)
    relay: RelaySettings = attrs.field(factory=RelaySettings)
    engine: EngineSettings = attrs.field(factory=EngineSettings)
    training: TrainingSettings = attrs.field(factory=TrainingSettings)
    maintenance: MaintenanceSettings = attrs.field(factory=MaintenanceSettings)

    @property
    def should_migrate_on_start(self) -> bool:
        """The database section's choice, else on in development and test only."""
        if self.database.migrate_on_start is not None:
            return self.database.migrate_on_start
        return self.app_env is not AppEnv.PRODUCTION

    @classmethod
    def from_flat(cls, **changes: Any) -> Settings:
        """The defaults with ``changes`` by flat name (``database_url=...``)."""
        from reco.settings.names import evolve  # here: reco.settings.names imports this module

        return evolve(cls(), **changes)


SECTIONS = (
    HttpSettings, DatabaseSettings, KafkaSettings, ConsumerSettings, FolderSettings,
    ImpressionSettings, RelaySettings, EngineSettings, TrainingSettings, MaintenanceSettings,
)  # fmt: skip
for _section in (*SECTIONS, Settings):
    attrs.resolve_types(_section)
