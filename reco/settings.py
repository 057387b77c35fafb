"""Settings: one frozen attrs class, built from environment variables by cattrs.

Every variable is ``RECO_<FIELD NAME>`` (``APP_ENV`` is the one exception).
Secrets may instead be given as ``<NAME>_FILE``, a path to a file holding the
value (the container-secrets convention). Every problem is reported at once,
as a :class:`~reco.errors.ConfigError`; the CLI exits with code 2 on it.
"""

from __future__ import annotations

import enum
import os
import re
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import cattrs

from reco.errors import ConfigError


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


def _secret() -> dict[str, bool]:
    return {"secret": True}


REDACTED = "***"
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&]*", re.IGNORECASE)
_KEYWORD_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S*)", re.IGNORECASE)


def redact_dsn(dsn: str) -> str:
    """``dsn`` with its password replaced by ``***``, fit for a log line or an error.

    Handles the URL form (``user:password@`` userinfo, several hosts, and a
    ``password=`` query parameter) and the libpq keyword form
    (``host=... password=...``, quoted or not). Everything else is kept as
    written. When in doubt (an unencoded ``@``, ``/`` or ``?`` in the
    password) it redacts more, never less: everything up to the last ``@`` is
    userinfo.
    """
    if "://" not in dsn:
        return _KEYWORD_PASSWORD.sub(lambda m: m.group(1) + REDACTED, dsn)
    scheme, _, rest = dsn.partition("://")
    userinfo, at, rest = rest.rpartition("@")
    if ":" in userinfo:
        userinfo = f"{userinfo.partition(':')[0]}:{REDACTED}"
    rest = _QUERY_PASSWORD.sub(lambda m: m.group(1) + REDACTED, rest)
    return f"{scheme}://{userinfo}{at}{rest}"


def _redacted_dsn(value: str) -> str:
    return repr(redact_dsn(value))


def _redacted_tokens(value: tuple[str, ...]) -> str:
    return repr((REDACTED,) * len(value))


