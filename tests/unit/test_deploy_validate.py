"""Every deploy file is checked by the tool made for it: kubernetes-validate --strict on the
rendered kustomization (and the Rollout files' built-in objects), check-jsonschema with the
Compose specification's schema (vendored in check-jsonschema: no network) on compose.yaml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.deploy import KUBERNETES, ROOT, by_kind, load_all_yaml, load_yaml
from tests.support.kustomize import containers, dump, render, split_image

BIN = Path(sys.executable).parent
ARGO_KINDS = {"Rollout", "AnalysisTemplate"}  # CRDs: kubernetes-validate has no schema


def run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=120, check=False
    )


def kubernetes_validate(path: Path) -> str:
    """Run kubernetes-validate --strict; fail on an error or a kind without a schema."""
    result = run(BIN / "kubernetes-validate", "--strict", path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "Couldn't find schema" not in output, output
    return output


@pytest.fixture(scope="module")
def rendered() -> list[dict[str, Any]]:
    return render(KUBERNETES)


class TestKubernetesValidate:
    def test_rendered_kustomization_passes_strict_validation(
        self, rendered: list[dict[str, Any]], tmp_path: Path
    ) -> None:
        """Every object `kubectl apply -k` would send passes `kubernetes-validate --strict`."""
        path = tmp_path / "rendered.yaml"
        path.write_text(dump(rendered))
        output = kubernetes_validate(path)
        assert output.count(" passed ") == len(rendered), output

    @pytest.mark.parametrize("name", ["rollout-canary.yaml", "rollout-bluegreen.yaml"])
    def test_rollout_files_built_in_objects_pass(self, name: str, tmp_path: Path) -> None:
        """The Services and HPAs beside the Argo objects pass strict validation too."""
        docs = [d for d in load_all_yaml(KUBERNETES / name) if d["kind"] not in ARGO_KINDS]
        path = tmp_path / name
        path.write_text(dump(docs))
        kubernetes_validate(path)

    def test_a_typo_is_caught(self, rendered: list[dict[str, Any]], tmp_path: Path) -> None:
        """--strict refuses an unknown field (the check is not vacuous)."""
        (deployment,) = by_kind(rendered, "Deployment")
        deployment["spec"]["replica"] = 3
        path = tmp_path / "typo.yaml"
        path.write_text(dump([deployment]))
        assert run(BIN / "kubernetes-validate", "--strict", path).returncode != 0


class TestKustomization:
    def test_migration_job_is_in_it_with_the_deployments_image(
        self, rendered: list[dict[str, Any]]
    ) -> None:
        """The Job is rendered with the image the kustomization sets, the Deployment's."""
        (deployment,) = by_kind(rendered, "Deployment")
        (job,) = by_kind(rendered, "Job")
        images = {c["image"] for doc in (deployment, job) for c in containers(doc)}
        (entry,) = load_yaml(KUBERNETES / "kustomization.yaml")["images"]
        assert len(images) == 1
        name, tag, _ = split_image(images.pop())
        assert (name, tag) == (entry.get("newName", entry["name"]), entry["newTag"])

    def test_job_name_carries_the_version(self, rendered: list[dict[str, Any]]) -> None:
        """Jobs are immutable: the name changes with the image version (one Job a release)."""
        (job,) = by_kind(rendered, "Job")
        (entry,) = load_yaml(KUBERNETES / "kustomization.yaml")["images"]
        assert job["metadata"]["name"] == "reco-migrate-" + entry["newTag"].replace(".", "-")

    def test_everything_lands_in_the_namespace(self, rendered: list[dict[str, Any]]) -> None:
        """Namespaced objects get the kustomization's namespace."""
        for doc in rendered:
            if doc["kind"] != "Namespace":
                assert doc["metadata"]["namespace"] == "reco", doc["metadata"]["name"]

    @pytest.mark.parametrize(
        "docs",
        [
            pytest.param(lambda: render(KUBERNETES), id="base"),
            pytest.param(lambda: load_all_yaml(KUBERNETES / "rollout-canary.yaml"), id="canary"),
            pytest.param(
                lambda: load_all_yaml(KUBERNETES / "rollout-bluegreen.yaml"), id="bluegreen"
            ),
        ],
    )
    def test_no_replicas_where_an_hpa_scales(self, docs: Any) -> None:
        """A workload an HPA scales sets no replicas (each apply would reset the HPA)."""
        objects = docs() + render(KUBERNETES)
        for hpa in by_kind(objects, "HorizontalPodAutoscaler"):
            target = hpa["spec"]["scaleTargetRef"]
            for workload in by_kind(objects, target["kind"]):
                if workload["metadata"]["name"] == target["name"]:
                    assert "replicas" not in workload["spec"], target


class TestCompose:
    def test_compose_file_matches_the_compose_specification(self) -> None:
        """check-jsonschema with its vendored compose-spec schema accepts compose.yaml."""
        result = run(
            BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec",
            ROOT / "compose.yaml",
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr

    def test_a_misspelt_key_is_refused(self, tmp_path: Path) -> None:
        """The schema refuses an unknown service key (the check is not vacuous)."""
        compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
        compose["services"]["reco"]["restart_policy"] = "always"
        path = tmp_path / "compose.yaml"
        path.write_text(yaml.safe_dump(compose))
        result = run(BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", path)
        assert result.returncode != 0
