"""compose.yaml: the local production-like stack is hardened and ordered as documented."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reco.settings import AppEnv, load_settings
from tests.support.deploy import DEPLOY, ROOT, load_script, load_yaml

RECO_SERVICES = ("reco", "migrate", "train")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = load_yaml(ROOT / "compose.yaml")
    return data


def _service(compose: dict[str, Any], name: str) -> dict[str, Any]:
    service: dict[str, Any] = compose["services"][name]
    return service


class TestComposeHardening:
    @pytest.mark.parametrize("name", RECO_SERVICES)
    def test_reco_containers_are_locked_down(self, compose: dict[str, Any], name: str) -> None:
        """reco and migrate run read-only, non-root, without capabilities or privilege gain."""
        service = _service(compose, name)
        assert service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in service["security_opt"]
        assert service["user"] == "10001:10001"
        assert any(entry.startswith("/tmp:") for entry in service["tmpfs"])

    @pytest.mark.parametrize("name", ["postgres", "kafka", "kafka-init", "migrate", "reco"])
    def test_every_core_service_drops_capabilities(
        self, compose: dict[str, Any], name: str
    ) -> None:
        """No container of the stack keeps the default capability set or may gain privileges."""
        service = _service(compose, name)
        assert service["cap_drop"] == ["ALL"]
        assert "no-new-privileges:true" in service["security_opt"]

    def test_published_ports_are_loopback_only(self, compose: dict[str, Any]) -> None:
        """Every published port binds 127.0.0.1, never all interfaces."""
        for name, service in compose["services"].items():
            for port in service.get("ports", []):
                assert str(port).startswith("127.0.0.1:"), (name, port)

    @pytest.mark.parametrize("name", ["postgres", "kafka", "migrate", "reco"])
    def test_resource_limits_are_set(self, compose: dict[str, Any], name: str) -> None:
        """CPU and memory are capped for the long-running services and the migration."""
        limits = _service(compose, name)["deploy"]["resources"]["limits"]
        assert {"cpus", "memory"} <= limits.keys()


class TestComposeOrdering:
    def test_reco_waits_for_healthy_dependencies_and_migration(
        self, compose: dict[str, Any]
    ) -> None:
        """reco starts after PostgreSQL and Kafka are healthy and migrate has completed."""
        depends = _service(compose, "reco")["depends_on"]
        assert depends["postgres"]["condition"] == "service_healthy"
        assert depends["kafka"]["condition"] == "service_healthy"
        assert depends["migrate"]["condition"] == "service_completed_successfully"
        assert depends["kafka-init"]["condition"] == "service_completed_successfully"

    def test_train_is_a_one_shot_reco_train_after_migrate(self, compose: dict[str, Any]) -> None:
        """train runs `reco train` once, on demand (its own profile), after the migrations."""
        train = _service(compose, "train")
        assert train["command"] == ["train"]
        assert train["restart"] == "no"
        assert train["profiles"] == ["train"]
        assert train["depends_on"]["migrate"]["condition"] == "service_completed_successfully"

    def test_migrate_is_a_one_shot_reco_migrate(self, compose: dict[str, Any]) -> None:
        """migrate runs `reco migrate` once, after PostgreSQL is healthy."""
        migrate = _service(compose, "migrate")
        assert migrate["command"] == ["migrate"]
        assert migrate["restart"] == "no"
        assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"

    @pytest.mark.parametrize("name", ["postgres", "kafka", "reco"])
    def test_long_running_services_have_healthchecks(
        self, compose: dict[str, Any], name: str
    ) -> None:
        """Each service another one waits on declares a healthcheck."""
        assert _service(compose, name)["healthcheck"]["test"]

    def test_stop_grace_exceeds_the_shutdown_timeout(self, compose: dict[str, Any]) -> None:
        """The runtime waits longer than reco's own drain before it sends SIGKILL."""
        reco = _service(compose, "reco")
        grace = int(str(reco["stop_grace_period"]).removesuffix("s"))
        assert grace > float(reco["environment"]["RECO_SHUTDOWN_TIMEOUT"])


class TestComposeSettings:
    @pytest.mark.parametrize("name", RECO_SERVICES)
    def test_production_settings_with_secrets_from_files(
        self, compose: dict[str, Any], name: str
    ) -> None:
        """reco runs with APP_ENV=production, no migrate-on-start, secrets only as *_FILE."""
        env = _service(compose, name)["environment"]
        assert env["APP_ENV"] == "production"
        assert env["RECO_MIGRATE_ON_START"] == "false"
        assert "RECO_DATABASE_URL" not in env
        assert "RECO_API_TOKENS" not in env
        for variable in ("RECO_DATABASE_URL_FILE", "RECO_API_TOKENS_FILE"):
            secret = Path(env[variable]).name
            assert secret in _service(compose, name)["secrets"]
            assert secret in compose["secrets"]

    def test_generated_secrets_pass_the_production_checks(self, tmp_path: Path) -> None:
        """make_secrets.py writes secrets that reco accepts with APP_ENV=production."""
        script = load_script(DEPLOY / "compose" / "make_secrets.py")
        script.write_secrets(tmp_path, script.make_secrets(), force=False)
        settings = load_settings(
            {
                "APP_ENV": "production",
                "RECO_DATABASE_URL_FILE": str(tmp_path / "database_url"),
                "RECO_API_TOKENS_FILE": str(tmp_path / "api_tokens"),
            }
        )
        assert settings.app_env is AppEnv.PRODUCTION
        password = (tmp_path / "postgres_password").read_text().strip()
        assert f":{password}@postgres:5432/" in settings.database.url
        assert len(settings.http.api_tokens) == 2

    def test_existing_secrets_are_kept_without_force(self, tmp_path: Path) -> None:
        """A second run does not change a running stack's password."""
        script = load_script(DEPLOY / "compose" / "make_secrets.py")
        script.write_secrets(tmp_path, script.make_secrets(), force=False)
        before = (tmp_path / "database_url").read_text()
        assert script.write_secrets(tmp_path, script.make_secrets(), force=False) == []
        assert (tmp_path / "database_url").read_text() == before
