"""Every deploy file is checked by the tool made for it: kubernetes-validate --strict on the
rendered kustomization (and the built-in objects of the files outside it), the Argo Rollouts
objects against their CRDs' schemas (vendored in deploy/kubernetes/schemas), check-jsonschema
with SchemaStore's schema on kustomization.yaml and with the Compose specification's schema
(vendored in check-jsonschema: no network) on compose.yaml."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema  # type: ignore[import-untyped]  # no stubs in the test extra
import pytest
import yaml

from tests.support.deploy import (
    KUBERNETES,
    ROOT,
    by_kind,
    load_all_yaml,
    load_script,
    load_yaml,
)
from tests.support.kustomize import containers, dump, render, split_image

BIN = Path(sys.executable).parent
SCHEMAS = KUBERNETES / "schemas"
# Files kubectl applies by hand, outside the kustomization (secret.example.yaml: its shape).
OUTSIDE = ["rollout-canary.yaml", "rollout-bluegreen.yaml", "secret.example.yaml"]
# The schema keywords whose values are schemas (OpenAPI v3's subset of JSON Schema).
_SUBSCHEMAS = ("items", "additionalProperties", "not")
_SCHEMA_LISTS = ("anyOf", "allOf", "oneOf")


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


def crd_schema_path(doc: dict[str, Any]) -> Path:
    """The vendored schema of a custom resource: <group>/<kind>_<version>.json (kubeconform's)."""
    group, _, version = str(doc["apiVersion"]).rpartition("/")
    return SCHEMAS / group / f"{str(doc['kind']).lower()}_{version}.json"


def strict(schema: Any) -> Any:
    """The schema with unknown fields refused, as the API server's strict field validation does
    (a CRD's structural schema would silently prune them), except where the CRD preserves them."""
    if not isinstance(schema, dict):
        return schema
    out = dict(schema)
    if "properties" in schema:
        out["properties"] = {name: strict(sub) for name, sub in schema["properties"].items()}
        if not schema.get("x-kubernetes-preserve-unknown-fields"):
            out.setdefault("additionalProperties", False)
    for key in _SUBSCHEMAS:
        if isinstance(schema.get(key), dict):
            out[key] = strict(schema[key])
    for key in _SCHEMA_LISTS:
        if key in schema:
            out[key] = [strict(sub) for sub in schema[key]]
    return out


def crd_errors(doc: dict[str, Any]) -> list[str]:
    """What the vendored CRD schema, made strict, finds wrong with a custom resource."""
    schema = strict(json.loads(crd_schema_path(doc).read_text()))
    validator = jsonschema.Draft4Validator(schema)  # OpenAPI 3.0 schemas are draft 4 + extras
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(doc)]


def custom_resources(name: str) -> list[dict[str, Any]]:
    return [d for d in load_all_yaml(KUBERNETES / name) if crd_schema_path(d).exists()]


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

    @pytest.mark.parametrize("name", OUTSIDE)
    def test_files_outside_the_kustomization_pass(self, name: str, tmp_path: Path) -> None:
        """Their built-in objects pass strict validation too; every other object is a custom
        resource with a vendored CRD schema (TestCrdSchemas), so no object goes unchecked."""
        docs = [d for d in load_all_yaml(KUBERNETES / name) if not crd_schema_path(d).exists()]
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


class TestCrdSchemas:
    @pytest.mark.parametrize("name", ["rollout-canary.yaml", "rollout-bluegreen.yaml"])
    def test_argo_objects_match_their_crd_schema(self, name: str) -> None:
        """The Rollout and its AnalysisTemplate pass Argo Rollouts' own schema, unknown fields
        refused."""
        docs = custom_resources(name)
        assert sorted(d["kind"] for d in docs) == ["AnalysisTemplate", "Rollout"]
        for doc in docs:
            assert crd_errors(doc) == [], doc["kind"]

    @pytest.mark.parametrize(
        ("kind", "path"),
        [
            pytest.param("Rollout", ("spec", "strategy", "canary", "stepz"), id="unknown"),
            pytest.param("Rollout", ("spec", "minReadySeconds"), id="type"),
            pytest.param("AnalysisTemplate", ("spec", "metrics", 0, "intervall"), id="nested"),
        ],
    )
    def test_a_mistake_is_caught(self, kind: str, path: tuple[str | int, ...]) -> None:
        """A misspelt field and a wrong type are reported (the check is not vacuous)."""
        (doc,) = by_kind(custom_resources("rollout-canary.yaml"), kind)
        *parents, last = path
        node: Any = doc
        for key in parents:
            node = node[key]
        node[last] = "ten"
        assert crd_errors(doc) != []

    def test_the_vendored_schemas_name_their_source(self) -> None:
        """The README names the release and commit the schemas were taken from."""
        readme = (SCHEMAS / "README.md").read_text()
        for schema in SCHEMAS.glob("*/*.json"):
            assert schema.relative_to(SCHEMAS).as_posix() in readme, schema

    def test_vendor_script_writes_each_served_versions_schema(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """vendor_crds.py writes <group>/<kind>_<version>.json, the schema unchanged."""
        script = load_script(SCHEMAS / "vendor_crds.py")
        monkeypatch.setattr(script, "HERE", tmp_path)
        schema = {"type": "object", "properties": {"spec": {"type": "object"}}}
        crd = {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "spec": {
                "group": "example.com",
                "names": {"kind": "Widget"},
                "versions": [
                    {"name": "v1", "served": True, "schema": {"openAPIV3Schema": schema}},
                    {"name": "v0", "served": False, "schema": {"openAPIV3Schema": {}}},
                ],
            },
        }
        source = tmp_path / "crd.yaml"
        source.write_text(yaml.safe_dump(crd))
        assert script.vendor(source) == [tmp_path / "example.com" / "widget_v1.json"]
        assert json.loads((tmp_path / "example.com" / "widget_v1.json").read_text()) == schema


class TestKustomization:
    def test_kustomization_file_matches_its_schema(self) -> None:
        """check-jsonschema with SchemaStore's Kustomization schema accepts kustomization.yaml."""
        result = run(
            BIN / "check-jsonschema", "--schemafile", SCHEMAS / "kustomization.json",
            KUBERNETES / "kustomization.yaml",
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr

    def test_a_misspelt_kustomization_key_is_refused(self, tmp_path: Path) -> None:
        """The schema refuses an unknown top-level key (the check is not vacuous)."""
        kustomization = load_yaml(KUBERNETES / "kustomization.yaml")
        kustomization["namespaces"] = kustomization.pop("namespace")
        path = tmp_path / "kustomization.yaml"
        path.write_text(yaml.safe_dump(kustomization))
        result = run(BIN / "check-jsonschema", "--schemafile", SCHEMAS / "kustomization.json", path)
        assert result.returncode != 0

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
