"""Settings from the environment: every problem at once, production guards, _FILE secrets."""

from __future__ import annotations

import subprocess
import sys
import urllib.parse
from pathlib import Path

import pytest

from reco.errors import ConfigError
from reco.settings import AppEnv, BackgroundMode, Settings, load_settings, redact_dsn

STRONG_TOKEN = "k3Jx9QmZ2rT7vLp0WbN4yHs8dFc6gAeU"  # 32 characters, no placeholder word
STRONG_URL = "postgresql://reco:Vx8s2LqP9zR4tYw1@db.internal:5432/reco"


def problems_of(environ: dict[str, str]) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_settings(environ)
    return info.value.problems


class TestLoad:
    def test_defaults_without_variables(self) -> None:
        """An empty environment gives the documented defaults."""
        settings = load_settings({})
        assert settings == Settings()
        assert settings.app_env is AppEnv.DEVELOPMENT
        assert settings.http.bind == "127.0.0.1:8080"
        assert settings.impressions.buffer_size == 8192
        assert settings.impressions.mode is BackgroundMode.SYNC
        assert settings.shutdown_timeout == 20.0

    def test_values_are_converted(self) -> None:
        """Numbers, booleans, enums and comma lists are parsed from text."""
        settings = load_settings({
            "APP_ENV": "test", "RECO_SHUTDOWN_TIMEOUT": "2.5", "RECO_DB_POOL_MAX_SIZE": "3",
            "RECO_CONSUMER_ENABLED": "off", "RECO_BACKGROUND_MODE": "drop",
            "RECO_API_TOKENS": " a , b ,,", "RECO_MIGRATE_ON_START": "yes",
        })  # fmt: skip
        assert settings.app_env is AppEnv.TEST
        assert settings.shutdown_timeout == 2.5
        assert settings.database.pool_max_size == 3
        assert settings.consumer.enabled is False
        assert settings.impressions.mode is BackgroundMode.DROP
        assert settings.http.api_tokens == ("a", "b")
        assert settings.should_migrate_on_start

    def test_migrate_on_start_defaults_by_environment(self) -> None:
        """Migrate-on-start is on in development and test, off in production."""
        assert load_settings({}).should_migrate_on_start
        assert not Settings.from_flat(app_env=AppEnv.PRODUCTION).should_migrate_on_start


class TestProblems:
    def test_every_invalid_variable_is_named_at_once(self) -> None:
        """Each bad variable appears in one error, with what was expected."""
        problems = problems_of({
            "APP_ENV": "staging", "RECO_SHUTDOWN_TIMEOUT": "soon", "RECO_DB_POOL_MAX_SIZE": "-1",
            "RECO_CONSUMER_ENABLED": "maybe", "RECO_HTTP_BIND": "nowhere",
            "RECO_LOG_LEVEL": "LOUD", "RECO_MAX_BACKGROUND_TASKS": "0",
        })  # fmt: skip
        text = "\n".join(problems)
        for name in ("APP_ENV", "RECO_SHUTDOWN_TIMEOUT", "RECO_DB_POOL_MAX_SIZE",
                     "RECO_CONSUMER_ENABLED", "RECO_MAX_BACKGROUND_TASKS"):  # fmt: skip
            assert name in text
        assert "expected one of development, test, production" in text
        assert "expected a number" in text

    def test_cross_field_problems_after_parsing(self) -> None:
        """Problems visible only on the whole (bind address, level, pool sizes) are listed."""
        problems = problems_of({
            "RECO_HTTP_BIND": "nowhere", "RECO_LOG_LEVEL": "LOUD",
            "RECO_DB_POOL_MIN_SIZE": "5", "RECO_DB_POOL_MAX_SIZE": "2",
        })  # fmt: skip
        assert [p.split(":")[0] for p in problems] == [
            "RECO_DB_POOL_MIN_SIZE", "RECO_HTTP_BIND", "RECO_LOG_LEVEL",
        ]  # fmt: skip

    @pytest.mark.parametrize("name", ["invalid dlq name!", "", ".", "..", "a/b", "é", "x" * 250])
    def test_topic_names_a_broker_would_refuse(self, name: str) -> None:
        """A broker refuses such a name and a client waits for its metadata forever (issue 10,
        finding 11): it is a configuration error at start-up, not a wedged partition."""
        problems = problems_of({"RECO_DEAD_LETTER_TOPIC": name})
        assert [p.split(":")[0] for p in problems] == ["RECO_DEAD_LETTER_TOPIC"]

    def test_relay_failover_must_outlast_the_leaders_step_down(self) -> None:
        """A failover shorter than ping + ping timeout + stop timeout could mean two leaders."""
        problems = problems_of({"RECO_RELAY_FAILOVER_TIMEOUT": "6", "RECO_RELAY_STOP_TIMEOUT": "5"})
        assert problems[0].startswith("RECO_RELAY_FAILOVER_TIMEOUT: must exceed")
        assert load_settings({"RECO_RELAY_FAILOVER_TIMEOUT": "7.5"}).relay.failover_timeout == 7.5

    def test_unknown_reco_variable_is_a_typo(self) -> None:
        """An unknown RECO_ variable (or _FILE of a non-secret) is reported, not ignored."""
        problems = problems_of({"RECO_SHUTDOWN_TIMEOTU": "5", "RECO_LOG_LEVEL_FILE": "/x"})
        assert problems == [
            "RECO_LOG_LEVEL_FILE: unknown setting", "RECO_SHUTDOWN_TIMEOTU: unknown setting",
        ]  # fmt: skip


