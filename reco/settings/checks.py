"""Problems visible only on the whole tree, and the refusals of development values in production.

Each problem names its environment variable, never a secret's value.
"""

from __future__ import annotations

import re
import urllib.parse

from reco.settings.names import env_name
from reco.settings.sections import AppEnv, LogFormat, Settings

# Kafka's own rule (kafka.common.internals.Topic): a broker refuses any other name, and a
# client waits for its metadata forever (aiokafka calls UNKNOWN_TOPIC retriable).
TOPIC_NAME = re.compile(r"[A-Za-z0-9._-]{1,249}")
LOG_LEVELS = frozenset({"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"})


def problems(settings: Settings) -> list[str]:
    """Cross-field problems, then (in production) the refused development values."""
    found = []
    if settings.database.pool_min_size > settings.database.pool_max_size:
        found.append("RECO_DB_POOL_MIN_SIZE: must not exceed RECO_DB_POOL_MAX_SIZE")
    try:
        settings.http.host_port  # noqa: B018 - parsing is the check
    except ValueError:
        found.append(f"RECO_HTTP_BIND: expected HOST:PORT, got {settings.http.bind!r}")
    bound = settings.relay.step_down_bound(settings.database)
    if settings.relay.failover_timeout <= bound:
        found.append(
            "RECO_RELAY_FAILOVER_TIMEOUT: must exceed RECO_RELAY_LEADER_RETRY + "
            f"RECO_DB_HEALTH_TIMEOUT + RECO_RELAY_STOP_TIMEOUT ({bound:g} s), "
            "or a standby could publish while the old leader still does"
        )
    if settings.log_level.upper() not in LOG_LEVELS:
        found.append(f"RECO_LOG_LEVEL: unknown level {settings.log_level!r}")
    for name in ("watch_events_topic", "dead_letter_topic", "impressions_topic"):
        topic = getattr(settings.kafka, name)
        if not TOPIC_NAME.fullmatch(topic) or topic in {".", ".."}:
            found.append(
                f"{env_name('kafka', name)}: {topic!r} is not a Kafka topic name "
                "(1 to 249 of A-Z a-z 0-9 . _ -; not . or ..)"
            )
    if settings.app_env is AppEnv.PRODUCTION:
        found.extend(production_problems(settings))
    return found


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


def production_problems(settings: Settings) -> list[str]:
    """Refuse development defaults in production, naming the variable, never the value."""
    found = []
    if settings.log_format is LogFormat.CONSOLE:
        found.append("RECO_LOG_FORMAT: production logs are JSON lines (auto or json)")
    if not settings.database.url:
        found.append("RECO_DATABASE_URL: required in production")
    elif _is_placeholder(_database_password(settings.database.url)):
        found.append("RECO_DATABASE_URL: the database password is empty or a development default")
    tokens = settings.http.api_tokens
    if not tokens:
        found.append("RECO_API_TOKENS: at least one token is required in production")
    for index, token in enumerate(tokens):
        if len(token) < MIN_TOKEN_LENGTH or _is_placeholder(token):
            found.append(
                f"RECO_API_TOKENS: token #{index + 1} is shorter than {MIN_TOKEN_LENGTH} "
                "characters or a known placeholder"
            )
    return found
