"""deploy/pin_images.py: finds every pulled image and pins it as name:tag@sha256:... .

Resolving needs a registry, which this workplace cannot reach: the rewriting is tested
here with a stand-in resolver, and the repository keeps tags until someone runs it where
registries are reachable (docs/runbook.md, "Images and pins")."""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from tests.support.deploy import DEPLOY, KUBERNETES, ROOT, load_script
from tests.support.kustomize import containers, render


@pytest.fixture(scope="module")
def pin() -> ModuleType:
    return load_script(DEPLOY / "pin_images.py")


def fake_digest(reference: str) -> str:
    return "sha256:" + hashlib.sha256(reference.encode()).hexdigest()


class TestPinImages:
    def test_finds_every_pulled_compose_image_but_not_the_built_one(self, pin: ModuleType) -> None:
        """Every image compose pulls is found; reco's (built from the Containerfile) is not."""
        refs = pin.compose_references((ROOT / "compose.yaml").read_text())
        compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
        pulled = {s["image"] for s in compose["services"].values() if "build" not in s}
        assert set(refs) == pulled
        assert not any("reco:" in ref for ref in refs)

    def test_pinning_compose_keeps_the_tag_adds_the_digest_and_is_idempotent(
        self, pin: ModuleType
    ) -> None:
        """name:tag becomes name:tag@sha256:...; a second run changes nothing."""
        text = (ROOT / "compose.yaml").read_text()
        wanted = set(pin.compose_references(text))
        once = pin.pin_text(text, pin._COMPOSE_IMAGE, wanted, fake_digest)
        assert pin.pin_text(once, pin._COMPOSE_IMAGE, wanted, fake_digest) == once
        pinned = pin.compose_references(once)
        assert pinned
        assert all(pin.is_pinned(ref) for ref in pinned)
        assert {ref.partition("@")[0] for ref in pinned} == wanted

    def test_pinned_kustomization_renders_tag_and_digest(
        self, pin: ModuleType, tmp_path: Path
    ) -> None:
        """The kustomization gets a digest: line; the Deployment and Job render with it."""
        for path in KUBERNETES.glob("*.yaml"):
            (tmp_path / path.name).write_text(path.read_text())
        kustomization = tmp_path / "kustomization.yaml"
        kustomization.write_text(pin.pin_kustomization(kustomization.read_text(), fake_digest))
        images = {c["image"] for doc in render(tmp_path) for c in containers(doc)}
        assert images == {
            f"registry.example.invalid/reco:0.1.0@{fake_digest('registry.example.invalid/reco:0.1.0')}"
        }

    @pytest.mark.parametrize(
        ("reference", "pinned"),
        [
            ("postgres:17", False),
            ("postgres:17@sha256:" + "a" * 64, True),
            ("postgres@sha256:" + "a" * 63, False),
            ("registry:5000/x:1@sha256:" + "0" * 64, True),
        ],
    )
    def test_is_pinned(self, pin: ModuleType, reference: str, pinned: bool) -> None:
        """Only a full sha256 digest counts as pinned."""
        assert pin.is_pinned(reference) is pinned