class TestProduction:
    def base(self) -> dict[str, str]:
        return {"APP_ENV": "production", "RECO_DATABASE_URL": STRONG_URL,
                "RECO_API_TOKENS": STRONG_TOKEN, "RECO_ALLOW_ENV_SECRETS": "true"}  # fmt: skip

    def test_strong_credentials_are_accepted(self) -> None:
        """Production starts with a real password and long random tokens."""
        assert load_settings(self.base()).app_env is AppEnv.PRODUCTION

    @pytest.mark.parametrize(
        "url",
        ["postgresql://reco@db/reco", "postgresql://reco:postgres@db/reco",
         "postgresql://reco:changeme@db/reco", "postgresql://reco:@db/reco",
         "postgresql://reco@db/reco?password=secret"],
    )  # fmt: skip
    def test_placeholder_database_password_is_refused(self, url: str) -> None:
        """An empty or default database password is refused, naming the variable only."""
        problems = problems_of({**self.base(), "RECO_DATABASE_URL": url})
        assert len(problems) == 1
        assert problems[0].startswith("RECO_DATABASE_URL:")
        assert url not in problems[0]
        password = urllib.parse.urlsplit(url).password
        assert not password or password not in problems[0]

    @pytest.mark.parametrize(
        "token", ["changeme", "short-but-random-9f8", "x" * 20 + "changeme" * 2]
    )
    def test_weak_token_is_refused_without_printing_it(self, token: str) -> None:
        """A short or placeholder token is refused; the message never contains it."""
        problems = problems_of({**self.base(), "RECO_API_TOKENS": f"{STRONG_TOKEN},{token}"})
        assert problems == [
            "RECO_API_TOKENS: token #2 is shorter than 32 characters or a known placeholder"
        ]
        assert token not in str(problems)

    def test_missing_credentials_are_refused(self) -> None:
        """Production without a database URL or tokens names both."""
        problems = problems_of({"APP_ENV": "production"})
        assert [p.split(":")[0] for p in problems] == ["RECO_DATABASE_URL", "RECO_API_TOKENS"]

    def test_secrets_in_plain_variables_are_refused(self) -> None:
        """Without the opt-in, production names each secret given as a plain variable."""
        environ = {**self.base()}
        del environ["RECO_ALLOW_ENV_SECRETS"]
        problems = problems_of(environ)
        assert [p.split(":")[0] for p in problems] == ["RECO_API_TOKENS", "RECO_DATABASE_URL"]
        assert all("_FILE" in p for p in problems)
        assert STRONG_TOKEN not in str(problems)
        assert STRONG_URL not in str(problems)

    def test_console_logs_are_refused(self) -> None:
        """Production logs are JSON lines: RECO_LOG_FORMAT=console is a problem there."""
        problems = problems_of({**self.base(), "RECO_LOG_FORMAT": "console"})
        assert [p.split(":")[0] for p in problems] == ["RECO_LOG_FORMAT"]
        assert load_settings({**self.base(), "RECO_LOG_FORMAT": "json"}).log_format == "json"

    def test_development_accepts_placeholders(self) -> None:
        """The guard is for production only."""
        settings = load_settings(
            {"RECO_API_TOKENS": "dev", "RECO_DATABASE_URL": "postgresql://x@y/z"}
        )
        assert settings.http.api_tokens == ("dev",)


