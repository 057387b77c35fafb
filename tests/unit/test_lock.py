"""requirements*.lock and build-requirements.lock: every dependency pinned with hashes, and in
step with pyproject.toml."""

from __future__ import annotations

import re
import tomllib

import pytest
from packaging.requirements import Requirement

from tests.support.deploy import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
_PIN = re.compile(r"^([A-Za-z0-9._-]+)==([^ ;\\]+)", re.MULTILINE)


def pins(name: str) -> dict[str, str]:
    text = (ROOT / name).read_text()
    return {canonical(n): v for n, v in _PIN.findall(text)}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirements(*extras: str) -> list[Requirement]:
    project = PYPROJECT["project"]
    listed = [*project["dependencies"]]
    for extra in extras:
        listed += project["optional-dependencies"][extra]
    return [Requirement(r) for r in listed]


@pytest.mark.parametrize(
    ("lock", "extras"),
    [("requirements.lock", ()), ("requirements-dev.lock", ("test", "lint"))],
)
class TestLock:
    def test_every_requirement_is_pinned_within_its_range(
        self, lock: str, extras: tuple[str, ...]
    ) -> None:
        """Each dependency of pyproject.toml has a pin its specifier admits (`./just lock`)."""
        pinned = pins(lock)
        for requirement in requirements(*extras):
            version = pinned.get(canonical(requirement.name))
            assert version is not None, f"{requirement.name} is not in {lock}: ./just lock"
            assert requirement.specifier.contains(version, prereleases=True), (
                f"{lock} pins {requirement.name}=={version}, outside {requirement.specifier}"
            )

    def test_every_pin_has_hashes(self, lock: str, extras: tuple[str, ...]) -> None:
        """pip --require-hashes installs it: each pinned package carries its sha256 hashes."""
        blocks = re.split(r"\n(?=[A-Za-z0-9])", (ROOT / lock).read_text())
        entries = [b for b in blocks if _PIN.match(b)]
        assert entries
        for entry in entries:
            assert "--hash=sha256:" in entry, entry.splitlines()[0]


def test_dev_lock_agrees_with_the_runtime_lock() -> None:
    """The image's versions are the ones the tests ran with."""
    runtime, dev = pins("requirements.lock"), pins("requirements-dev.lock")
    assert {name: dev.get(name) for name in runtime} == runtime


class TestBuildLock:
    """build-requirements.lock: the image build's pip, hatchling and setuptools (Containerfile)."""

    def test_build_backend_is_pinned_within_pyproject_build_system(self) -> None:
        """hatchling (and anything else [build-system] requires) is pinned in its range."""
        pinned = pins("build-requirements.lock")
        for listed in PYPROJECT["build-system"]["requires"]:
            requirement = Requirement(listed)
            version = pinned.get(canonical(requirement.name))
            assert version is not None, f"{requirement.name}: ./just lock"
            assert requirement.specifier.contains(version, prereleases=True), requirement
        assert {"pip", "setuptools"} <= set(pinned)

    def test_every_pin_has_hashes(self) -> None:
        """pip --require-hashes installs it."""
        blocks = re.split(r"\n(?=[A-Za-z0-9])", (ROOT / "build-requirements.lock").read_text())
        entries = [b for b in blocks if _PIN.match(b)]
        assert len(entries) == len(pins("build-requirements.lock")) > 0
        for entry in entries:
            assert "--hash=sha256:" in entry, entry.splitlines()[0]

    def test_shared_packages_have_the_runtime_version(self) -> None:
        """A package both locks have (packaging) is not changed under reco by the build tools."""
        runtime, build = pins("requirements.lock"), pins("build-requirements.lock")
        assert {n: runtime[n] for n in build if n in runtime} == {
            n: v for n, v in build.items() if n in runtime
        }