@attrs.frozen
class Settings:
    """Every knob of the service. Durations are seconds (floats)."""

    app_env: AppEnv = AppEnv.DEVELOPMENT
    log_level: str = attrs.field(default="INFO")
    log_format: LogFormat = LogFormat.AUTO

    # --- HTTP ---------------------------------------------------------------
    http_bind: str = "127.0.0.1:8080"
    api_tokens: tuple[str, ...] = attrs.field(default=(), metadata=_secret(), repr=_redacted_tokens)
    # Production takes secrets from NAME_FILE only: a plain variable shows in `ps e`,
    # /proc/<pid>/environ, `docker inspect` and crash reports. This opts out, knowingly.
    allow_env_secrets: bool = False
    max_body_bytes: int = attrs.field(default=4 * 1024 * 1024, validator=_positive)
    http_keep_alive_timeout: float = attrs.field(default=5.0, validator=_positive)

    # --- process ------------------------------------------------------------
    startup_timeout: float = attrs.field(default=60.0, validator=_positive)
    shutdown_timeout: float = attrs.field(default=20.0, validator=_positive)

    # --- PostgreSQL ---------------------------------------------------------
    database_url: str = attrs.field(default="", metadata=_secret(), repr=_redacted_dsn)
    db_pool_min_size: int = attrs.field(default=2, validator=attrs.validators.ge(0))
    db_pool_max_size: int = attrs.field(default=10, validator=_positive)
    db_connect_timeout: float = attrs.field(default=5.0, validator=_positive)
    db_statement_timeout: float = attrs.field(default=5.0, validator=_positive)
    db_lock_timeout: float = attrs.field(default=2.0, validator=_positive)
    db_idle_in_transaction_timeout: float = attrs.field(default=30.0, validator=_positive)
    db_acquire_timeout: float = attrs.field(default=2.0, validator=_positive)
    db_startup_deadline: float = attrs.field(default=30.0, validator=_positive)
    db_retry_initial: float = attrs.field(default=0.1, validator=_positive)
    db_retry_max: float = attrs.field(default=2.0, validator=_positive)
    db_health_interval: float = attrs.field(default=2.0, validator=_positive)
    db_health_timeout: float = attrs.field(default=1.0, validator=_positive)
    # TCP keepalives on every PostgreSQL connection, both ends: a peer silent for
    # idle + interval * count (25 s) is dead, so the server releases a lost leader's lock.
    db_tcp_keepalives_idle: float = attrs.field(default=10.0, validator=_positive)
    db_tcp_keepalives_interval: float = attrs.field(default=5.0, validator=_positive)
    db_tcp_keepalives_count: int = attrs.field(default=3, validator=_positive)
    migrate_on_start: bool | None = None  # None: on in development/test, off in production
    migrations_dir: str = ""  # empty: the sql/ shipped with reco

    # --- Kafka --------------------------------------------------------------
    kafka_bootstrap: str = "127.0.0.1:9092"
    watch_events_topic: str = "reco.watch-events"
    dead_letter_topic: str = "reco.watch-events.dlq"
    impressions_topic: str = "reco.impressions"
    kafka_request_timeout: float = attrs.field(default=10.0, validator=_positive)
    kafka_retry_initial: float = attrs.field(default=0.2, validator=_positive)
    kafka_retry_max: float = attrs.field(default=5.0, validator=_positive)

    # --- consumer -----------------------------------------------------------
    consumer_enabled: bool = True
    consumer_group: str = "reco"
    consumer_batch_max: int = attrs.field(default=5000, validator=_positive)
    consumer_batch_wait: float = attrs.field(default=0.1, validator=_positive)
    consumer_max_message_bytes: int = attrs.field(default=64 * 1024, validator=_positive)
    # how far ahead of this clock an event may be dated (producers' clock skew)
    event_max_future: float = attrs.field(default=300.0, validator=_positive)
    consumer_stuck_after: float = attrs.field(default=60.0, validator=_positive)
    consumer_lag_interval: float = attrs.field(default=2.0, validator=_positive)
    consumer_drain_timeout: float = attrs.field(default=10.0, validator=_positive)
    consumer_batch_timeout: float = attrs.field(default=30.0, validator=_positive)
    consumer_dlq_max_request_bytes: int = attrs.field(default=2 * 1024 * 1024, validator=_positive)
    consumer_session_timeout: float = attrs.field(default=10.0, validator=_positive)
    consumer_heartbeat_interval: float = attrs.field(default=3.0, validator=_positive)
    # batches of different partitions stored at once, each on its own connection
    consumer_store_lanes: int = attrs.field(default=2, validator=_positive)
    # how often the co-occurrence folder looks for increments, and its time limit per fold
    cooccurrence_fold_interval: float = attrs.field(default=0.25, validator=_positive)
    cooccurrence_fold_timeout: float = attrs.field(default=120.0, validator=_positive)
    # pages of item_cooccurrence_deltas (8 KiB, ~120 increments each) folded per transaction
    cooccurrence_fold_chunk_blocks: int = attrs.field(default=1024, validator=_positive)
    # folds running at once on disjoint parts of the pair space (same value on every instance)
    cooccurrence_fold_parts: int = attrs.field(default=2, validator=_positive)

    # --- impressions (background work) -------------------------------------
    max_background_tasks: int = attrs.field(default=8192, validator=_positive)
    background_mode: BackgroundMode = BackgroundMode.SYNC
    background_put_timeout: float = attrs.field(default=0.25, validator=_positive)
    writer_batch_max: int = attrs.field(default=500, validator=_positive)
    writer_batch_wait: float = attrs.field(default=0.25, validator=_positive)
    writer_drain_timeout: float = attrs.field(default=5.0, validator=_positive)
    writer_retry_timeout: float = attrs.field(default=10.0, validator=_positive)

    # --- outbox relay -------------------------------------------------------
    relay_enabled: bool = True
    relay_batch_max: int = attrs.field(default=1000, validator=_positive)
    relay_poll_interval: float = attrs.field(default=1.0, validator=_positive)
    relay_publish_timeout: float = attrs.field(default=10.0, validator=_positive)
    relay_leader_retry: float = attrs.field(default=1.0, validator=_positive)
    relay_stop_timeout: float = attrs.field(default=5.0, validator=_positive)
    # the server ends a relay lock session silent this long (idle_session_timeout): a
    # standby leads within this + relay_leader_retry after the leader's link drops
    relay_failover_timeout: float = attrs.field(default=15.0, validator=_positive)
    outbox_retention: float = attrs.field(default=7 * 24 * 3600.0, validator=_positive)
    outbox_prune_interval: float = attrs.field(default=600.0, validator=_positive)
    outbox_max_age: float = attrs.field(default=60.0, validator=_positive)
    outbox_check_interval: float = attrs.field(default=1.0, validator=_positive)
    relay_linger: float = attrs.field(default=0.002, validator=attrs.validators.ge(0))

    # --- recommendations ----------------------------------------------------
    recs_cache_ttl: float = attrs.field(default=1.0, validator=attrs.validators.ge(0))
    recs_list_cache_size: int = attrs.field(default=20_000, validator=attrs.validators.ge(0))
    # the trained model's share of a list's personal score (the live co-occurrence has
    # the rest); 0 serves the live signals only, whatever model version is active
    recs_trained_weight: float = attrs.field(
        default=0.5, validator=[attrs.validators.ge(0), attrs.validators.le(1)]
    )

    # --- training (`reco train`, a separate process) -------------------------
    train_lambda: float = attrs.field(default=500.0, validator=_positive)  # EASE's L2 penalty
    train_neighbours: int = attrs.field(default=100, validator=_positive)  # stored per item
    # above this many items, item-kNN on sparse co-counts instead of the exact EASE
    train_exact_max_items: int = attrs.field(default=20_000, validator=_positive)
    train_keep_versions: int = attrs.field(default=3, validator=_positive)
    # the whole-history read and the neighbour write of one run
    train_statement_timeout: float = attrs.field(default=600.0, validator=_positive)
    # fit once more on the history before a time cut to store the model's own figures
    train_evaluate: bool = True

    @property
    def should_migrate_on_start(self) -> bool:
        if self.migrate_on_start is not None:
            return self.migrate_on_start
        return self.app_env is not AppEnv.PRODUCTION

    @property
    def db_tcp_dead_after(self) -> float:
        """A peer whose keepalives go unanswered this long is dead (``tcp_user_timeout`` too)."""
        return self.db_tcp_keepalives_idle + self.db_tcp_keepalives_interval * (
            self.db_tcp_keepalives_count
        )

    @property
    def relay_step_down_bound(self) -> float:
        """How long after its last good ping a leader may still send: detect, then flush."""
        return self.relay_leader_retry + self.db_health_timeout + self.relay_stop_timeout

    @property
    def http_host_port(self) -> tuple[str, int]:
        host, _, port = self.http_bind.rpartition(":")
        return host.strip("[]"), int(port)


