"""deploy/kubernetes: every manifest parses and the pods are hardened and drain cleanly."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reco.errors import ConfigError
from reco.settings import KNOBS, load_settings
from tests.support.deploy import KUBERNETES, by_kind, load_all_yaml, load_yaml, metric_names

MANIFESTS = sorted(KUBERNETES.glob("*.yaml"))
WORKLOAD_FILES = ["deployment.yaml", "migrate-job.yaml", "train-cronjob.yaml"]


def _docs(name: str) -> list[Any]:
    return load_all_yaml(KUBERNETES / name)


def _pod_spec(name: str) -> dict[str, Any]:
    docs = _docs(name)
    if cron := by_kind(docs, "CronJob"):
        spec: dict[str, Any] = cron[0]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        return spec
    (workload,) = by_kind(docs, "Deployment") or by_kind(docs, "Job")
    spec = workload["spec"]["template"]["spec"]
    return spec


def _config() -> dict[str, str]:
    (config_map,) = by_kind(_docs("configmap.yaml"), "ConfigMap")
    data: dict[str, str] = config_map["data"]
    return data


class TestManifests:
    @pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
    def test_every_manifest_is_a_kubernetes_object(self, path: Path) -> None:
        """Each document has apiVersion, kind and a name (or is the kustomization)."""
        for doc in load_all_yaml(path):
            assert {"apiVersion", "kind"} <= doc.keys()
            if doc["kind"] != "Kustomization":
                assert doc["metadata"]["name"]

    def test_kustomization_lists_existing_files_and_no_secret(self) -> None:
        """The base names files that exist and leaves the example Secret out."""
        resources = load_yaml(KUBERNETES / "kustomization.yaml")["resources"]
        assert all((KUBERNETES / name).is_file() for name in resources)
        assert "secret.example.yaml" not in resources
        assert {"deployment.yaml", "service.yaml", "pdb.yaml", "hpa.yaml"} <= set(resources)
        assert "migrate-job.yaml" in resources
        assert "train-cronjob.yaml" in resources

    def test_training_is_a_cron_job_one_run_at_a_time(self) -> None:
        """`reco train` runs as its own CronJob (never in a serving pod), never two at once."""
        (cron,) = by_kind(_docs("train-cronjob.yaml"), "CronJob")
        assert cron["spec"]["concurrencyPolicy"] == "Forbid"
        (container,) = _pod_spec("train-cronjob.yaml")["containers"]
        assert container["args"] == ["train"]
        assert container["resources"]["limits"]["memory"]


class TestPodSecurity:
    @pytest.mark.parametrize("name", WORKLOAD_FILES)
    def test_pods_run_as_non_root_with_runtime_default_seccomp(self, name: str) -> None:
        """The pod runs as UID 10001, never root, under the RuntimeDefault seccomp profile."""
        context = _pod_spec(name)["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["runAsUser"] == 10001
        assert context["seccompProfile"]["type"] == "RuntimeDefault"

    @pytest.mark.parametrize("name", WORKLOAD_FILES)
    def test_containers_are_read_only_without_privileges(self, name: str) -> None:
        """Containers: read-only root, no privilege escalation, every capability dropped."""
        for container in _pod_spec(name)["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["runAsNonRoot"] is True
            assert context["capabilities"]["drop"] == ["ALL"]
            assert context["seccompProfile"]["type"] == "RuntimeDefault"
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert "/tmp" in mounts, "reco writes only to /tmp: it needs a writable mount there"

    @pytest.mark.parametrize("name", WORKLOAD_FILES)
    def test_no_service_links_and_no_api_token(self, name: str) -> None:
        """No injected RECO_PORT* variables (reco rejects unknown ones), no API token."""
        spec = _pod_spec(name)
        assert spec["enableServiceLinks"] is False
        assert spec["automountServiceAccountToken"] is False

    @pytest.mark.parametrize("name", WORKLOAD_FILES)
    def test_secrets_arrive_as_files(self, name: str) -> None:
        """Credentials are *_FILE paths inside the read-only secret mount, never values."""
        (container,) = _pod_spec(name)["containers"]
        env = {item["name"]: item for item in container["env"]}
        mount = next(m for m in container["volumeMounts"] if m["name"] == "secrets")
        assert mount["readOnly"] is True
        for variable in ("RECO_DATABASE_URL_FILE", "RECO_API_TOKENS_FILE"):
            assert env[variable]["value"].startswith(mount["mountPath"] + "/")
        assert "RECO_DATABASE_URL" not in env
        assert "RECO_DATABASE_URL" not in _config()


class TestDeploymentLifecycle:
    def _container(self) -> dict[str, Any]:
        (container,) = _pod_spec("deployment.yaml")["containers"]
        result: dict[str, Any] = container
        return result

    def test_probes_use_healthz_and_readyz(self) -> None:
        """Liveness and start-up probe /healthz; readiness probes /readyz."""
        container = self._container()
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"

    def test_startup_probe_outlasts_the_startup_timeout(self) -> None:
        """Kubernetes does not kill a pod that reco itself would still let start."""
        probe = self._container()["startupProbe"]
        budget = probe["periodSeconds"] * probe["failureThreshold"]
        assert budget > float(_config()["RECO_STARTUP_TIMEOUT"])

    def test_grace_period_covers_prestop_and_shutdown_timeout(self) -> None:
        """terminationGracePeriodSeconds > preStop sleep + RECO_SHUTDOWN_TIMEOUT; the sleep is
        the kubelet's own action (the image has no `sleep` binary)."""
        pre_stop = self._container()["lifecycle"]["preStop"]
        assert "exec" not in pre_stop
        grace = _pod_spec("deployment.yaml")["terminationGracePeriodSeconds"]
        assert grace > pre_stop["sleep"]["seconds"] + float(_config()["RECO_SHUTDOWN_TIMEOUT"])

    def test_resources_are_requested_and_limited(self) -> None:
        """CPU and memory have requests and limits."""
        resources = self._container()["resources"]
        assert {"cpu", "memory"} <= resources["requests"].keys()
        assert {"cpu", "memory"} <= resources["limits"].keys()

    def test_rolling_update_never_drops_below_capacity(self) -> None:
        """A plain rollout adds a pod before it removes one."""
        (deployment,) = by_kind(_docs("deployment.yaml"), "Deployment")
        assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0

    def test_pdb_and_service_select_the_pods(self) -> None:
        """The PodDisruptionBudget and the Service select the Deployment's pod labels."""
        (deployment,) = by_kind(_docs("deployment.yaml"), "Deployment")
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        (pdb,) = by_kind(_docs("pdb.yaml"), "PodDisruptionBudget")
        (service,) = by_kind(_docs("service.yaml"), "Service")
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert service["spec"]["selector"].items() <= labels.items()