class TestRedaction:
    @pytest.mark.parametrize(
        ("dsn", "redacted"),
        [
            ("postgresql://reco:S3cr%40t@db:5432/reco", "postgresql://reco:***@db:5432/reco"),
            ("postgresql://reco:S3cret@db1:5432,db2:5433/reco?sslmode=require",
             "postgresql://reco:***@db1:5432,db2:5433/reco?sslmode=require"),
            ("postgres://reco@db/reco?sslmode=disable&password=S3cret&application_name=x",
             "postgres://reco@db/reco?sslmode=disable&password=***&application_name=x"),
            ("postgresql://reco:S3c/r@t@db/reco", "postgresql://reco:***@db/reco"),
            ("postgresql:///reco?host=/run/pg&PASSWORD=S3cret", "postgresql:///reco?host=/run/pg&PASSWORD=***"),
            ("host=db user=reco password=S3cret dbname=reco",
             "host=db user=reco password=*** dbname=reco"),
            ("host=db password = 'S3 c\\'ret' dbname=reco", "host=db password = *** dbname=reco"),
            ("postgresql://reco@db/reco", "postgresql://reco@db/reco"),
            ("", ""),
        ],
    )  # fmt: skip
    def test_redact_dsn_hides_the_password_only(self, dsn: str, redacted: str) -> None:
        """The password (userinfo, query parameter or keyword) is ***; the rest is kept."""
        assert redact_dsn(dsn) == redacted

    def test_repr_of_settings_shows_no_secret(self) -> None:
        """A logged or printed Settings object carries neither the password nor a token."""
        settings = Settings.from_flat(database_url=STRONG_URL, api_tokens=(STRONG_TOKEN,))
        text = repr(settings)
        assert "Vx8s2LqP9zR4tYw1" not in text
        assert STRONG_TOKEN not in text
        assert "postgresql://reco:***@db.internal:5432/reco" in text


class TestSecretFiles:
    def test_file_variable_is_read(self, tmp_path: Path) -> None:
        """NAME_FILE holds the secret (trailing newline stripped)."""
        secret = tmp_path / "tokens"
        secret.write_text(f"{STRONG_TOKEN}\n")
        url_file = tmp_path / "url"
        url_file.write_text(STRONG_URL + "\n")
        settings = load_settings({
            "APP_ENV": "production", "RECO_API_TOKENS_FILE": str(secret),
            "RECO_DATABASE_URL_FILE": str(url_file),
        })  # fmt: skip
        assert settings.http.api_tokens == (STRONG_TOKEN,)
        assert settings.database.url == STRONG_URL

    def test_unreadable_file_is_a_problem(self, tmp_path: Path) -> None:
        """A missing secret file is named with the path."""
        missing = tmp_path / "nope"
        problems = problems_of({"RECO_API_TOKENS_FILE": str(missing)})
        assert problems[0].startswith(f"RECO_API_TOKENS_FILE: cannot read '{missing}'")

    def test_both_forms_at_once_is_a_problem(self, tmp_path: Path) -> None:
        """Setting NAME and NAME_FILE together is ambiguous, so refused."""
        path = tmp_path / "t"
        path.write_text("x")
        problems = problems_of({"RECO_API_TOKENS": "y", "RECO_API_TOKENS_FILE": str(path)})
        assert problems[0].startswith("RECO_API_TOKENS: set both")


class TestCommandLine:
    def test_bad_configuration_exits_2_listing_every_problem(self) -> None:
        """`reco serve` with bad settings exits 2 and names each variable on stderr."""
        env = {"PATH": "/usr/bin:/bin", "RECO_SHUTDOWN_TIMEOUT": "x", "APP_ENV": "nope"}
        done = subprocess.run(
            [sys.executable, "-m", "reco", "serve"], env=env, capture_output=True, text=True,
            timeout=30, check=False,
        )  # fmt: skip
        assert done.returncode == 2
        assert "RECO_SHUTDOWN_TIMEOUT" in done.stderr
        assert "APP_ENV" in done.stderr