attrs.resolve_types(Settings)


def env_name(field: str) -> str:
    return "APP_ENV" if field == "app_env" else f"RECO_{field.upper()}"


_converter = cattrs.Converter(forbid_extra_keys=True)
_converter.register_structure_hook(float, lambda v, _t: float(v))
_converter.register_structure_hook(int, lambda v, _t: int(v))


def _structure_bool(value: Any, _type: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ValueError(f"not a boolean: {value!r} (use true/false)")


def _structure_tuple(value: Any, _type: Any) -> tuple[str, ...]:
    if isinstance(value, tuple):
        return value
    return tuple(part.strip() for part in str(value).split(",") if part.strip())


_converter.register_structure_hook(bool, _structure_bool)
_converter.register_structure_hook_func(lambda t: t == tuple[str, ...], _structure_tuple)


def _read_environ(environ: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    raw: dict[str, str] = {}
    problems: list[str] = []
    for field in attrs.fields(Settings):
        name = env_name(field.name)
        file_var = f"{name}_FILE"
        if field.metadata.get("secret") and file_var in environ:
            if name in environ:
                problems.append(f"{name}: set both {name} and {file_var}; set one")
                continue
            try:
                raw[field.name] = Path(environ[file_var]).read_text().strip()
            except OSError as exc:
                problems.append(f"{file_var}: cannot read {environ[file_var]!r}: {exc.strerror}")
        elif name in environ:
            raw[field.name] = environ[name]
    return raw, problems


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build :class:`Settings` from ``environ`` (default ``os.environ``).

    Each field is structured and validated on its own so that every problem
    is reported at once, including unknown ``RECO_`` variables (typos).
    """
    environ = os.environ if environ is None else environ
    raw, problems = _read_environ(environ)
    known = {env_name(f.name) for f in attrs.fields(Settings)}
    known |= {
        f"{env_name(f.name)}_FILE" for f in attrs.fields(Settings) if f.metadata.get("secret")
    }
    problems += [
        f"{name}: unknown setting"
        for name in sorted(environ)
        if name.startswith("RECO_") and name not in known
    ]
    values: dict[str, Any] = {}
    for field in attrs.fields(Settings):
        if field.name not in raw:
            continue
        assert field.type is not None  # resolved by attrs.resolve_types above
        try:
            value = _converter.structure(raw[field.name], field.type)
            if field.validator is not None and value is not None:
                field.validator(None, field, value)
        except Exception as exc:  # noqa: BLE001 - every failure is reported, not raised
            problems.append(f"{env_name(field.name)}: {_describe(exc, field.type)}")
        else:
            values[field.name] = value
    if problems:
        raise ConfigError(problems)
    settings = Settings(**values)
    problems = _check(settings) + _plain_secret_problems(settings, environ)
    if problems:
        raise ConfigError(problems)
    return settings


def _plain_secret_problems(settings: Settings, environ: Mapping[str, str]) -> list[str]:
    """In production, a secret given as a plain variable is refused (unless opted in)."""
    if settings.app_env is not AppEnv.PRODUCTION or settings.allow_env_secrets:
        return []
    return [
        f"{name}: in production give secrets as files ({name}_FILE), or set "
        "RECO_ALLOW_ENV_SECRETS=true to accept the plain variable"
        for name in (env_name(f.name) for f in attrs.fields(Settings) if f.metadata.get("secret"))
        if name in environ
    ]


def _describe(exc: Exception, type_: Any) -> str:
    if isinstance(type_, type) and issubclass(type_, enum.Enum):
        return "expected one of " + ", ".join(m.value for m in type_)
    if isinstance(exc, ValueError) and str(exc).startswith(("must", "not a")):
        return str(exc)
    name = {bool: "true or false", int: "an integer", float: "a number"}.get(type_, str(type_))
    return f"expected {name}"


# Kafka's own rule (kafka.common.internals.Topic): a broker refuses any other name, and a
# client waits for its metadata forever (aiokafka calls UNKNOWN_TOPIC retriable).
TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")


def _check(settings: Settings) -> list[str]:
    problems = []
    if settings.db_pool_min_size > settings.db_pool_max_size:
        problems.append("RECO_DB_POOL_MIN_SIZE: must not exceed RECO_DB_POOL_MAX_SIZE")
    try:
        settings.http_host_port  # noqa: B018 - parsing is the check
    except ValueError:
        problems.append(f"RECO_HTTP_BIND: expected HOST:PORT, got {settings.http_bind!r}")
    if settings.relay_failover_timeout <= settings.relay_step_down_bound:
        problems.append(
            "RECO_RELAY_FAILOVER_TIMEOUT: must exceed RECO_RELAY_LEADER_RETRY + "
            f"RECO_DB_HEALTH_TIMEOUT + RECO_RELAY_STOP_TIMEOUT ({settings.relay_step_down_bound:g} s), "
            "or a standby could publish while the old leader still does"
        )
    if settings.log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        problems.append(f"RECO_LOG_LEVEL: unknown level {settings.log_level!r}")
    for name in ("watch_events_topic", "dead_letter_topic", "impressions_topic"):
        topic = getattr(settings, name)
        if not TOPIC_NAME.fullmatch(topic) or topic in {".", ".."}:
            problems.append(
                f"{env_name(name)}: {topic!r} is not a Kafka topic name "
                "(1 to 249 of A-Z a-z 0-9 . _ -; not . or ..)"
            )
    if settings.app_env is AppEnv.PRODUCTION:
        problems.extend(_production_problems(settings))
    return problems


PLACEHOLDERS = frozenset(
    {
        "", "changeme", "change-me", "change_me", "changeit", "secret", "password", "passwd",
        "postgres", "admin", "root", "test", "token", "example", "default", "dev", "reco",
        "xxx", "todo", "placeholder", "letmein", "123456",
    }
)  # fmt: skip
MIN_TOKEN_LENGTH = 32


def _is_placeholder(value: str) -> bool:
    lowered = value.lower()
    return lowered in PLACEHOLDERS or any(
        word in lowered for word in ("changeme", "change-me", "placeholder", "example")
    )


def _database_password(url: str) -> str:
    """The password in the URL's userinfo or its ``password`` query parameter (libpq style)."""
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qs(parts.query).get("password", [""])
    return parts.password or query[-1]


def _production_problems(settings: Settings) -> list[str]:
    """Refuse development defaults in production, naming the variable, never the value."""
    problems = []
    if settings.log_format is LogFormat.CONSOLE:
        problems.append("RECO_LOG_FORMAT: production logs are JSON lines (auto or json)")
    if not settings.database_url:
        problems.append("RECO_DATABASE_URL: required in production")
    else:
        password = _database_password(settings.database_url)
        if _is_placeholder(password):
            problems.append(
                "RECO_DATABASE_URL: the database password is empty or a development default"
            )
    if not settings.api_tokens:
        problems.append("RECO_API_TOKENS: at least one token is required in production")
    for index, token in enumerate(settings.api_tokens):
        if len(token) < MIN_TOKEN_LENGTH or _is_placeholder(token):
            problems.append(
                f"RECO_API_TOKENS: token #{index + 1} is shorter than {MIN_TOKEN_LENGTH} "
                "characters or a known placeholder"
            )
    return problems