class TestConfiguration:
    def test_config_map_names_only_known_settings(self) -> None:
        """Every key is a reco setting (reco refuses unknown RECO_* variables)."""
        known = {knob.env for knob in KNOBS}
        assert set(_config()) <= known

    def test_config_map_is_production_without_migrate_on_start(self) -> None:
        """Production pods never migrate; the Job does."""
        assert _config()["APP_ENV"] == "production"
        assert _config()["RECO_MIGRATE_ON_START"] == "false"
        (job,) = by_kind(_docs("migrate-job.yaml"), "Job")
        (container,) = job["spec"]["template"]["spec"]["containers"]
        assert container["args"] == ["migrate"]

    def test_example_secret_is_refused_in_production(self, tmp_path: Path) -> None:
        """The example's placeholder values cannot reach production by accident."""
        (secret,) = by_kind(_docs("secret.example.yaml"), "Secret")
        environ = dict(_config())
        for key, variable in (
            ("database-url", "RECO_DATABASE_URL"),
            ("api-tokens", "RECO_API_TOKENS"),
        ):
            (tmp_path / key).write_text(secret["stringData"][key])
            environ[f"{variable}_FILE"] = str(tmp_path / key)
        with pytest.raises(ConfigError) as excinfo:
            load_settings(environ)
        assert "RECO_DATABASE_URL" in str(excinfo.value)
        assert "RECO_API_TOKENS" in str(excinfo.value)


class TestProgressiveDelivery:
    @pytest.mark.parametrize("name", ["rollout-canary.yaml", "rollout-bluegreen.yaml"])
    def test_rollout_takes_over_the_deployment(self, name: str) -> None:
        """The Rollout reuses the Deployment's pod template and the HPA scales the Rollout."""
        docs = _docs(name)
        (rollout,) = by_kind(docs, "Rollout")
        assert rollout["spec"]["workloadRef"] == {
            "apiVersion": "apps/v1", "kind": "Deployment", "name": "reco",
            "scaleDown": "progressively",
        }  # fmt: skip
        (hpa,) = by_kind(docs, "HorizontalPodAutoscaler")
        assert hpa["spec"]["scaleTargetRef"]["kind"] == "Rollout"

    def test_canary_is_gated_on_error_ratio_and_p99(self) -> None:
        """The canary's background analysis checks the 5xx ratio and p99 of the canary pods."""
        docs = _docs("rollout-canary.yaml")
        (rollout,) = by_kind(docs, "Rollout")
        (template,) = by_kind(docs, "AnalysisTemplate")
        analysis = rollout["spec"]["strategy"]["canary"]["analysis"]
        assert analysis["templates"] == [{"templateName": template["metadata"]["name"]}]
        metrics = {m["name"]: m for m in template["spec"]["metrics"]}
        assert set(metrics) == {"error-ratio", "latency-p99"}
        for metric in metrics.values():
            query = metric["provider"]["prometheus"]["query"]
            assert 'rollouts_pod_template_hash="{{args.canary-hash}}"' in query
        assert "reco_http_request_duration_seconds" in metric_names(
            metrics["latency-p99"]["provider"]["prometheus"]["query"]
        )

    def test_both_strategies_share_one_analysis_and_hpa(self) -> None:
        """The blue/green file's AnalysisTemplate and HPA are the canary's, unchanged."""
        canary, bluegreen = _docs("rollout-canary.yaml"), _docs("rollout-bluegreen.yaml")
        for kind in ("AnalysisTemplate", "HorizontalPodAutoscaler"):
            assert by_kind(canary, kind) == by_kind(bluegreen, kind)
        (rollout,) = by_kind(bluegreen, "Rollout")
        strategy = rollout["spec"]["strategy"]["blueGreen"]
        assert strategy["activeService"] == "reco"
        assert by_kind(bluegreen, "Service")[0]["metadata"]["name"] == strategy["previewService"]
